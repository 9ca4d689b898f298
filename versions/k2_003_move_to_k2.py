# mypy: disable-error-code="attr-defined"
"""Move bronze/silver/gold to k2: data tables moved, Kafka tables and views re-created

Revision ID: k2_003
Revises: k2_002
Create Date: 2026-11-28

1. Capture the live definitions of the 10 views and 2 Kafka tables.
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

Every object is re-created from the definition captured from the live one in step 1, with only its
database references rewritten (by tokens: a string literal naming the database is data and stays);
never from a copy kept in the code, so production's own edits survive. The downgrade is the same
walk the other way, from the definitions live in k2 — which the upgrade made from production's, so
the source database gets back every definition as it was, byte for byte.
"""

from __future__ import annotations

from alembic import op

from k2_migrations.k2.baseline_schema import KAFKA_TABLES
from k2_migrations.k2.pipeline import CARRIED, DOWNSTREAM_VIEWS, INGEST_VIEWS, INGESTION_PAUSE, MOVED
from k2_migrations.k2.settings import k2_settings

revision: str = "k2_003"
down_revision: str | None = "k2_002"
branch_labels: str | None = None
depends_on: str | None = None


def _move_pipeline(source: str, target: str) -> None:
    op.capture_definition(source, *CARRIED)
    op.begin_interval(INGESTION_PAUSE)
    # Both Kafka tables at once: every consumer stops in one go, their views can then go in any order.
    op.drop_objects(source, list(KAFKA_TABLES))
    op.drop_objects(source, list(reversed(INGEST_VIEWS)))
    op.drop_objects(source, list(reversed(DOWNSTREAM_VIEWS)))
    op.take_guards("move", [f"{source}.{t}" for t in MOVED], relocate={source: target})
    for table in MOVED:
        op.move_table(source, table, target)
    op.check_guards("move")
    for name in KAFKA_TABLES + DOWNSTREAM_VIEWS + INGEST_VIEWS:
        op.restore_definition(f"{source}.{name}", rewrite={source: target}, captured_in=revision)
    op.end_interval(INGESTION_PAUSE)


def upgrade() -> None:
    k2 = k2_settings()
    _move_pipeline(k2.source, k2.target)


def downgrade() -> None:
    k2 = k2_settings()
    _move_pipeline(k2.target, k2.source)
