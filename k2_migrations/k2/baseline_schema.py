"""Frozen, canonical DDL of the K2 schema's 20 objects in their production ("before") state.

Why this module exists: the migrations that move K2 from ``default`` to ``k2`` must re-create the two
Kafka tables and the ten materialized views with fully qualified names (a view's source and ``TO``
target do not follow a RENAME), and tests must build a production-like database to migrate. Both need
one exact definition of every object, independent of whatever the live server holds today. This
module is that definition; it is *frozen*: it describes the schema as of the baseline revision and
must not be edited to follow later migrations. It is what k2_001 creates where an object is missing
and compares an existing one with; later revisions never rebuild an object from it: they carry each
object over by its live definition, so production's own edits survive. The ``window_end`` switches
below describe the target state, for building an environment directly in it.

All statements are plain strings parametrised by database name and Kafka broker list, with every
object fully qualified, so a statement means the same thing whatever the session's current database.
Views are always ``CREATE MATERIALIZED VIEW db.v TO db.target AS SELECT ...`` and never ``POPULATE``:
POPULATE loses rows inserted while the view is being created, and backfills are done explicitly.
"""

from __future__ import annotations

import re

__all__ = [
    "DATA_TABLES",
    "KAFKA_TABLES",
    "OHLCV_START_FUNCTIONS",
    "OHLCV_TABLES",
    "PRODUCTION_BROKERS",
    "PRODUCTION_DATABASE",
    "QUOTE_ASSETS",
    "TARGET_DATABASE",
    "VIEWS",
    "VIEW_ROUTES",
    "all_objects",
    "baseline_statements",
    "data_table_ddl",
    "kafka_table_ddl",
    "ohlcv_window_end_column",
    "validate_database",
    "view_ddl",
]

PRODUCTION_DATABASE = "default"
"""Where production holds the schema before the migration."""

TARGET_DATABASE = "k2"
"""Where the schema lives after ``upgrade head``."""

PRODUCTION_BROKERS = "redpanda:9092"
"""Production's broker list; other environments pass their own to :func:`kafka_table_ddl`."""

DATA_TABLES: tuple[str, ...] = (
    "bronze_trades_binance",
    "bronze_trades_kraken",
    "bronze_trades_dlq",
    "silver_trades",
    "ohlcv_1m",
    "ohlcv_5m",
    "ohlcv_1h",
    "ohlcv_1d",
)
"""The 8 tables that hold data: they must be moved, never dropped. Tables do not depend on one another
(views do), so any order is safe; this one follows the data flow, bronze to gold."""

KAFKA_TABLES: tuple[str, ...] = ("bronze_trades_binance_queue", "bronze_trades_kraken_queue")
"""The 2 Kafka engine tables. They hold no data: their consumer offsets live in Kafka under the
group name, so re-creating them with the same settings resumes where they left off."""

VIEWS: tuple[str, ...] = (
    "ohlcv_1m_mv",
    "ohlcv_5m_mv",
    "ohlcv_1h_mv",
    "ohlcv_1d_mv",
    "silver_trades_binance_mv",
    "silver_trades_kraken_mv",
    "bronze_trades_binance_mv",
    "bronze_trades_binance_dlq_mv",
    "bronze_trades_kraken_mv",
    "bronze_trades_kraken_dlq_mv",
)
"""The 10 materialized views, in the order to CREATE them: a view only sees rows inserted after it
exists, so every downstream view (gold, then silver) must exist before the views that feed it, and the
Kafka ingest views, which start consumption, come last. Of the two views on one Kafka table the data
view comes first: consumption starts with the first view attached, and a message consumed before its
sibling is attached would reach only that first view. Drop in the reverse order."""

OHLCV_TABLES: dict[str, str] = {
    "ohlcv_1m": "1 MINUTE",
    "ohlcv_5m": "5 MINUTE",
    "ohlcv_1h": "1 HOUR",
    "ohlcv_1d": "1 DAY",
}
"""Each candle table and the length of its window, as a ClickHouse ``INTERVAL`` body: ``window_end`` is
``window_start + INTERVAL <this>``."""

OHLCV_START_FUNCTIONS: dict[str, str] = {
    "ohlcv_1m": "toStartOfMinute",
    "ohlcv_5m": "toStartOfFiveMinutes",
    "ohlcv_1h": "toStartOfHour",
    "ohlcv_1d": "toStartOfDay",
}
"""Each candle table and the function that rounds a trade's timestamp down to its ``window_start``.
(Kept beside :data:`OHLCV_TABLES` rather than inside it so that both stay ``dict[str, str]``.)"""

