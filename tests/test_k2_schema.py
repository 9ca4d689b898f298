"""The frozen K2 baseline schema, the production fixture and the demo data, on a real engine.

Why these tests exist: every K2 migration re-creates views and Kafka tables from
``k2_migrations.k2.baseline_schema``, and the guards are proven on data from ``demo_data``. A wrong
column type, a view writing to the wrong table or a normalisation bug would be carried into
production by the migration itself, so each object is checked against k2-schema.md (the expected
columns below are copied from the spec, not from the module) and data is pushed through the views.

The engine is the suite's shared one (``ch`` in conftest.py: chDB allows one data path per process);
each test works in its own database and drops it afterwards. Kafka tables point at 127.0.0.1:1, a
closed loopback port, so their consumers fail fast and never leave the machine.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from k2_migrations.k2 import baseline_schema as schema
from k2_migrations.k2 import demo_data

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "k2_production.sql"
TEST_BROKERS = "127.0.0.1:1"

_DT3 = "DateTime64(3, 'UTC')"
_DEC = "Decimal(18, 8)"
_LCS = "LowCardinality(String)"
_OHLCV = [
    ("exchange", _LCS),
    ("canonical_symbol", _LCS),
    ("window_start", _DT3),
    ("open_price", f"SimpleAggregateFunction(any, {_DEC})"),
    ("high_price", f"SimpleAggregateFunction(max, {_DEC})"),
    ("low_price", f"SimpleAggregateFunction(min, {_DEC})"),
    ("close_price", f"SimpleAggregateFunction(anyLast, {_DEC})"),
    ("volume", "SimpleAggregateFunction(sum, Decimal(38, 8))"),
    ("trade_count", "SimpleAggregateFunction(sum, UInt64)"),
]

# k2-schema.md, "Data tables": columns in order, engine, sorting key, partition key.
SPEC_TABLES: dict[str, tuple[list[tuple[str, str]], str, str, str]] = {
    "bronze_trades_binance": (
        [
            ("exchange_timestamp", _DT3),
            ("symbol", _LCS),
            ("trade_id", "UInt64"),
            ("price", _DEC),
            ("quantity", _DEC),
            ("is_buyer_maker", "Bool"),
            ("event_timestamp", _DT3),
            ("kafka_partition", "UInt32"),
            ("kafka_offset", "UInt64"),
            ("ingested_at", _DT3),
        ],
        "MergeTree",
        "symbol, exchange_timestamp, trade_id",
        "toYYYYMM(exchange_timestamp)",
    ),
    "bronze_trades_kraken": (
        [
            ("exchange_timestamp", "DateTime64(6, 'UTC')"),
            ("pair", _LCS),
            ("side", _LCS),
            ("order_type", _LCS),
            ("trade_id", "UInt64"),
            ("price", _DEC),
            ("volume", _DEC),
            ("kafka_partition", "UInt32"),
            ("kafka_offset", "UInt64"),
            ("ingested_at", _DT3),
        ],
        "MergeTree",
        "pair, exchange_timestamp, trade_id",
        "toYYYYMM(exchange_timestamp)",
    ),
    "bronze_trades_dlq": (
        [
            ("exchange", _LCS),
            ("kafka_topic", "String"),
            ("kafka_partition", "UInt32"),
            ("kafka_offset", "UInt64"),
            ("raw_message", "String"),
            ("error", "String"),
            ("ingested_at", _DT3),
        ],
        "MergeTree",
        "exchange, ingested_at",
        "",
    ),
    "silver_trades": (
        [
            ("exchange", _LCS),
            ("canonical_symbol", _LCS),
            ("trade_id", "String"),
            ("timestamp", _DT3),
            ("price", _DEC),
            ("quantity", _DEC),
            ("side", "Enum8('buy' = 1, 'sell' = 2)"),
            ("ingested_at", _DT3),
        ],
        "ReplacingMergeTree",
        "exchange, canonical_symbol, timestamp, trade_id",
        "toYYYYMM(timestamp)",
    ),
    **{
        t: (
            _OHLCV,
            "AggregatingMergeTree",
            "exchange, canonical_symbol, window_start",
            "toYYYYMM(window_start)",
        )
        for t in ("ohlcv_1m", "ohlcv_5m", "ohlcv_1h", "ohlcv_1d")
    },
}

# k2-schema.md, "The ten materialized views": view -> (from, to).
SPEC_VIEWS: dict[str, tuple[str, str]] = {
    "bronze_trades_binance_mv": ("bronze_trades_binance_queue", "bronze_trades_binance"),
    "bronze_trades_binance_dlq_mv": ("bronze_trades_binance_queue", "bronze_trades_dlq"),
    "bronze_trades_kraken_mv": ("bronze_trades_kraken_queue", "bronze_trades_kraken"),
    "bronze_trades_kraken_dlq_mv": ("bronze_trades_kraken_queue", "bronze_trades_dlq"),
    "silver_trades_binance_mv": ("bronze_trades_binance", "silver_trades"),
    "silver_trades_kraken_mv": ("bronze_trades_kraken", "silver_trades"),
    "ohlcv_1m_mv": ("silver_trades", "ohlcv_1m"),
    "ohlcv_5m_mv": ("silver_trades", "ohlcv_5m"),
    "ohlcv_1h_mv": ("silver_trades", "ohlcv_1h"),
    "ohlcv_1d_mv": ("silver_trades", "ohlcv_1d"),
}

SPEC_KAFKA: dict[str, tuple[str, str]] = {
    "bronze_trades_binance_queue": ("market.crypto.trades.binance", "k2_bronze_trades_binance"),
    "bronze_trades_kraken_queue": ("market.crypto.trades.kraken", "k2_bronze_trades_kraken"),
}

WINDOW_SECONDS = {"ohlcv_1m": 60, "ohlcv_5m": 300, "ohlcv_1h": 3600, "ohlcv_1d": 86400}
COLLAPSING = {"silver_trades", *WINDOW_SECONDS}  # merges shrink count(): compare with FINAL
# k2-schema.md, "Target state": window_end = window_start + 1 minute / 5 minutes / 1 hour / 1 day, as the
# engine spells those intervals back in system.tables and system.columns.
WINDOW_INTERVALS = {
    "ohlcv_1m": "toIntervalMinute(1)",
    "ohlcv_5m": "toIntervalMinute(5)",
    "ohlcv_1h": "toIntervalHour(1)",
    "ohlcv_1d": "toIntervalDay(1)",
}
# The handoff (shared/seed/HANDOFF-2026-02-12.md): candles in production, which the demo data mirrors
# at every scale.
HANDOFF_CANDLES = {"ohlcv_1m": 333, "ohlcv_5m": 76, "ohlcv_1h": 13, "ohlcv_1d": 8}


# ---------------------------------------------------------------------------- helpers


def rows(ch: Client, sql: str, **params: object) -> list[tuple[object, ...]]:
    return [tuple(r) for r in ch.query(sql, parameters=params).result_rows]


def scalar(ch: Client, sql: str, **params: object) -> object:
    return rows(ch, sql, **params)[0][0]


def mapping(ch: Client, sql: str, **params: object) -> dict[str, object]:
    """A two-column result as {first column (as text): second column}."""
    return {str(key): value for key, value in rows(ch, sql, **params)}


@contextmanager
def scratch_database(ch: Client, prefix: str) -> Iterator[str]:
    """A fresh database, dropped afterwards (plain DROP: ``SYNC`` hangs on chDB)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    ch.command(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        ch.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def k2db(ch: Client) -> Iterator[str]:
    """A database holding the whole baseline schema, Kafka tables included."""
    with scratch_database(ch, "k2base") as db:
        for statement in schema.baseline_statements(db, TEST_BROKERS):
            ch.command(statement)
        yield db


@pytest.fixture
def pipeline_db(ch: Client) -> Iterator[str]:
    """Bronze, silver, candles and their six views: the baseline without the Kafka tables."""
    with scratch_database(ch, "k2pipe") as db:
        for name in schema.DATA_TABLES:
            ch.command(schema.data_table_ddl(name, db))
        for view in schema.VIEWS:
            if schema.VIEW_ROUTES[view][0] not in schema.KAFKA_TABLES:
                ch.command(schema.view_ddl(view, db))
        yield db


def canonical_definitions(ch: Client, database: str) -> dict[str, tuple[object, ...]]:
    """Each object's engine and server-formatted CREATE, with the database name factored out."""
    found = rows(
        ch,
        "SELECT name, engine, create_table_query FROM system.tables WHERE database = {db:String}",
        db=database,
    )
    return {str(n): (e, str(q).replace(f"{database}.", "<db>.")) for n, e, q in found}


def dependents(ch: Client, database: str) -> dict[str, set[str]]:
    """Each object's readers as the engine tracks them (system.tables.dependencies_table)."""
    found = rows(
        ch, "SELECT name, dependencies_table FROM system.tables WHERE database = {db:String}", db=database
    )
    return {str(name): {str(t) for t in tables} for name, tables in found if isinstance(tables, list)}


def insert_binance(ch: Client, db: str, trades: list[tuple[str, str, int, str, str, bool]]) -> None:
    """Insert (time, symbol, trade_id, price, quantity, is_buyer_maker) rows into bronze in ONE block."""
    values = ", ".join(
        f"('{t}', '{s}', {i}, {p}, {q}, {str(m).lower()}, '{t}', 0, {i})" for t, s, i, p, q, m in trades
    )
    ch.command(
        f"INSERT INTO {db}.bronze_trades_binance (exchange_timestamp, symbol, trade_id, price, quantity,"
        f" is_buyer_maker, event_timestamp, kafka_partition, kafka_offset) VALUES {values}"
    )


def insert_kraken(ch: Client, db: str, trades: list[tuple[str, str, str, int, str, str]]) -> None:
    """Insert (time, pair, side, trade_id, price, volume) rows into bronze in ONE block."""
    values = ", ".join(f"('{t}', '{p}', '{s}', 'l', {i}, {px}, {v}, 0, {i})" for t, p, s, i, px, v in trades)
    ch.command(
        f"INSERT INTO {db}.bronze_trades_kraken (exchange_timestamp, pair, side, order_type, trade_id, price,"
        f" volume, kafka_partition, kafka_offset) VALUES {values}"
    )


def candles(ch: Client, db: str, table: str, exchange: str) -> list[tuple[object, ...]]:
    """Logical candles of one exchange: (window_start, open, high, low, close, volume, count)."""
    return rows(
        ch,
        f"SELECT toString(window_start), open_price, high_price, low_price, close_price, volume, trade_count"
        f" FROM {db}.{table} FINAL WHERE exchange = {{ex:String}} ORDER BY window_start",
        ex=exchange,
    )


# ---------------------------------------------------------------------------- DDL text (no engine)


def test_statements_are_qualified_ordered_and_never_populate() -> None:
    statements = schema.baseline_statements("k2", "redpanda:9092")
    assert len(statements) == 20
    assert len(schema.DATA_TABLES) == 8 and len(schema.KAFKA_TABLES) == 2 and len(schema.VIEWS) == 10
    assert set(schema.all_objects()) == set(SPEC_TABLES) | set(SPEC_KAFKA) | set(SPEC_VIEWS)
    assert schema.VIEW_ROUTES == SPEC_VIEWS
    for statement in statements:
        assert "POPULATE" not in statement.upper()
        created = re.match(r"CREATE (?:TABLE|MATERIALIZED VIEW) (\S+)", statement)
        assert created is not None and created.group(1).startswith("k2."), statement
        # every FROM / TO names a table of k2, never an unqualified one
        for ref in re.findall(r"\b(?:FROM|TO) (\S+)", statement):
            assert ref.startswith("k2."), (ref, statement)
    # creation order: all tables, then views; a view is created after every view that reads its target
    first_view = next(i for i, s in enumerate(statements) if s.startswith("CREATE MATERIALIZED VIEW"))
    assert all(s.startswith("CREATE TABLE") for s in statements[:first_view])
    position = {view: i for i, view in enumerate(schema.VIEWS)}
    for view, (_source, target) in SPEC_VIEWS.items():
        for downstream, (downstream_source, _) in SPEC_VIEWS.items():
            if downstream_source == target:
                assert position[downstream] < position[view], (downstream, view)
    ingest = [v for v in schema.VIEWS if SPEC_VIEWS[v][0] in SPEC_KAFKA]
    assert list(schema.VIEWS[-4:]) == ingest
    # consumption starts with the first view on a Kafka table: the data view goes before its DLQ sibling
    for exchange in ("binance", "kraken"):
        assert position[f"bronze_trades_{exchange}_mv"] < position[f"bronze_trades_{exchange}_dlq_mv"]


def test_kafka_ddl_settings_and_broker_quoting() -> None:
    ddl = schema.kafka_table_ddl("bronze_trades_kraken_queue", "default", "redpanda:9092")
    for setting in (
        "kafka_broker_list = 'redpanda:9092'",
        "kafka_topic_list = 'market.crypto.trades.kraken'",
        "kafka_group_name = 'k2_bronze_trades_kraken'",
        "kafka_format = 'JSONEachRow'",
        "kafka_num_consumers = 1",
        "kafka_handle_error_mode = 'stream'",
    ):
        assert setting in ddl
    hostile = schema.kafka_table_ddl("bronze_trades_binance_queue", "k2", "a:1', kafka_group_name = 'x")
    assert "kafka_broker_list = 'a:1\\', kafka_group_name = \\'x'" in hostile
    with pytest.raises(ValueError, match="plain identifier"):
        schema.data_table_ddl("silver_trades", "k2; DROP DATABASE default")
    with pytest.raises(ValueError, match="not an OHLCV table"):
        schema.ohlcv_window_end_column("silver_trades")
    with pytest.raises(ValueError, match="not a K2 materialized view"):
        schema.view_ddl("silver_trades", "k2")


def test_window_end_switch_changes_only_the_candle_views(ch: Client, k2db: str) -> None:
    """As the engine stores them: with window_end, only the four candle tables and their views differ
    from the baseline, each by exactly the window_end column, and every view reads what it read."""
    with scratch_database(ch, "k2end") as ended:
        for name in schema.DATA_TABLES:
            ch.command(schema.data_table_ddl(name, ended, window_end=name in WINDOW_SECONDS))
        for name in schema.KAFKA_TABLES:
            ch.command(schema.kafka_table_ddl(name, ended, TEST_BROKERS))
        for view in schema.VIEWS:
            ch.command(schema.view_ddl(view, ended, window_end=True))
        plain, with_end = canonical_definitions(ch, k2db), canonical_definitions(ch, ended)
        assert set(plain) == set(with_end)
        changed = {name for name in plain if plain[name] != with_end[name]}
        assert changed == set(WINDOW_SECONDS) | {f"{table}_mv" for table in WINDOW_SECONDS}
        for table, interval in WINDOW_INTERVALS.items():
            view = str(with_end[f"{table}_mv"][1])
            computed = f"window_start + {interval} AS window_end, "
            assert f"AS window_start, {computed}argMin(price, timestamp) AS open_price" in view, view
            assert view.replace(computed, "").replace("`window_end` DateTime('UTC'), ", "") == str(
                plain[f"{table}_mv"][1]
            )
            column = rows(
                ch,
                "SELECT type, default_kind, default_expression FROM system.columns WHERE database = {db:String}"
                " AND table = {t:String} AND name = 'window_end'",
                db=ended,
                t=table,
            )
            assert column == [
                (
                    "SimpleAggregateFunction(any, DateTime64(3, 'UTC'))",
                    "DEFAULT",
                    f"window_start + {interval}",
                )
            ]
        readers = dependents(ch, ended)
        assert readers == dependents(ch, k2db)
        assert readers["silver_trades"] == {f"{table}_mv" for table in WINDOW_SECONDS}


# ---------------------------------------------------------------------------- on the engine


def test_baseline_creates_the_20_objects_as_specified(ch: Client, k2db: str) -> None:
    engines = mapping(ch, "SELECT name, engine FROM system.tables WHERE database = {db:String}", db=k2db)
    expected = (
        {t: spec[1] for t, spec in SPEC_TABLES.items()}
        | dict.fromkeys(SPEC_KAFKA, "Kafka")
        | dict.fromkeys(SPEC_VIEWS, "MaterializedView")
    )
    assert engines == expected
    for table, (columns, _engine, sorting_key, partition_key) in SPEC_TABLES.items():
        got = rows(
            ch,
            "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String}"
            " ORDER BY position",
            db=k2db,
            t=table,
        )
        assert got == columns, table
        keys = rows(
            ch,
            "SELECT sorting_key, partition_key FROM system.tables WHERE database = {db:String}"
            " AND name = {t:String}",
            db=k2db,
            t=table,
        )
        assert keys == [(sorting_key, partition_key)], table
    assert "ReplacingMergeTree(ingested_at)" in str(
        scalar(
            ch,
            "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = 'silver_trades'",
            db=k2db,
        )
    )
    defaults = rows(
        ch,
        "SELECT table, default_expression FROM system.columns WHERE database = {db:String}"
        " AND name = 'ingested_at' AND default_kind = 'DEFAULT' ORDER BY table",
        db=k2db,
    )
    assert defaults == [
        (t, "now64(3)") for t in ("bronze_trades_binance", "bronze_trades_dlq", "bronze_trades_kraken")
    ]


def test_kafka_tables_keep_topic_group_and_settings(ch: Client, k2db: str) -> None:
    for table, (topic, group) in SPEC_KAFKA.items():
        engine_full = str(
            scalar(
                ch,
                "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                db=k2db,
                t=table,
            )
        )
        for setting in (
            f"kafka_broker_list = '{TEST_BROKERS}'",
            f"kafka_topic_list = '{topic}'",
            f"kafka_group_name = '{group}'",
            "kafka_format = 'JSONEachRow'",
            "kafka_num_consumers = 1",
            "kafka_handle_error_mode = 'stream'",
        ):
            assert setting in engine_full, (table, setting)
    binance_columns = rows(
        ch,
        "SELECT name FROM system.columns WHERE database = {db:String}"
        " AND table = 'bronze_trades_binance_queue' ORDER BY position",
        db=k2db,
    )
    assert [c[0] for c in binance_columns] == [
        "symbol",
        "trade_id",
        "price",
        "quantity",
        "trade_time_ms",
        "event_time_ms",
        "is_buyer_maker",
    ]
    kraken_columns = rows(
        ch,
        "SELECT name, type FROM system.columns WHERE database = {db:String}"
        " AND table = 'bronze_trades_kraken_queue' ORDER BY position",
        db=k2db,
    )
    assert [c[0] for c in kraken_columns] == [
        "pair",
        "side",
        "order_type",
        "trade_id",
        "price",
        "volume",
        "timestamp",
    ]
    assert ("timestamp", "String") in kraken_columns


def test_views_read_and_write_the_specified_tables(ch: Client, k2db: str) -> None:
    found = rows(
        ch,
        "SELECT name, dependencies_database, dependencies_table, create_table_query FROM system.tables"
        " WHERE database = {db:String}",
        db=k2db,
    )
    dependents: dict[str, set[tuple[object, object]]] = {}
    for name, dbs, tables, _ in found:
        assert isinstance(dbs, list) and isinstance(tables, list)
        dependents[str(name)] = set(zip(dbs, tables, strict=True))
    queries = {str(name): str(query) for name, _, _, query in found}
    for source in {src for src, _ in SPEC_VIEWS.values()}:
        assert dependents[source] == {(k2db, v) for v, (src, _) in SPEC_VIEWS.items() if src == source}
    for view, (source, target) in SPEC_VIEWS.items():
        query = queries[view]
        assert query.startswith(f"CREATE MATERIALIZED VIEW {k2db}.{view} TO {k2db}.{target} ")
        assert f" FROM {k2db}.{source}" in query
        assert "POPULATE" not in query
    # ingest views split the Kafka stream on _error
    assert "WHERE length(_error) = 0" in queries["bronze_trades_binance_mv"]
    assert "WHERE length(_error) > 0" in queries["bronze_trades_kraken_dlq_mv"]
    assert "_raw_message AS raw_message" in queries["bronze_trades_binance_dlq_mv"]


def test_a_trade_flows_from_each_bronze_table_to_silver_and_every_candle(ch: Client, k2db: str) -> None:
    # One block, out of time order: open/close must follow the trade time, not the insert order.
    insert_binance(
        ch,
        k2db,
        [
            ("2026-02-11 14:29:05.000", "BTCUSDT", 103, "41900", "0.3", False),  # low
            ("2026-02-11 14:29:01.250", "BTCUSDT", 101, "42000", "0.1", True),  # open (earliest)
            ("2026-02-11 14:33:00.000", "BTCUSDT", 105, "42075", "1.5", False),  # next 1m and 5m window
            ("2026-02-11 14:29:10.000", "BTCUSDT", 104, "42050", "0.4", True),  # close of 14:29
            ("2026-02-11 14:29:03.000", "BTCUSDT", 102, "42100", "0.2", False),  # high
        ],
    )
    insert_kraken(ch, k2db, [("2026-02-11 14:29:03.123456", "XBT/USD", "s", 7, "42001.1", "0.5")])

    silver = rows(
        ch,
        f"SELECT exchange, canonical_symbol, trade_id, toString(timestamp), price, quantity, toString(side)"
        f" FROM {k2db}.silver_trades FINAL ORDER BY exchange, trade_id",
    )
    assert silver == [
        ("binance", "BTC/USDT", "101", "2026-02-11 14:29:01.250", Decimal("42000"), Decimal("0.1"), "sell"),
        ("binance", "BTC/USDT", "102", "2026-02-11 14:29:03.000", Decimal("42100"), Decimal("0.2"), "buy"),
        ("binance", "BTC/USDT", "103", "2026-02-11 14:29:05.000", Decimal("41900"), Decimal("0.3"), "buy"),
        ("binance", "BTC/USDT", "104", "2026-02-11 14:29:10.000", Decimal("42050"), Decimal("0.4"), "sell"),
        ("binance", "BTC/USDT", "105", "2026-02-11 14:33:00.000", Decimal("42075"), Decimal("1.5"), "buy"),
        ("kraken", "BTC/USD", "7", "2026-02-11 14:29:03.123", Decimal("42001.1"), Decimal("0.5"), "sell"),
    ]

    d = Decimal
    minute = (d("42000"), d("42100"), d("41900"), d("42050"), d("1.0"), 4)
    later = (d("42075"), d("42075"), d("42075"), d("42075"), d("1.5"), 1)
    whole = (d("42000"), d("42100"), d("41900"), d("42075"), d("2.5"), 5)
    assert candles(ch, k2db, "ohlcv_1m", "binance") == [
        ("2026-02-11 14:29:00.000", *minute),
        ("2026-02-11 14:33:00.000", *later),
    ]
    assert candles(ch, k2db, "ohlcv_5m", "binance") == [
        ("2026-02-11 14:25:00.000", *minute),
        ("2026-02-11 14:30:00.000", *later),
    ]
    assert candles(ch, k2db, "ohlcv_1h", "binance") == [("2026-02-11 14:00:00.000", *whole)]
    assert candles(ch, k2db, "ohlcv_1d", "binance") == [("2026-02-11 00:00:00.000", *whole)]

    kraken = (d("42001.1"), d("42001.1"), d("42001.1"), d("42001.1"), d("0.5"), 1)
    starts = {
        "ohlcv_1m": "2026-02-11 14:29:00.000",
        "ohlcv_5m": "2026-02-11 14:25:00.000",
        "ohlcv_1h": "2026-02-11 14:00:00.000",
        "ohlcv_1d": "2026-02-11 00:00:00.000",
    }
    for table, start in starts.items():
        assert candles(ch, k2db, table, "kraken") == [(start, *kraken)], table
    symbols = rows(ch, f"SELECT DISTINCT canonical_symbol FROM {k2db}.ohlcv_1d WHERE exchange = 'kraken'")
    assert symbols == [("BTC/USD",)]


@pytest.mark.parametrize(
    ("symbol", "canonical"),
    [
        ("BTCUSDT", "BTC/USDT"),
        ("SOLUSDC", "SOL/USDC"),
        ("BTCFDUSD", "BTC/FDUSD"),  # FDUSD, not FD + USD
        ("ETHBTC", "ETH/BTC"),
        ("LINKETH", "LINK/ETH"),
        ("BTCEUR", "BTC/EUR"),
        ("BTCUSD", "BTC/USD"),
        ("USDT", "USDT"),  # a bare quote asset is left alone
        ("BTCTRY", "BTCTRY"),  # unknown quote asset: unchanged
    ],
)
def test_binance_symbol_normalisation(ch: Client, pipeline_db: str, symbol: str, canonical: str) -> None:
    insert_binance(ch, pipeline_db, [("2026-02-11 10:00:00.000", symbol, 1, "1", "1", False)])
    assert rows(ch, f"SELECT canonical_symbol FROM {pipeline_db}.silver_trades") == [(canonical,)]


def test_kraken_pair_and_side_normalisation(ch: Client, pipeline_db: str) -> None:
    insert_kraken(
        ch,
        pipeline_db,
        [
            ("2026-02-11 10:00:00.000001", "XBT/USD", "b", 1, "1", "1"),
            ("2026-02-11 10:00:00.000002", "XDG/EUR", "s", 2, "1", "1"),
            ("2026-02-11 10:00:00.000003", "ETH/USD", "b", 3, "1", "1"),
            ("2026-02-11 10:00:00.000004", "XBTC/USD", "s", 4, "1", "1"),  # only the exact XBT/ prefix
        ],
    )
    got = rows(
        ch,
        f"SELECT trade_id, canonical_symbol, toString(side) FROM {pipeline_db}.silver_trades ORDER BY trade_id",
    )
    assert got == [
        ("1", "BTC/USD", "buy"),
        ("2", "DOGE/EUR", "sell"),
        ("3", "ETH/USD", "buy"),
        ("4", "XBTC/USD", "sell"),
    ]


def test_window_end_views_write_window_start_plus_interval(ch: Client) -> None:
    with scratch_database(ch, "k2wend") as db:
        ch.command(schema.data_table_ddl("silver_trades", db))
        for table in schema.OHLCV_TABLES:
            ch.command(schema.data_table_ddl(table, db, window_end=True))
            ch.command(schema.view_ddl(f"{table}_mv", db, window_end=True))
        ch.command(
            f"INSERT INTO {db}.silver_trades VALUES"
            " ('binance', 'BTC/USDT', '1', '2026-02-11 23:59:59.999', 10, 1, 'buy', '2026-02-12 00:00:00.100'),"
            " ('kraken', 'ETH/USD', '2', '2026-02-28 23:07:30.000', 20, 2, 'sell', '2026-02-28 23:07:30.100')"
        )
        for table, seconds in WINDOW_SECONDS.items():
            columns = [
                str(r[0])
                for r in rows(
                    ch,
                    f"SELECT name FROM system.columns WHERE database = '{db}'"
                    f" AND table = '{table}' ORDER BY position",
                )
            ]
            assert columns[2:4] == ["window_start", "window_end"]
            got = rows(
                ch,
                f"SELECT toString(window_start), toString(window_end), dateDiff('second', window_start, window_end),"
                f" toTypeName(window_end) FROM {db}.{table} FINAL ORDER BY exchange",
            )
            assert len(got) == 2, table
            for _start, _end, diff, type_name in got:
                assert diff == seconds, (table, got)
                assert type_name == "SimpleAggregateFunction(any, DateTime64(3, 'UTC'))"
        day_ends = rows(ch, f"SELECT toString(window_end) FROM {db}.ohlcv_1d FINAL ORDER BY exchange")
        assert day_ends == [("2026-02-12 00:00:00.000",), ("2026-03-01 00:00:00.000",)]


def test_window_end_added_by_alter_matches_a_table_created_with_it(ch: Client) -> None:
    """The migration path (ADD COLUMN on a filled table) and the fresh path end identical and correct."""
    with scratch_database(ch, "k2alt") as altered, scratch_database(ch, "k2new") as fresh:
        ch.command(schema.data_table_ddl("silver_trades", altered))
        for table in schema.OHLCV_TABLES:
            ch.command(schema.data_table_ddl(table, altered))
            ch.command(schema.view_ddl(f"{table}_mv", altered))
            ch.command(schema.data_table_ddl(table, fresh, window_end=True))
        ch.command(
            f"INSERT INTO {altered}.silver_trades VALUES"
            " ('binance', 'BTC/USDT', '1', '2026-02-11 14:29:03.000', 10, 1, 'buy', '2026-02-11 14:29:03.100')"
        )
        for table in schema.OHLCV_TABLES:
            ch.command(
                f"ALTER TABLE {altered}.{table} ADD COLUMN window_end"
                f" {schema.ohlcv_window_end_column(table)} AFTER window_start"
            )
        before = canonical_definitions(ch, altered)
        after = canonical_definitions(ch, fresh)
        for table, seconds in WINDOW_SECONDS.items():
            assert before[table] == after[table], table
            diff = scalar(ch, f"SELECT dateDiff('second', window_start, window_end) FROM {altered}.{table}")
            assert diff == seconds, table


def test_production_fixture_is_the_baseline_written_differently(ch: Client) -> None:
    """tests/fixtures/k2_production.sql is meant for adoption tests: same objects, other spelling."""
    text = FIXTURE.read_text()
    chunks = [c for c in re.split(r";[ \t]*\n", text) if c.strip()]
    use = [c for c in chunks if re.search(r"^\s*USE\s+default\s*$", c, re.MULTILINE)]
    statements = [c for c in chunks if c not in use]
    assert len(use) == 1 and len(statements) == 20
    assert text.count("redpanda:9092") == 2
    # written by other hands: the text is not the module's
    canonical_text = "\n".join(schema.baseline_statements("default", "redpanda:9092"))
    assert not any(s.strip() in canonical_text for s in statements)
    assert any("default." not in s and "`default`." not in s for s in statements)  # relies on USE

    with scratch_database(ch, "k2fix") as adopted, scratch_database(ch, "k2can") as canonical:
        original = ch.database
        ch.database = adopted  # stands in for the fixture's USE default, per call
        try:
            for statement in statements:
                ch.command(re.sub(r"\bdefault\.|`default`\.", f"{adopted}.", statement))
        finally:
            ch.database = original or "default"
            ch.command("SELECT 1")  # rebinds an embedded client's session to the original database
            ch.database = original
        for statement in schema.baseline_statements(canonical, "redpanda:9092"):
            ch.command(statement)
        assert canonical_definitions(ch, adopted) == canonical_definitions(ch, canonical)
        column_sql = (
            "SELECT table, name, type, default_kind, default_expression, position FROM system.columns"
            " WHERE database = {db:String} ORDER BY table, position"
        )
        assert rows(ch, column_sql, db=adopted) == rows(ch, column_sql, db=canonical)


# ---------------------------------------------------------------------------- demo data


def test_demo_plan_matches_the_handoff_at_scale_1() -> None:
    counts = demo_data.expected_counts(1.0)
    assert 1_270_000 <= counts["bronze_trades_binance"] <= 1_290_000
    assert 5_500 <= counts["bronze_trades_kraken"] <= 6_500
    assert 1_130_000 <= counts["silver_trades"] <= 1_150_000
    assert 24 <= counts["bronze_trades_dlq"] <= 60
    assert (counts["ohlcv_1m"], counts["ohlcv_5m"], counts["ohlcv_1h"], counts["ohlcv_1d"]) == (
        333,
        76,
        13,
        8,
    )
    big = demo_data.expected_counts(100.0)
    assert 127_000_000 <= big["bronze_trades_binance"] <= 129_000_000
    assert big["ohlcv_1m"] == 333
    days = {s.day for s in demo_data.SEGMENTS}
    assert max(days) - min(days) + 1 == 8
    with pytest.raises(ValueError, match="positive"):
        demo_data.expected_counts(0)


def _fingerprint(ch: Client, db: str, table: str) -> tuple[object, ...]:
    return tuple(rows(ch, f"SELECT count(), groupBitXor(cityHash64(*)) FROM {db}.{table}")[0])


def demo_counts_hold_together(ch: Client, db: str) -> dict[str, int]:
    """Every data table's count read from the engine, each checked against a second reading of the
    data that does not go through the views (nor through demo_data's own plan); returns the counts."""
    counts = {
        table: int(
            str(scalar(ch, f"SELECT count() FROM {db}.{table}{' FINAL' if table in COLLAPSING else ''}"))
        )
        for table in schema.DATA_TABLES
    }
    # Silver keeps one row per trade: bronze's distinct trades, redeliveries collapsed.
    unique_trades = scalar(
        ch,
        f"SELECT (SELECT uniqExact(symbol, trade_id) FROM {db}.bronze_trades_binance)"
        f" + (SELECT uniqExact(pair, trade_id) FROM {db}.bronze_trades_kraken)",
    )
    assert counts["silver_trades"] == unique_trades
    # A partition's offsets are gapless across bronze and the DLQ: what is not a trade was dead-lettered.
    offsets = rows(
        ch,
        f"SELECT exchange, kafka_partition, uniqExact(kafka_offset), max(kafka_offset) + 1 FROM ("
        f" SELECT 'binance' AS exchange, kafka_partition, kafka_offset FROM {db}.bronze_trades_binance"
        f" UNION ALL SELECT 'kraken', kafka_partition, kafka_offset FROM {db}.bronze_trades_kraken"
        f" UNION ALL SELECT toString(exchange), kafka_partition, kafka_offset FROM {db}.bronze_trades_dlq)"
        f" GROUP BY exchange, kafka_partition ORDER BY exchange, kafka_partition",
    )
    assert len(offsets) == 5 and all(distinct == span for _, _, distinct, span in offsets), offsets
    deliveries = counts["bronze_trades_binance"] + counts["bronze_trades_kraken"]
    for table, seconds in WINDOW_SECONDS.items():
        # One candle per symbol and window, windows cut from bronze's own timestamps by integer division.
        windows = scalar(
            ch,
            f"SELECT (SELECT uniqExact(symbol, intDiv(toUnixTimestamp64Milli(exchange_timestamp), {seconds * 1000}))"
            f" FROM {db}.bronze_trades_binance) + (SELECT uniqExact(pair,"
            f" intDiv(toUnixTimestamp64Micro(exchange_timestamp), {seconds * 1_000_000})) FROM {db}.bronze_trades_kraken)",
        )
        assert counts[table] == windows, table
        # The views count every delivery they were sent, a redelivered trade twice.
        assert scalar(ch, f"SELECT sum(trade_count) FROM {db}.{table} FINAL") == deliveries, table
    return counts


def test_demo_load_small_scale_has_the_expected_shape(ch: Client, pipeline_db: str) -> None:
    inserted = demo_data.load(ch, pipeline_db, 0.02)
    counts = demo_counts_hold_together(ch, pipeline_db)
    assert inserted == {
        t: counts[t] for t in ("bronze_trades_binance", "bronze_trades_kraken", "bronze_trades_dlq")
    }
    assert {t: counts[t] for t in HANDOFF_CANDLES} == HANDOFF_CANDLES

    db = pipeline_db
    # at-least-once: ~1/8 of the trades were delivered twice, with the same offset and a later ingested_at
    binance_rows = counts["bronze_trades_binance"]
    unique_binance = scalar(ch, f"SELECT uniqExact(symbol, trade_id) FROM {db}.bronze_trades_binance")
    assert isinstance(unique_binance, int)
    assert 1.10 < binance_rows / unique_binance < 1.14
    replays = rows(
        ch,
        f"SELECT count(), countIf(n = 2 AND offsets = 1 AND dt > 40) FROM (SELECT symbol, trade_id,"
        f" count() AS n, uniqExact(kafka_offset) AS offsets,"
        f" dateDiff('second', min(ingested_at), max(ingested_at)) AS dt"
        f" FROM {db}.bronze_trades_binance GROUP BY symbol, trade_id HAVING n > 1)",
    )
    assert replays[0][0] == binance_rows - unique_binance and replays[0][0] == replays[0][1]
    # silver keeps one row per trade (FINAL), the newest delivery
    unique_kraken = scalar(ch, f"SELECT uniqExact(pair, trade_id) FROM {db}.bronze_trades_kraken")
    assert isinstance(unique_kraken, int)
    assert scalar(ch, f"SELECT count() FROM {db}.silver_trades FINAL") == unique_binance + unique_kraken
    # symbols and their proportions (trades per minute 5400 : 2970 : 1620)
    per_symbol = {
        k: int(str(v))
        for k, v in mapping(
            ch, f"SELECT symbol, count() FROM {db}.bronze_trades_binance GROUP BY symbol"
        ).items()
    }
    assert set(per_symbol) == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    assert per_symbol["BTCUSDT"] > per_symbol["ETHUSDT"] > per_symbol["SOLUSDT"]
    assert set(mapping(ch, f"SELECT pair, count() FROM {db}.bronze_trades_kraken GROUP BY pair")) == {
        "XBT/USD",
        "ETH/USD",
    }
    silver_symbols = {r[0] for r in rows(ch, f"SELECT DISTINCT canonical_symbol FROM {db}.silver_trades")}
    assert silver_symbols == {"BTC/USDT", "ETH/USDT", "SOL/USDT", "BTC/USD", "ETH/USD"}
    # eight days, from 2026-02-04 to 2026-02-11; candles consistent with their trades
    span = rows(ch, f"SELECT toString(min(timestamp)), toString(max(timestamp)) FROM {db}.silver_trades")
    first, last = (str(v) for v in span[0])
    assert first.startswith("2026-02-04 09:47") and last.startswith("2026-02-11 15:")
    bad = scalar(
        ch,
        f"SELECT countIf(NOT (low_price <= open_price AND open_price <= high_price AND low_price <= close_price"
        f" AND close_price <= high_price AND low_price > 0 AND volume > 0 AND trade_count > 0))"
        f" FROM {db}.ohlcv_1m FINAL",
    )
    assert bad == 0
    # offsets of one partition never collide between bronze and the dead-letter table
    collisions = scalar(
        ch,
        f"SELECT count() FROM {db}.bronze_trades_dlq AS d INNER JOIN (SELECT DISTINCT kafka_partition,"
        f" kafka_offset FROM {db}.bronze_trades_binance) AS b USING (kafka_partition, kafka_offset)"
        f" WHERE d.exchange = 'binance'",
    )
    assert collisions == 0
    errors = rows(ch, f"SELECT count() FROM {db}.bronze_trades_dlq WHERE error = '' OR raw_message = ''")
    assert errors == [(0,)]


def test_demo_load_is_deterministic(ch: Client) -> None:
    with scratch_database(ch, "k2det_a") as first, scratch_database(ch, "k2det_b") as second:
        for db in (first, second):
            for table in ("bronze_trades_binance", "bronze_trades_kraken", "bronze_trades_dlq"):
                ch.command(schema.data_table_ddl(table, db))
            demo_data.load(ch, db, 0.01)
        for table in ("bronze_trades_binance", "bronze_trades_kraken", "bronze_trades_dlq"):
            assert _fingerprint(ch, first, table) == _fingerprint(ch, second, table), table


@pytest.mark.slow
def test_demo_load_at_the_handoff_volumes(ch: Client, pipeline_db: str) -> None:
    demo_data.load(ch, pipeline_db, 1.0)
    counts = demo_counts_hold_together(ch, pipeline_db)
    # The handoff's volumes: 1.28M Binance and 6K Kraken bronze rows, 1.14M silver rows.
    assert 1_275_000 <= counts["bronze_trades_binance"] <= 1_285_000
    assert 5_500 <= counts["bronze_trades_kraken"] <= 6_500
    assert 1_135_000 <= counts["silver_trades"] <= 1_145_000
    assert {t: counts[t] for t in HANDOFF_CANDLES} == HANDOFF_CANDLES
