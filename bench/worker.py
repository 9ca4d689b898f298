"""What the benchmarks run inside a child process: everything that opens an embedded database.

chDB allows one data directory per process, and a measurement must not inherit a warm engine, so each
action below runs in a fresh ``python -m bench.worker ACTION ARGS...`` and prints one JSON document:

- ``load DIR SCALE``: ``demo_data.load(client, "default", SCALE)`` and the resulting counts;
- ``replay DIR PLAN.json``: run a list of statements, counts and mutation waits, timing each: the
  "plain script" the overhead benchmark compares k2-migrate with;
- ``counts DIR DATABASE REPEAT``: time ``count()`` (what a guard runs) and a one-column scan on each K2
  data table, merges stopped on the collapsing ones first, as the guards do;
- ``add_candles DIR PER_TABLE``: insert synthetic candles straight into ``default``'s four OHLCV
  tables (no trades: silver and bronze are left as they are);
- ``mutate DIR DATABASE REPEAT [ADD.json]``: time ``MATERIALIZE COLUMN window_end`` (waited for with
  ``mutations_sync = 2``) on each OHLCV table, after running the statements in ADD.json;
- ``unit_costs DIR REPEAT``: time the single statements k2-migrate issues most (a journal append, a
  catalog lookup) in a new scratch database;
- ``live_pause DIR CONFIG``: the engine held open as a server holds it, its Kafka consumers settled on
  a live broker (``K2_KAFKA_BROKERS``), then ``k2-migrate -v upgrade head --json`` run in this process.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from functools import partial
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from k2_migrations.k2.baseline_schema import DATA_TABLES, OHLCV_TABLES
from k2_migrations.state.rows import insert_rows
from tests.support.wait import wait_until

COLLAPSING = ("ReplacingMergeTree", "AggregatingMergeTree", "SummingMergeTree", "CollapsingMergeTree")
MUTATION_POLL_S = 0.005
"""How often the plain script polls ``system.mutations``: fine enough not to add to what it measures."""
MUTATION_TIMEOUT_S = 3600
SETTLE_TIMEOUT_S = 180
"""Consumers joining on the test broker take ~8-25 s; more than this is a stuck group, not a slow one."""
LIVE_RATE_PER_S = 100
"""Messages per second produced to each K2 topic while the live pause is measured: a steady feed."""

WINDOW_SECONDS = {"ohlcv_1m": 60, "ohlcv_5m": 300, "ohlcv_1h": 3600, "ohlcv_1d": 86400}
JANUARY_S = 31 * 86400
KAFKA_TARGETS = ("bronze_trades_binance", "bronze_trades_kraken")


def _open(path: str, config: str | None = None) -> Client:
    """A clickhouse-connect client on the embedded database in ``path``, the engine configured as
    k2-migrate's embedded backend configures it (or with ``config``): both arms of a comparison run
    the same engine."""
    import clickhouse_connect

    from k2_migrations.backends.embedded import DEFAULT_CONFIG

    client: Client = clickhouse_connect.get_client(
        dsn=f"chdb://{Path(path).resolve()}", chdb_options={"config-file": config or str(DEFAULT_CONFIG)}
    )
    return client


def _scalar(client: Client, sql: str) -> Any:
    """The first value of a query's first row."""
    rows = client.query(sql).result_rows
    return rows[0][0] if rows else None


def _done(client: Client, sql: str) -> bool:
    """Whether a count query returns 0 (nothing left pending)."""
    return not _scalar(client, sql)


def _timed(client: Client, sql: str) -> float:
    """Seconds one query takes."""
    started = time.perf_counter()
    client.query(sql)
    return time.perf_counter() - started