QUOTE_ASSETS: tuple[str, ...] = ("USDT", "USDC", "FDUSD", "BTC", "ETH", "EUR", "USD")
"""Binance quote assets, tried in this order when splitting ``BTCUSDT`` into ``BTC/USDT``. ``FDUSD``
must be tried before ``USD``, which is a suffix of it; ``USDT``/``USDC`` are not suffixes of anything."""

_KRAKEN_BASE_ALIASES: tuple[tuple[str, str], ...] = (("XBT", "BTC"), ("XDG", "DOGE"))
"""Kraken's legacy asset codes and the canonical ones silver uses."""

_KAFKA_SOURCES: dict[str, tuple[str, str]] = {
    "bronze_trades_binance_queue": ("market.crypto.trades.binance", "k2_bronze_trades_binance"),
    "bronze_trades_kraken_queue": ("market.crypto.trades.kraken", "k2_bronze_trades_kraken"),
}
"""Kafka table -> (topic, consumer group). The group must never change: offsets are committed under it."""

VIEW_ROUTES: dict[str, tuple[str, str]] = {
    "bronze_trades_binance_mv": ("bronze_trades_binance_queue", "bronze_trades_binance"),
    "bronze_trades_binance_dlq_mv": ("bronze_trades_binance_queue", "bronze_trades_dlq"),
    "bronze_trades_kraken_mv": ("bronze_trades_kraken_queue", "bronze_trades_kraken"),
    "bronze_trades_kraken_dlq_mv": ("bronze_trades_kraken_queue", "bronze_trades_dlq"),
    "silver_trades_binance_mv": ("bronze_trades_binance", "silver_trades"),
    "silver_trades_kraken_mv": ("bronze_trades_kraken", "silver_trades"),
    **{f"{table}_mv": ("silver_trades", table) for table in OHLCV_TABLES},
}
"""View -> (source table, target table), both unqualified: what a moved view must read and write, and
what tests compare ``system.tables`` against."""

_DT3 = "DateTime64(3, 'UTC')"
_DEC = "Decimal(18, 8)"
_LCS = "LowCardinality(String)"
_INGESTED_AT = ("ingested_at", f"{_DT3} DEFAULT now64(3)")

_OHLCV_COLUMNS: tuple[tuple[str, str], ...] = (
    ("exchange", _LCS),
    ("canonical_symbol", _LCS),
    ("window_start", _DT3),
    ("open_price", f"SimpleAggregateFunction(any, {_DEC})"),
    ("high_price", f"SimpleAggregateFunction(max, {_DEC})"),
    ("low_price", f"SimpleAggregateFunction(min, {_DEC})"),
    ("close_price", f"SimpleAggregateFunction(anyLast, {_DEC})"),
    # sum over Decimal(18, 8) returns Decimal(38, 8); SimpleAggregateFunction(sum, Decimal(18, 8))
    # is rejected by the server, so the volume is wider than the prices.
    ("volume", "SimpleAggregateFunction(sum, Decimal(38, 8))"),
    ("trade_count", "SimpleAggregateFunction(sum, UInt64)"),
)

