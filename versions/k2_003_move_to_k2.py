# mypy: disable-error-code="attr-defined"
"""Move bronze/silver/gold to k2: data tables moved, Kafka tables and views re-created

Revision ID: k2_003
Revises: k2_002
Create Date: 2026-11-28

1. Capture the live definitions of the 10 views and 2 Kafka tables (the downgrade restores them).
2. Pause ingestion: drop the 2 Kafka tables together (consumption stops for all their views at
   once; the old consumers are gone before the new ones exist: never two in one group), then the
   4 views on them and the 6 downstream views (a view's source and TO target do not follow a
   RENAME, so every view is re-created in k2).
3. Guard: count the 8 data tables (O(1); merges held on the collapsing ones).
4. Move the 8 data tables (RENAME; partition moves where the engine refuses a RENAME).
5. Check the guard: every table holds exactly the rows it held.
6. Re-create the 2 Kafka tables in k2 with the same topics, groups and settings (consumption resumes
   from the committed offsets), then the downstream views, then the ingest views: ingestion resumes
   last, and the summary reports how long it was paused.

Only the database references of the re-created objects change; the rest is their live definition.
"""

from __future__ import annotations

from alembic import op

from k2_migrations.k2 import baseline_schema as schema
from k2_migrations.k2.pipeline import DOWNSTREAM_VIEWS, INGEST_VIEWS, INGESTION_PAUSE
from k2_migrations.k2.settings import k2_settings

revision: str = "k2_003"
down_revision: str | None = "k2_002"
branch_labels: str | None = None
depends_on: str | None = None


def _move_pipeline(source: str, target: str, *, restore_from_upgrade: bool) -> None:
    k2 = k2_settings()
    home = k2.source  # the database the captured (pre-upgrade) definitions refer to
    if not restore_from_upgrade:
        op.capture_definition(source, *schema.VIEWS, *schema.KAFKA_TABLES)
    op.begin_interval(INGESTION_PAUSE)
    # Both Kafka tables at once: every consumer stops in one go, their views can then go in any order.
    op.drop_objects(source, list(schema.KAFKA_TABLES))
    op.drop_objects(source, list(reversed(INGEST_VIEWS)))
    op.drop_objects(source, list(reversed(DOWNSTREAM_VIEWS)))
    op.take_guards("move", [f"{source}.{t}" for t in schema.DATA_TABLES], relocate={source: target})
    for table in schema.DATA_TABLES:
        op.move_table(source, table, target)
    op.check_guards("move")
    rewrite = {home: target} if target != home else {}
    for kafka in schema.KAFKA_TABLES:
        op.restore_definition(
            f"{home}.{kafka}",
            rewrite=rewrite,
            captured_in=revision,
            fallback=schema.kafka_table_ddl(kafka, home, k2.brokers),
        )
    for view in DOWNSTREAM_VIEWS + INGEST_VIEWS:
        op.restore_definition(
            f"{home}.{view}", rewrite=rewrite, captured_in=revision, fallback=schema.view_ddl(view, home)
        )
    op.end_interval(INGESTION_PAUSE)


def upgrade() -> None:
    k2 = k2_settings()
    _move_pipeline(k2.source, k2.target, restore_from_upgrade=False)


def downgrade() -> None:
    k2 = k2_settings()
    _move_pipeline(k2.target, k2.source, restore_from_upgrade=True)