def load(path: str, scale: str) -> dict[str, Any]:
    """Load the demo data at ``scale`` into ``default`` (the views derive silver and the candles)."""
    from k2_migrations.k2 import demo_data

    client = _open(path)
    started = time.perf_counter()
    inserted = demo_data.load(client, "default", float(scale))
    seconds = time.perf_counter() - started
    rows = {t: int(_scalar(client, f"SELECT count() FROM default.{t}")) for t in DATA_TABLES}
    client.close()
    return {"inserted": inserted, "rows": rows, "load_s": seconds}


def _together(path: str, statements: list[str]) -> None:
    """Run statements at the same time, each on a client of its own (as k2-migrate's execute_together)."""
    from concurrent.futures import ThreadPoolExecutor

    def run(sql: str) -> None:
        """One statement on a client of its own."""
        client = _open(path)
        try:
            client.command(sql)
        finally:
            client.close()

    with ThreadPoolExecutor(len(statements)) as pool:
        for future in [pool.submit(run, sql) for sql in statements]:
            future.result()


def replay(path: str, plan_file: str) -> dict[str, Any]:
    """Run the plan's items in order through clickhouse-connect, timing each."""
    items: list[dict[str, str]] = json.loads(Path(plan_file).read_text())
    started = time.perf_counter()
    client = _open(path)
    opened = time.perf_counter()
    timings: list[dict[str, Any]] = []
    for item in items:
        kind, sql = item["kind"], item.get("sql", "")
        item_started = time.perf_counter()
        if kind == "sql":
            client.command(sql)
        elif kind == "query":
            client.query(sql)
        elif kind == "together":
            _together(path, json.loads(sql))
        elif kind == "wait_mutations":
            pending = (
                "SELECT count() FROM system.mutations"
                f" WHERE database = '{item['database']}' AND table = '{item['table']}' AND NOT is_done"
            )
            wait_until(
                partial(_done, client, pending),
                MUTATION_TIMEOUT_S,
                f"the mutations on {item['database']}.{item['table']}",
                interval_s=MUTATION_POLL_S,
            )
        else:
            raise ValueError(f"unknown plan item kind {kind!r}")
        timings.append(
            {
                "label": item.get("label", ""),
                "kind": kind,
                "statements": len(json.loads(sql)) if kind == "together" else 1,
                "seconds": time.perf_counter() - item_started,
            }
        )
    finished = time.perf_counter()
    client.close()
    closed = time.perf_counter()
    return {
        "open_s": opened - started,
        "statements_s": finished - opened,
        "close_s": closed - finished,
        "items": timings,
    }


def counts(path: str, database: str, repeat: str) -> dict[str, Any]:
    """Per data table: rows, active parts, ``count()`` times and one-column scan times."""
    client = _open(path)
    times = int(repeat)
    tables: list[dict[str, Any]] = []
    for table in DATA_TABLES:
        engine = str(
            _scalar(
                client, f"SELECT engine FROM system.tables WHERE database = '{database}' AND name = '{table}'"
            )
        )
        stopped = engine.startswith(COLLAPSING)
        if stopped:
            client.command(f"SYSTEM STOP MERGES {database}.{table}")
        first_column = _scalar(
            client,
            f"SELECT name FROM system.columns WHERE database = '{database}' AND table = '{table}'"
            " ORDER BY position LIMIT 1",
        )
        sql = f"SELECT count() FROM {database}.{table}"
        scan = f"SELECT count() FROM {database}.{table} WHERE NOT ignore({first_column})"
        rows = int(_scalar(client, sql))
        parts = int(
            _scalar(
                client,
                "SELECT count() FROM system.parts"
                f" WHERE database = '{database}' AND table = '{table}' AND active",
            )
        )
        count_s = [_timed(client, sql) for _ in range(times)]
        scan_s = [_timed(client, scan) for _ in range(times)]
        tables.append(
            {
                "table": table,
                "engine": engine,
                "merges_stopped": stopped,
                "rows": rows,
                "parts": parts,
                "count_s": count_s,
                "scan_s": scan_s,
                "scan_sql": scan,
            }
        )
    guard_s = []
    for _ in range(times):
        started = time.perf_counter()
        for table in DATA_TABLES:
            client.query(f"SELECT count() FROM {database}.{table}")
        guard_s.append(time.perf_counter() - started)
    client.close()
    return {"tables": tables, "guard_s": guard_s}