# name -> (columns, ENGINE, PARTITION BY or None, ORDER BY)
_DATA_TABLE_SPECS: dict[str, tuple[tuple[tuple[str, str], ...], str, str | None, str]] = {
    "bronze_trades_binance": (
        (
            ("exchange_timestamp", _DT3),
            ("symbol", _LCS),
            ("trade_id", "UInt64"),
            ("price", _DEC),
            ("quantity", _DEC),
            ("is_buyer_maker", "Bool"),
            ("event_timestamp", _DT3),
            ("kafka_partition", "UInt32"),
            ("kafka_offset", "UInt64"),
            _INGESTED_AT,
        ),
        "MergeTree",
        "toYYYYMM(exchange_timestamp)",
        "(symbol, exchange_timestamp, trade_id)",
    ),
    "bronze_trades_kraken": (
        (
            ("exchange_timestamp", "DateTime64(6, 'UTC')"),
            ("pair", _LCS),
            ("side", _LCS),
            ("order_type", _LCS),
            ("trade_id", "UInt64"),
            ("price", _DEC),
            ("volume", _DEC),
            ("kafka_partition", "UInt32"),
            ("kafka_offset", "UInt64"),
            _INGESTED_AT,
        ),
        "MergeTree",
        "toYYYYMM(exchange_timestamp)",
        "(pair, exchange_timestamp, trade_id)",
    ),
    "bronze_trades_dlq": (
        (
            ("exchange", _LCS),
            ("kafka_topic", "String"),
            ("kafka_partition", "UInt32"),
            ("kafka_offset", "UInt64"),
            ("raw_message", "String"),
            ("error", "String"),
            _INGESTED_AT,
        ),
        "MergeTree",
        None,
        "(exchange, ingested_at)",
    ),
    "silver_trades": (
        (
            ("exchange", _LCS),
            ("canonical_symbol", _LCS),
            ("trade_id", "String"),
            ("timestamp", _DT3),
            ("price", _DEC),
            ("quantity", _DEC),
            ("side", "Enum8('buy' = 1, 'sell' = 2)"),
            ("ingested_at", _DT3),
        ),
        "ReplacingMergeTree(ingested_at)",
        "toYYYYMM(timestamp)",
        "(exchange, canonical_symbol, timestamp, trade_id)",
    ),
    **{
        table: (
            _OHLCV_COLUMNS,
            "AggregatingMergeTree",
            "toYYYYMM(window_start)",
            "(exchange, canonical_symbol, window_start)",
        )
        for table in OHLCV_TABLES
    },
}

_KAFKA_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    # Binance sends prices as JSON strings ("42000.10"); ClickHouse's JSON reader accepts a quoted or a
    # bare number for a Decimal column, so the message is typed at the edge and errors go to the DLQ.
    "bronze_trades_binance_queue": (
        ("symbol", "String"),
        ("trade_id", "UInt64"),
        ("price", _DEC),
        ("quantity", _DEC),
        ("trade_time_ms", "UInt64"),
        ("event_time_ms", "UInt64"),
        ("is_buyer_maker", "Bool"),
    ),
    # Kraken's timestamp is an ISO-8601 string with microseconds; the ingest view parses it.
    "bronze_trades_kraken_queue": (
        ("pair", "String"),
        ("side", "String"),
        ("order_type", "String"),
        ("trade_id", "UInt64"),
        ("price", _DEC),
        ("volume", _DEC),
        ("timestamp", "String"),
    ),
}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def validate_database(database: str) -> str:
    """Return ``database`` if it is a plain identifier, else raise.

    Names are interpolated into DDL unquoted so that the text reads like hand-written SQL and matches
    ``system.tables.create_table_query``; rejecting anything else rules out injection and quoting bugs.
    """
    if not _IDENTIFIER.fullmatch(database):
        raise ValueError(f"database name must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*): {database!r}")
    return database


