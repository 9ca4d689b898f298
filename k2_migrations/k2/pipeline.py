"""Steps the K2 revisions share: pausing and resuming ingestion around a change of the pipeline.

Ingestion is paused by removing every view on the two Kafka tables — all of them: detaching one of
several views on a Kafka table makes that view miss messages, while with none attached the
consumer stops and the messages wait in Kafka under the group's committed offsets. Resuming
re-creates the views from their captured definitions, data view before dead-letter view.
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
    """Capture the ingest views' live definitions, then drop them: from here, nothing is consumed."""
    for view in INGEST_VIEWS:
        op.capture_definition(database, view)
    op.begin_interval(INGESTION_PAUSE)
    for view in reversed(INGEST_VIEWS):
        op.drop_object(database, view)


def resume_ingestion(database: str) -> None:
    """Re-create the ingest views captured by :func:`pause_ingestion` in this revision."""
    for view in INGEST_VIEWS:
        op.restore_definition(f"{database}.{view}")
    op.end_interval(INGESTION_PAUSE)