def add_candles(path: str, per_table: str) -> dict[str, Any]:
    """Insert ``per_table`` synthetic candles (exchange ``synthetic``, January 2026) into each OHLCV table.

    Every candle has its own (symbol, window): ``windows`` consecutive windows per synthetic symbol, all
    in one month, so each table gets one partition more and one insert's worth of parts.
    """
    client = _open(path)
    count = int(per_table)
    started = time.perf_counter()
    for table in OHLCV_TABLES:
        width = WINDOW_SECONDS[table]
        windows = min(count, JANUARY_S // width)
        client.command(
            f"INSERT INTO default.{table} (exchange, canonical_symbol, window_start, open_price, high_price,"
            " low_price, close_price, volume, trade_count)"
            f" SELECT 'synthetic', concat('SYN', toString(intDiv(number, {windows})), '/USD'),"
            " toDateTime64('2026-01-01 00:00:00', 3, 'UTC')"
            f" + toIntervalSecond((number % {windows}) * {width}),"
            " toDecimal64(100 + number % 1000, 8), toDecimal64(101 + number % 1000, 8),"
            " toDecimal64(99 + number % 1000, 8), toDecimal64(100 + number % 997, 8),"
            " toDecimal128(number % 50 + 1, 8), number % 50 + 1"
            f" FROM numbers({count})"
        )
    seconds = time.perf_counter() - started
    rows = {t: int(_scalar(client, f"SELECT count() FROM default.{t}")) for t in OHLCV_TABLES}
    client.close()
    return {"rows": rows, "insert_s": seconds}


def mutate(path: str, database: str, repeat: str, add_columns: str = "") -> dict[str, Any]:
    """Time ``MATERIALIZE COLUMN window_end`` with ``mutations_sync = 2`` on each OHLCV table.

    ``add_columns`` names a JSON list of statements run first, untimed: the ``ADD COLUMN`` statements
    k2_004 journaled, so that the first repetition fills a column no part has yet, as k2_004's does.
    """
    client = _open(path)
    for statement in json.loads(Path(add_columns).read_text()) if add_columns else []:
        client.command(statement)
    tables: list[dict[str, Any]] = []
    for table in OHLCV_TABLES:
        where = f"database = '{database}' AND table = '{table}' AND active"
        rows = int(_scalar(client, f"SELECT count() FROM {database}.{table}"))
        parts = int(_scalar(client, f"SELECT count() FROM system.parts WHERE {where}"))
        seconds = []
        for _ in range(int(repeat)):
            started = time.perf_counter()
            client.command(
                f"ALTER TABLE {database}.{table} MATERIALIZE COLUMN window_end SETTINGS mutations_sync = 2"
            )
            seconds.append(time.perf_counter() - started)
        tables.append({"table": table, "rows": rows, "parts": parts, "seconds": seconds})
    client.close()
    return {"tables": tables}


def unit_costs(path: str, repeat: str) -> dict[str, Any]:
    """Median seconds of the single statements k2-migrate issues most, in a fresh scratch database.

    The journal is a ``Log`` table appended to with :func:`k2_migrations.sqltext.quoting.insert_rows` (one
    JSONEachRow block per durable point); a catalog lookup is one ``system.tables`` row; the rest are
    for comparison.
    """
    from datetime import UTC, datetime

    client = _open(path)
    client.command("CREATE DATABASE IF NOT EXISTS scratch")
    columns = "(at DateTime64(6, 'UTC'), run_id String, sql String, payload String)"
    for engine in ("Log", "Memory", "MergeTree ORDER BY at"):
        table = "t_" + engine.split()[0].lower()
        client.command(f"CREATE TABLE scratch.{table} {columns} ENGINE = {engine}")
    times = int(repeat)
    row = ["run", "SELECT 1", "{}"]
    names = ["at", "run_id", "sql", "payload"]
    probes: dict[str, Any] = {
        "SELECT 1": lambda: client.query("SELECT 1"),
        "catalog lookup: one system.tables row (as Catalog.table)": lambda: client.query(
            "SELECT database, name, engine, create_table_query FROM system.tables"
            " WHERE database = {d:String} AND name = {n:String}",
            parameters={"d": "scratch", "n": "t_log"},
        ),
        "journal append as k2-migrate does it (insert_rows, 1 row, Log)": lambda: insert_rows(
            client, "scratch.t_log", names, [[datetime.now(UTC), *row]]
        ),
        "the same, 50 rows in one append": lambda: insert_rows(
            client, "scratch.t_log", names, [[datetime.now(UTC), *row]] * 50
        ),
        "the same row into a Memory table": lambda: insert_rows(
            client, "scratch.t_memory", names, [[datetime.now(UTC), *row]]
        ),
        "the same row into a MergeTree table": lambda: insert_rows(
            client, "scratch.t_mergetree", names, [[datetime.now(UTC), *row]]
        ),
        "client.insert of 1 row into a Log table (loads pandas on first use)": lambda: client.insert(
            "scratch.t_log", [[datetime.now(UTC), *row]], column_names=names
        ),
    }
    results: dict[str, Any] = {}
    for name, probe in probes.items():
        first = time.perf_counter()
        probe()
        first_s = time.perf_counter() - first
        seconds = []
        for _ in range(times):
            started = time.perf_counter()
            probe()
            seconds.append(time.perf_counter() - started)
        results[name] = {"first_s": first_s, "seconds": seconds}
    client.close()
    return {"probes": results}


class _Records(logging.Handler):
    """Collects log records with their times: the statements ``k2-migrate -v`` logs, on a time line."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.created, record.getMessage()))


def _bronze_rows(client: Client, database: str) -> tuple[int, ...]:
    """Rows in each bronze table of ``database`` (where the Kafka consumers' views write)."""
    return tuple(int(_scalar(client, f"SELECT count() FROM {database}.{t}")) for t in KAFKA_TARGETS)


def _settle(client: Client, database: str, timeout_s: float) -> float:
    """Wait until every Kafka consumer of ``database`` has delivered new rows; return the seconds.

    A member that leaves a Tansu group while still joining leaves the group stuck for the next process
    (../shared/clickhouse-notes.md), so the engine is closed only with consumers that have consumed.
    """
    started = time.perf_counter()
    before = _bronze_rows(client, database)
    wait_until(
        lambda: all(n > b for n, b in zip(_bronze_rows(client, database), before, strict=True)),
        timeout_s,
        lambda: f"the Kafka consumers of {database} to deliver rows (bronze rows {before})",
        interval_s=0.1,
    )
    return time.perf_counter() - started


#: How often the flush sampler reads the bronze tables' row counts, and how many flushes it waits
#: for before the migration (the longest gap before it) and after (the first batches of the new tables).
FLUSH_SAMPLE_S = 0.05
FLUSHES_BEFORE = 3
FLUSHES_AFTER = 2
FLUSH_TIMEOUT_S = 90


class _Flushes(threading.Thread):
    """When batches land in the Kafka tables' bronze targets, whichever database they are in.

    Every :data:`FLUSH_SAMPLE_S` it reads the bronze tables' total rows from ``system.tables`` (their
    metadata: no part is read) on a client of its own; a batch landed when the total passes every
    total before it (a table being moved is briefly in neither database, and comes back with its rows).
    """

    def __init__(self, path: str, config: str) -> None:
        super().__init__(daemon=True)
        self.client = _open(path, config)
        self.at: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        names = ", ".join(f"'{t}'" for t in KAFKA_TARGETS)
        sql = f"SELECT sum(total_rows) FROM system.tables WHERE database IN ('default', 'k2') AND name IN ({names})"
        best = -1
        while not self.stop.is_set():
            total = int(_scalar(self.client, sql) or 0)
            if total > best:
                if best >= 0:
                    self.at.append(time.time())
                best = total
            time.sleep(FLUSH_SAMPLE_S)

    def wait_for(self, count: int, after: float) -> None:
        wait_until(
            lambda: sum(1 for t in self.at if t > after) >= count,
            FLUSH_TIMEOUT_S,
            lambda: f"{count} flushed batches (seen {len(self.at)})",
            interval_s=0.1,
        )

    def close(self) -> None:
        self.stop.set()
        self.join()
        self.client.close()


def live_pause(path: str, config: str) -> dict[str, Any]:
    """Hold the engine open, settle its consumers on the live broker, run k2-migrate here, settle again.

    The migration runs through the ``k2-migrate`` entry point in this process, on the same path and
    config file, so it works on the engine whose consumers are running, as on a server. Its ``-v``
    statement log (each statement with its duration) is collected with the time of each record.
    """
    from k2_migrations.cli import main as k2_migrate
    from tests.support.kafka_producer import BackgroundProducer

    started = time.perf_counter()
    client = _open(path, config)
    opened_s = time.perf_counter() - started
    records = _Records()
    logging.getLogger().addHandler(records)  # before main(): k2-migrate keeps a host's logging
    url = f"chdb://{Path(path).resolve()}?config-file={config}"
    argv = ["-c", str(Path(__file__).resolve().parent.parent / "alembic.ini"), "--url", url, "-v"]
    topics = ["market.crypto.trades.binance", "market.crypto.trades.kraken"]
    with BackgroundProducer(
        os.environ["K2_KAFKA_BROKERS"],
        topics,
        rate_per_second=2 * LIVE_RATE_PER_S,
        max_messages=10**7,
        max_seconds=900,
    ):
        settle_s = _settle(client, "default", SETTLE_TIMEOUT_S)
        flushes = _Flushes(path, config)
        flushes.start()
        try:
            flushes.wait_for(FLUSHES_BEFORE, 0.0)
            out = io.StringIO()
            migrate_started = time.time()
            with redirect_stdout(out):
                code = k2_migrate.main(
                    [*argv, "upgrade", "head", "--json"], "k2-migrate", standalone_mode=False
                )
            migrate_s = time.time() - migrate_started
            if code not in (None, 0):
                raise RuntimeError(f"k2-migrate exited {code}: {out.getvalue()[-2000:]}")
            resettle_s = _settle(client, "k2", SETTLE_TIMEOUT_S)
            flushes.wait_for(FLUSHES_AFTER, migrate_started + migrate_s)
        finally:
            flushes.close()
    closing = time.perf_counter()
    client.close()
    return {
        "open_s": opened_s,
        "settle_s": settle_s,
        "migrate_s": migrate_s,
        "resettle_s": resettle_s,
        "close_s": time.perf_counter() - closing,
        "document": json.loads(out.getvalue()),
        "log": [(at - migrate_started, line) for at, line in records.lines],
        "flushes": [at - migrate_started for at in flushes.at],
    }


ACTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "load": load,
    "replay": replay,
    "counts": counts,
    "add_candles": add_candles,
    "mutate": mutate,
    "unit_costs": unit_costs,
    "live_pause": live_pause,
}


def main(argv: list[str]) -> int:
    """``python -m bench.worker ACTION ARGS...``: run one action, print its JSON report."""
    if not argv or argv[0] not in ACTIONS:
        print(f"usage: python -m bench.worker {{{','.join(ACTIONS)}}} ARGS...", file=sys.stderr)
        return 2
    result = ACTIONS[argv[0]](*argv[1:])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
