"""Steps the K2 revisions share: pausing and resuming ingestion around a change of the pipeline.

Ingestion is paused by dropping the two Kafka tables, both at once: that stops consumption for all
the views on a table in one go (dropping its views one by one would let the last one consume
messages the others then miss), and the messages wait in Kafka under the group's committed
offsets. The views on them go next. Resuming re-creates the Kafka tables from their captured
definitions — same topics, same groups, so consumption resumes from the committed offsets — and then
their views, data view before dead-letter view, back to back: a consumer takes seconds to join its
group, so both views are attached before it delivers its first message.
"""

from __future__ import annotations

from alembic import op

from k2_migrations.k2.baseline_schema import KAFKA_TABLES, VIEW_ROUTES, VIEWS

INGESTION_PAUSE = "ingestion_pause"

#: The views reading the Kafka tables, in creation order (data view before its dead-letter sibling).
INGEST_VIEWS: tuple[str, ...] = tuple(v for v in VIEWS if VIEW_ROUTES[v][0] in KAFKA_TABLES)

#: The views downstream of bronze, in creation order (gold before silver: a view sees only new rows).
DOWNSTREAM_VIEWS: tuple[str, ...] = tuple(v for v in VIEWS if v not in INGEST_VIEWS)


def pause_ingestion(database: str) -> None:
    """Capture the Kafka tables and ingest views, then drop them: from here, nothing is consumed."""
    op.capture_definition(database, *KAFKA_TABLES, *INGEST_VIEWS)
    op.begin_interval(INGESTION_PAUSE)
    op.drop_objects(database, list(KAFKA_TABLES))
    op.drop_objects(database, list(reversed(INGEST_VIEWS)))


def resume_ingestion(database: str) -> None:
    """Re-create what :func:`pause_ingestion` dropped in this revision, consumers last."""
    for name in KAFKA_TABLES + INGEST_VIEWS:
        op.restore_definition(f"{database}.{name}")
    op.end_interval(INGESTION_PAUSE)
