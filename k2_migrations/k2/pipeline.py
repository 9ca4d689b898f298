"""What the K2 revisions do with each of the 20 objects, in one place.

k2_003 moves the data tables as they are and re-creates the Kafka tables and views from their live
definitions; k2_004 alters the candle tables in place. k2_001 derives its adoption policy from the
same names (what is carried may differ in its own text; what is moved must match in structure), so
the policy cannot drift away from what the revisions really do.

Ingestion is paused by dropping the two Kafka tables, both at once: that stops consumption for all
the views on a table in one go (dropping its views one by one would let the last one consume
messages the others then miss), and the messages wait in Kafka under the group's committed
offsets. Resuming re-creates the Kafka tables from their captured definitions — same topics, same
groups, so consumption resumes from the committed offsets — and then their views, data view before
dead-letter view, back to back: a consumer takes seconds to join its group, so both views are
attached before it delivers its first message.
"""

from __future__ import annotations

from k2_migrations.k2.baseline_schema import DATA_TABLES, KAFKA_TABLES, VIEW_ROUTES, VIEWS

INGESTION_PAUSE = "ingestion_pause"

#: Moved by k2_003 as they are (RENAME, or partition moves), never re-created; the candle tables are
#: then altered by k2_004. Their columns, types, engine, keys and partitioning must be the spec's.
MOVED: tuple[str, ...] = DATA_TABLES

#: Re-created by k2_003 from their live definitions, only the database references rewritten: a
#: production edit of any of them (an expression, a setting, output column types) survives the move.
CARRIED: tuple[str, ...] = VIEWS + KAFKA_TABLES

#: The views reading the Kafka tables, in creation order (data view before its dead-letter sibling).
INGEST_VIEWS: tuple[str, ...] = tuple(v for v in VIEWS if VIEW_ROUTES[v][0] in KAFKA_TABLES)

#: The views downstream of bronze, in creation order (gold before silver: a view sees only new rows).
DOWNSTREAM_VIEWS: tuple[str, ...] = tuple(v for v in VIEWS if v not in INGEST_VIEWS)
