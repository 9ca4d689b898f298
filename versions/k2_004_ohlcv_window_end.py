# mypy: disable-error-code="attr-defined"
"""Add window_end to the four OHLCV tables, filled in place; the live views are kept as they are

Revision ID: k2_004
Revises: k2_003
Create Date: 2026-11-28

1. Add ``window_end SimpleAggregateFunction(any, DateTime64(3, 'UTC')) DEFAULT window_start +
   INTERVAL <window>`` right after ``window_start`` (metadata only). From this moment every candle
   reads with its window_end, and every row written without it gets the right value from the
   DEFAULT — which is every row the four OHLCV views insert: a view that does not set a column of
   its target leaves it to the column's DEFAULT. So the views populate window_end without being
   touched: their live definitions (production's own edits included) stay byte for byte, no view
   is missing for a moment, and ingestion never pauses. (A view cannot set window_end today: the
   engine refuses a view whose output names a column its target lacks.)
2. Fill window_end for every existing candle in place (``MATERIALIZE COLUMN``, a mutation, waited
   for with progress) — never truncate and refill: silver may no longer hold the trades.
3. Verify that every candle lasts exactly its window.

Downgrade: drop the four columns; the views never changed, so nothing else is undone. It first checks
that no OHLCV view writes window_end itself (an earlier release of this revision replaced the views
with ones that did): dropping the column under such a view would break ingestion.
"""

from __future__ import annotations

from alembic import op

from k2_migrations.k2 import baseline_schema as schema
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
    db = k2_settings().target
    for table, interval in schema.OHLCV_TABLES.items():
        op.add_column_if_missing(
            db,
            table,
            "window_end",
            WINDOW_END_TYPE,
            default=f"window_start + INTERVAL {interval}",
            after="window_start",
        )
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
    db = k2_settings().target
    views = ", ".join(f"'{table}_mv'" for table in schema.OHLCV_TABLES)
    # A view that writes window_end itself (one an earlier release of this revision created) would
    # fail every insert once the column is gone: stop before dropping anything, and say so.
    op.verify(
        "no OHLCV view writes window_end (restore k2_003's views first: see docs/k2-runbook.md)",
        f"SELECT count() FROM system.columns WHERE database = '{db}' AND table IN ({views})"
        " AND name = 'window_end'",
    )
    for table in schema.OHLCV_TABLES:
        op.drop_column_if_exists(db, table, "window_end")