def _string_literal(value: str) -> str:
    """Quote ``value`` as a ClickHouse string literal (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _columns_block(columns: tuple[tuple[str, str], ...]) -> str:
    """Render a column list, one per line, in the declared order (column order is part of the schema)."""
    return "(\n" + ",\n".join(f"    {name} {definition}" for name, definition in columns) + "\n)"


def _ohlcv_table(name: str) -> str:
    """Return ``name`` if it is one of the four candle tables, else raise (catches typos early)."""
    if name not in OHLCV_TABLES:
        raise ValueError(f"not an OHLCV table: {name!r} (expected one of {', '.join(OHLCV_TABLES)})")
    return name


def ohlcv_window_end_column(table: str) -> str:
    """The type and DEFAULT of the ``window_end`` column that the migration adds to ``table``.

    Used as ``ALTER TABLE db.t ADD COLUMN window_end <this> AFTER window_start``. The DEFAULT makes the
    change metadata-only yet correct for every existing candle at once (and ``MATERIALIZE COLUMN``
    can write it out later), and it covers rows written by any view that does not set the column.
    The type is ``SimpleAggregateFunction(any, ...)`` because in an AggregatingMergeTree a plain
    non-key column would be kept from an arbitrary row on merge anyway; ``any`` says so explicitly.
    """
    interval = OHLCV_TABLES[_ohlcv_table(table)]
    return f"SimpleAggregateFunction(any, {_DT3}) DEFAULT window_start + INTERVAL {interval}"


def data_table_ddl(name: str, database: str, *, window_end: bool = False) -> str:
    """``CREATE TABLE`` for one of :data:`DATA_TABLES` in ``database``.

    Used to build a production-like database for tests and to re-create the layout on a fresh
    environment; a migration never re-creates a data table that holds rows, it moves it.
    With ``window_end=True`` an OHLCV table gets the post-migration ``window_end`` column right after
    ``window_start``, defined exactly as :func:`ohlcv_window_end_column` adds it, so a table created
    in the target state and one altered into it compare equal.
    """
    if name not in _DATA_TABLE_SPECS:
        raise ValueError(f"not a K2 data table: {name!r}")
    columns, engine, partition_by, order_by = _DATA_TABLE_SPECS[name]
    if window_end and name in OHLCV_TABLES:
        at = [column for column, _ in columns].index("window_start") + 1
        columns = (*columns[:at], ("window_end", ohlcv_window_end_column(name)), *columns[at:])
    lines = [
        f"CREATE TABLE {validate_database(database)}.{name}",
        _columns_block(columns),
        f"ENGINE = {engine}",
    ]
    if partition_by is not None:
        lines.append(f"PARTITION BY {partition_by}")
    lines.append(f"ORDER BY {order_by}")
    return "\n".join(lines)


def kafka_table_ddl(name: str, database: str, brokers: str) -> str:
    """``CREATE TABLE ... ENGINE = Kafka`` for one of :data:`KAFKA_TABLES`.

    Topic, consumer group, format and the other settings are fixed: keeping the group name is what
    makes a drop and re-create resume from the committed offsets, losing and duplicating nothing. Only
    the broker list varies per environment. ``kafka_handle_error_mode='stream'`` turns a malformed
    message into a row with ``_error``/``_raw_message`` instead of stopping the consumer; the DLQ
    views keep those rows.
    """
    if name not in _KAFKA_SOURCES:
        raise ValueError(f"not a K2 Kafka table: {name!r}")
    if not brokers.strip():
        raise ValueError("the Kafka broker list must not be empty")
    topic, group = _KAFKA_SOURCES[name]
    settings = (
        ("kafka_broker_list", _string_literal(brokers)),
        ("kafka_topic_list", _string_literal(topic)),
        ("kafka_group_name", _string_literal(group)),
        ("kafka_format", "'JSONEachRow'"),
        ("kafka_num_consumers", "1"),
        ("kafka_handle_error_mode", "'stream'"),
    )
    return "\n".join(
        [
            f"CREATE TABLE {validate_database(database)}.{name}",
            _columns_block(_KAFKA_COLUMNS[name]),
            "ENGINE = Kafka",
            "SETTINGS\n" + ",\n".join(f"    {key} = {value}" for key, value in settings),
        ]
    )


def _binance_canonical_symbol() -> str:
    """SQL for ``BTCUSDT`` -> ``BTC/USDT``: split off the first matching quote asset, else keep as is.

    The length test keeps a bare quote asset (``USDT``) from becoming ``/USDT``.
    """
    branches = "".join(
        f"\n        length(symbol) > {len(quote)} AND endsWith(symbol, '{quote}'),"
        f" concat(substring(symbol, 1, length(symbol) - {len(quote)}), '/{quote}'),"
        for quote in QUOTE_ASSETS
    )
    return f"multiIf({branches}\n        symbol)"


def _kraken_canonical_symbol() -> str:
    """SQL for Kraken's legacy codes: ``XBT/USD`` -> ``BTC/USD``, ``XDG/EUR`` -> ``DOGE/EUR``."""
    branches = "".join(
        f"\n        startsWith(pair, '{old}/'), concat('{new}/', substring(pair, {len(old) + 2})),"
        for old, new in _KRAKEN_BASE_ALIASES
    )
    return f"multiIf({branches}\n        pair)"


_SIDE_ENUM = "Enum8('buy' = 1, 'sell' = 2)"


