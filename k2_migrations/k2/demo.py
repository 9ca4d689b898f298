"""``make demo``: the K2 migration end to end on the embedded engine, with its report.

1. A fresh embedded database (``.k2-migrate/demo``) gets the K2 baseline in ``default``, through
   ``k2-migrate upgrade k2_001`` — exactly what a production database looks like before the move.
2. A realistic synthetic market-data set at the handoff's volumes is inserted into bronze; silver
   and the candles are derived by the real materialized views.
3. ``k2-migrate upgrade head`` moves everything to ``k2`` and adds ``window_end``; its summary lists
   every guard, how long ingestion was paused and the window_end check.
4. A test trade is sent through each bronze table, to show the re-created pipeline writes into k2.

``--scale`` multiplies the volumes (10 and 100 are what the benchmarks use).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

DEMO_PATH = Path(".k2-migrate") / "demo"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m k2_migrations.k2.demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="volume multiplier (1: the handoff's volumes)"
    )
    parser.add_argument("--path", type=Path, default=DEMO_PATH, help="embedded data directory (recreated)")
    parser.add_argument("-c", "--config", type=Path, default=Path("alembic.ini"))
    args = parser.parse_args(argv)

    from k2_migrations.backends import open_backend
    from k2_migrations.commands.migrate import migrate
    from k2_migrations.commands.project import Project, Settings
    from k2_migrations.config import parse_url
    from k2_migrations.errors import K2MigrateError
    from k2_migrations.k2 import demo_data
    from k2_migrations.output.progress import Progress
    from k2_migrations.output.report import run_text

    path = args.path.resolve()
    shutil.rmtree(path, ignore_errors=True)
    url = f"chdb://{path}"
    # No broker runs here: point the Kafka tables at a closed local port instead of production's host.
    os.environ.setdefault("K2_KAFKA_BROKERS", "127.0.0.1:9")
    project = Project(Settings(config_file=args.config, url=url, command="make demo"))
    quiet = Progress(quiet=True)
    try:
        print(f"1. K2 baseline in the embedded engine at {path}")
        migrate(project, "up", "k2_001", quiet)
        backend = open_backend(parse_url(url))
        started = time.perf_counter()
        print(f"2. loading synthetic market data (scale {args.scale:g}) into default.bronze_* ...")
        loaded = demo_data.load(backend.client, "default", args.scale)
        counts = _counts(backend.client, "default")
        print(
            f"   {sum(loaded.values()):,} bronze rows in {time.perf_counter() - started:.1f}s; derived by the views:"
        )
        for table, rows in counts.items():
            print(f"     default.{table:<24} {rows:>12,}")
        backend.close()
        print("3. k2-migrate upgrade head (k2-migrate -v shows every statement; here only the summary)")
        result = migrate(project, "up", "head", quiet)
        print()
        print(run_text(result))
        backend = open_backend(parse_url(url))
        print()
        print("4. a test trade through each bronze table of k2:")
        for line in _test_trades(backend.client):
            print(f"   {line}")
        backend.close()
    except K2MigrateError as exc:
        print(f"k2-migrate: error: {exc.message}", file=sys.stderr)
        return int(exc.exit_code)
    return 0


def _counts(client: object, database: str) -> dict[str, int]:
    """Rows as a reader sees them (FINAL where background merges collapse rows)."""
    from k2_migrations.introspection.catalog import Catalog
    from k2_migrations.k2.baseline_schema import DATA_TABLES

    catalog = Catalog(client)  # type: ignore[arg-type]
    counts = {}
    for table in DATA_TABLES:
        info = catalog.table(database, table)
        final = " FINAL" if info is not None and info.collapses else ""
        counts[table] = int(catalog.scalar(f"SELECT count() FROM {database}.{table}{final}"))
    return counts


def _test_trades(client: object) -> list[str]:
    c: object = client
    run = c.command  # type: ignore[attr-defined]
    run(
        "INSERT INTO k2.bronze_trades_binance (exchange_timestamp, symbol, trade_id, price, quantity,"
        " is_buyer_maker, event_timestamp, kafka_partition, kafka_offset)"
        " VALUES ('2030-01-01 12:34:56.789', 'BTCUSDT', 999000001, 50000, 0.5, 0, '2030-01-01 12:34:56.789', 0, 0)"
    )
    run(
        "INSERT INTO k2.bronze_trades_kraken (exchange_timestamp, pair, side, order_type, trade_id, price, volume,"
        " kafka_partition, kafka_offset)"
        " VALUES ('2030-01-01 12:34:56.123456', 'XBT/USD', 's', 'l', 999000002, 49000, 0.25, 0, 0)"
    )
    lines = []
    for exchange, symbol in (("binance", "BTC/USDT"), ("kraken", "BTC/USD")):
        silver = run(
            f"SELECT count() FROM k2.silver_trades WHERE exchange = '{exchange}' AND canonical_symbol = '{symbol}'"
            " AND timestamp >= '2030-01-01'"
        )
        candles = []
        for table in ("ohlcv_1m", "ohlcv_5m", "ohlcv_1h", "ohlcv_1d"):
            row = run(
                f"SELECT concat(toString(window_start), ' .. ', toString(window_end)) FROM k2.{table}"
                f" WHERE exchange = '{exchange}' AND canonical_symbol = '{symbol}' AND window_start >= '2030-01-01'"
                " LIMIT 1"
            )
            candles.append(f"{table} {row}")
        lines.append(f"{exchange}: silver {silver} row; " + "; ".join(candles))
    return lines


if __name__ == "__main__":
    sys.exit(main())
