# mypy: disable-error-code="attr-defined"
"""K2 baseline: the bronze/silver/gold schema in the source database

Revision ID: k2_001
Revises:
Create Date: 2026-11-28

Creates whatever of the 20 K2 objects is missing and adopts what exists: production was built by
hand, so its DDL is compared with this one as the server renders both and every difference is
reported. Only what a later revision depends on stops the run, and that follows from what the
revisions do with each object (k2_migrations.k2.pipeline): the data tables are moved and altered as
they are, so their columns, types, engine, keys and partitioning must match; the views and Kafka
tables are carried over by their live definitions, so only their routes (source, target) and the
Kafka identity (topic, group, format, error mode) must match — their own expressions, output column
types and other settings travel with them. A view nobody knows about stops the run too.

Downgrade: the baseline is where the K2 platform starts, not something k2-migrate introduced; going
below it leaves the schema and its data in place (the version table then says base).
"""

from __future__ import annotations

from alembic import op

from k2_migrations.k2 import baseline_schema as schema
from k2_migrations.k2.pipeline import CARRIED
from k2_migrations.k2.settings import k2_settings

revision: str = "k2_001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None
#: Read by the stairway test (k2-migrate test-revisions): the downgrade below undoes nothing, by design.
downgrade_keeps_schema = "the baseline adopts the platform's schema; it never owned it"


def upgrade() -> None:
    k2 = k2_settings()
    op.create_database(k2.source)
    objects = [(name, schema.data_table_ddl(name, k2.source)) for name in schema.DATA_TABLES]
    objects += [(name, schema.kafka_table_ddl(name, k2.source, k2.brokers)) for name in schema.KAFKA_TABLES]
    objects += [(name, schema.view_ddl(name, k2.source)) for name in schema.VIEWS]
    op.adopt_objects(k2.source, objects, carried=CARRIED)


def downgrade() -> None:
    """Nothing to undo: the baseline adopts the platform's schema, it never owned it."""
