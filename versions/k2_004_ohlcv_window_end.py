# mypy: disable-error-code="attr-defined"
"""Add window_end to the four OHLCV tables, filled in place, written by the views

Revision ID: k2_004
Revises: k2_003
Create Date: 2026-11-28

1. Add ``window_end SimpleAggregateFunction(any, DateTime64(3, 'UTC')) DEFAULT window_start +
   INTERVAL <window>`` right after ``window_start`` (metadata only). From this moment every candle
   reads with its window_end, and any row written without it — by the old views, by a backfill — gets
   the right value from the DEFAULT: no candle written during or after the change can lack it.
2. With ingestion paused (so no trade reaches silver while a candle view is missing, and none is
   counted twice), replace the four OHLCV views by ones that write window_end; guard the candle
   counts across the swap.
3. Fill window_end for every existing candle in place (``MATERIALIZE COLUMN``, a mutation, waited
   for with progress) — never truncate and refill: silver may no longer hold the trades.
4. Verify that every candle lasts exactly its window.
"""

from __future__ import annotations

from alembic import op

from k2_migrations.k2 import baseline_schema as schema
from k2_migrations.k2.pipeline import pause_ingestion, resume_ingestion
from k2_migrations.k2.settings import k2_settings

revision: str = "k2_004"
down_revision: str | None = "k2_003"
branch_labels: str | None = None
depends_on: str | None = None

WINDOW_END_TYPE = "SimpleAggregateFunction(any, DateTime64(3, 'UTC'))"
SECONDS = {"1 MINUTE": 60, "5 MINUTE": 300, "1 HOUR": 3600, "1 DAY": 86400}


def _all_parts_have_window_end(database: str, table: str) -> str:
    where = f"database = '{database}' AND table = '{table}' AND active"
    return (
        f"SELECT (SELECT count() FROM system.parts WHERE {where}) = "
        f"(SELECT count() FROM system.parts_columns WHERE {where} AND column = 'window_end')"
    )


def upgrade() -> None:
    k2 = k2_settings()
    db = k2.target
    for table, interval in schema.OHLCV_TABLES.items():
        op.add_column_if_missing(
            db,
            table,
            "window_end",
            WINDOW_END_TYPE,
            default=f"window_start + INTERVAL {interval}",
            after="window_start",
        )
    pause_ingestion(db)
    op.take_guards("candles", [f"{db}.{t}" for t in schema.OHLCV_TABLES])
    for table in schema.OHLCV_TABLES:
        op.drop_object(db, f"{table}_mv")
        op.create_object(db, f"{table}_mv", schema.view_ddl(f"{table}_mv", db, window_end=True))
    op.check_guards("candles")
    resume_ingestion(db)
    for table in schema.OHLCV_TABLES:
        op.run_mutation(
            db, table, "MATERIALIZE COLUMN window_end", done_when=_all_parts_have_window_end(db, table)
        )
    for table, interval in schema.OHLCV_TABLES.items():
        op.verify(
            f"every {table} candle lasts {SECONDS[interval]} s",
            f"SELECT countIf(dateDiff('second', window_start, window_end) != {SECONDS[interval]}) FROM {db}.{table}",
        )


def downgrade() -> None:
    k2 = k2_settings()
    db = k2.target
    pause_ingestion(db)
    op.take_guards("candles", [f"{db}.{t}" for t in schema.OHLCV_TABLES])
    for table in schema.OHLCV_TABLES:
        view = f"{table}_mv"
        op.drop_object(db, view)
        # The view as it was before this revision: k2_003's capture of the original, moved to k2.
        op.restore_definition(
            f"{k2.source}.{view}",
            rewrite={k2.source: db},
            captured_in="k2_003",
            fallback=schema.view_ddl(view, k2.source),
        )
    op.check_guards("candles")
    resume_ingestion(db)
    for table in schema.OHLCV_TABLES:
        op.drop_column_if_exists(db, table, "window_end")