def _select_body(name: str, window_end: bool) -> tuple[str, str]:
    """(select list, trailing WHERE/GROUP BY clause) for view ``name``; the FROM is added by the caller."""
    if name == "bronze_trades_binance_mv":
        return (
            "fromUnixTimestamp64Milli(trade_time_ms, 'UTC') AS exchange_timestamp,\n"
            "    symbol,\n    trade_id,\n    price,\n    quantity,\n    is_buyer_maker,\n"
            "    fromUnixTimestamp64Milli(event_time_ms, 'UTC') AS event_timestamp,\n"
            "    _partition AS kafka_partition,\n    _offset AS kafka_offset",
            "WHERE length(_error) = 0",
        )
    if name == "bronze_trades_kraken_mv":
        return (
            "parseDateTime64BestEffort(timestamp, 6, 'UTC') AS exchange_timestamp,\n"
            "    pair,\n    side,\n    order_type,\n    trade_id,\n    price,\n    volume,\n"
            "    _partition AS kafka_partition,\n    _offset AS kafka_offset",
            "WHERE length(_error) = 0",
        )
    if name in ("bronze_trades_binance_dlq_mv", "bronze_trades_kraken_dlq_mv"):
        exchange = name.removeprefix("bronze_trades_").removesuffix("_dlq_mv")
        return (
            f"'{exchange}' AS exchange,\n    _topic AS kafka_topic,\n    _partition AS kafka_partition,\n"
            "    _offset AS kafka_offset,\n    _raw_message AS raw_message,\n    _error AS error",
            "WHERE length(_error) > 0",
        )
    if name == "silver_trades_binance_mv":
        return (
            "'binance' AS exchange,\n"
            f"    {_binance_canonical_symbol()} AS canonical_symbol,\n"
            "    toString(trade_id) AS trade_id,\n"
            "    exchange_timestamp AS timestamp,\n    price,\n    quantity,\n"
            f"    CAST(if(is_buyer_maker, 'sell', 'buy') AS {_SIDE_ENUM}) AS side,\n"
            "    ingested_at",
            "",
        )
    if name == "silver_trades_kraken_mv":
        return (
            "'kraken' AS exchange,\n"
            f"    {_kraken_canonical_symbol()} AS canonical_symbol,\n"
            "    toString(trade_id) AS trade_id,\n"
            "    toDateTime64(exchange_timestamp, 3, 'UTC') AS timestamp,\n    price,\n"
            "    volume AS quantity,\n"
            f"    CAST(if(side = 'b', 'buy', 'sell') AS {_SIDE_ENUM}) AS side,\n"
            "    ingested_at",
            "",
        )
    table = name.removesuffix("_mv")
    start = f"{OHLCV_START_FUNCTIONS[_ohlcv_table(table)]}(timestamp) AS window_start,\n"
    if window_end:
        start += f"    window_start + INTERVAL {OHLCV_TABLES[table]} AS window_end,\n"
    return (
        "exchange,\n    canonical_symbol,\n    " + start + "    argMin(price, timestamp) AS open_price,\n"
        "    max(price) AS high_price,\n"
        "    min(price) AS low_price,\n"
        "    argMax(price, timestamp) AS close_price,\n"
        "    CAST(sum(quantity) AS Decimal(38, 8)) AS volume,\n"
        "    count() AS trade_count",
        "GROUP BY exchange, canonical_symbol, window_start",
    )


def view_ddl(name: str, database: str, *, window_end: bool = False) -> str:
    """``CREATE MATERIALIZED VIEW db.v TO db.target AS SELECT ... FROM db.source`` for one of :data:`VIEWS`.

    Source and target are qualified with ``database`` because a view keeps the names it was created
    with: after a RENAME of its tables it would silently go on writing to the old ones.
    With ``window_end=True`` the four OHLCV views also write ``window_end = window_start + interval``
    explicitly, for an environment built directly in the target state (the migration itself keeps the
    live views, whose rows get the same value from the column's DEFAULT); the switch is ignored for the
    other six views.
    """
    if name not in VIEW_ROUTES:
        raise ValueError(f"not a K2 materialized view: {name!r}")
    db = validate_database(database)
    source, target = VIEW_ROUTES[name]
    select_list, tail = _select_body(name, window_end)
    sql = f"CREATE MATERIALIZED VIEW {db}.{name} TO {db}.{target}\nAS SELECT\n    {select_list}\nFROM {db}.{source}"
    return f"{sql}\n{tail}" if tail else sql


def all_objects() -> tuple[str, ...]:
    """All 20 object names: data tables, Kafka tables, views, in :func:`baseline_statements` order."""
    return DATA_TABLES + KAFKA_TABLES + VIEWS


def baseline_statements(database: str, brokers: str) -> list[str]:
    """Every CREATE of the baseline schema in ``database``, in an order that loses no row.

    Data tables first (nothing depends on them existing later), then the Kafka tables (which do not
    consume until a view is attached), then the views in :data:`VIEWS` order: gold and silver views
    before the ingest views, so that every row the Kafka consumers deliver flows all the way to gold.
    The database itself is not created: the caller decides its engine (and chDB's ``default`` exists).
    """
    return (
        [data_table_ddl(name, database) for name in DATA_TABLES]
        + [kafka_table_ddl(name, database, brokers) for name in KAFKA_TABLES]
        + [view_ddl(name, database) for name in VIEWS]
    )
