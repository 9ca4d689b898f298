# mypy: disable-error-code="attr-defined"
"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Every operation below is idempotent: it reads the live state from system tables before acting, so
k2-migrate can re-run this revision after a crash at any point and it does only what is missing.
Keep it that way: use the ClickHouse operations on ``op`` (see docs/operations.md), and give any raw
statement a ``done_when`` query so a re-run can tell it already happened.
"""

from __future__ import annotations

from alembic import op

revision: str = ${repr(up_revision)}
down_revision: str | tuple[str, ...] | None = ${repr(down_revision)}
branch_labels: str | tuple[str, ...] | None = ${repr(branch_labels)}
depends_on: str | tuple[str, ...] | None = ${repr(depends_on)}

DATABASE = "default"
TABLE = "my_table"


def upgrade() -> None:
    # Guard the tables this revision touches: counted now, compared at check_guards.
    op.take_guards("rows", [f"{DATABASE}.{TABLE}"])
    op.add_column_if_missing(DATABASE, TABLE, "new_column", "UInt32", default="0", after=None)
    # A backfill is a mutation: waited for with progress, never issued twice, verified after.
    op.run_mutation(
        DATABASE,
        TABLE,
        "UPDATE new_column = 1 WHERE new_column = 0",
        done_when=f"SELECT countIf(new_column = 0) = 0 FROM {DATABASE}.{TABLE}",
    )
    op.check_guards("rows")


def downgrade() -> None:
    op.take_guards("rows", [f"{DATABASE}.{TABLE}"])
    op.drop_column_if_exists(DATABASE, TABLE, "new_column")
    op.check_guards("rows")
