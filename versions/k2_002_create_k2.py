# mypy: disable-error-code="attr-defined"
"""Create the k2 database

Revision ID: k2_002
Revises: k2_001
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

from k2_migrations.k2.settings import k2_settings

revision: str = "k2_002"
down_revision: str | None = "k2_001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_database(k2_settings().target, engine="Atomic")


def downgrade() -> None:
    # Refused while the database still holds tables: the move's downgrade must have run first.
    op.drop_database(k2_settings().target)
