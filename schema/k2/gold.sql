-- K2 gold: OHLCV candles per minute, 5 minutes, hour and day (window_end since k2_004), and their views.
-- The declared schema after k2_004 (docs/declared-schema.md); the statements may come in any order.

CREATE TABLE k2.ohlcv_1d
(
    `exchange` LowCardinality(String),
    `canonical_symbol` LowCardinality(String),
    `window_start` DateTime64(3, 'UTC'),
    `window_end` SimpleAggregateFunction(any, DateTime64(3, 'UTC')) DEFAULT window_start + toIntervalDay(1),
    `open_price` SimpleAggregateFunction(any, Decimal(18, 8)),
    `high_price` SimpleAggregateFunction(max, Decimal(18, 8)),
    `low_price` SimpleAggregateFunction(min, Decimal(18, 8)),
    `close_price` SimpleAggregateFunction(anyLast, Decimal(18, 8)),
    `volume` SimpleAggregateFunction(sum, Decimal(38, 8)),
    `trade_count` SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (exchange, canonical_symbol, window_start)
SETTINGS index_granularity = 8192;

CREATE MATERIALIZED VIEW k2.ohlcv_1d_mv TO k2.ohlcv_1d
(
    `exchange` LowCardinality(String),
    `canonical_symbol` LowCardinality(String),
    `window_start` DateTime('UTC'),
    `open_price` Decimal(18, 8),
    `high_price` Decimal(18, 8),
    `low_price` Decimal(18, 8),
    `close_price` Decimal(18, 8),
    `volume` Decimal(38, 8),
    `trade_count` UInt64
)
AS SELECT
    exchange,
    canonical_symbol,
    toStartOfDay(timestamp) AS window_start,
    argMin(price, timestamp) AS open_price,
    max(price) AS high_price,
    min(price) AS low_price,
    argMax(price, timestamp) AS close_price,
    CAST(sum(quantity), 'Decimal(38, 8)') AS volume,
    count() AS trade_count
FROM k2.silver_trades
GROUP BY
    exchange,
    canonical_symbol,
    window_start;

CREATE TABLE k2.ohlcv_1h
(
    `exchange` LowCardinality(String),
    `canonical_symbol` LowCardinality(String),
    `window_start` DateTime64(3, 'UTC'),
    `window_end` SimpleAggregateFunction(any, DateTime64(3, 'UTC')) DEFAULT window_start + toIntervalHour(1),
    `open_price` SimpleAggregateFunction(any, Decimal(18, 8)),
    `high_price` SimpleAggregateFunction(max, Decimal(18, 8)),
    `low_price` SimpleAggregateFunction(min, Decimal(18, 8)),
    `close_price` SimpleAggregateFunction(anyLast, Decimal(18, 8)),
    `volume` SimpleAggregateFunction(sum, Decimal(38, 8)),
    `trade_count` SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (exchange, canonical_symbol, window_start)
SETTINGS index_granularity = 8192;

CREATE MATERIALIZED VIEW k2.ohlcv_1h_mv TO k2.ohlcv_1h
(
    `exchange` LowCardinality(String),
    `canonical_symbol` LowCardinality(String),
    `window_start` DateTime('UTC'),
    `open_price` Decimal(18, 8),
    `high_price` Decimal(18, 8),
    `low_price` Decimal(18, 8),
    `close_price` Decimal(18, 8),
    `volume` Decimal(38, 8),
    `trade_count` UInt64
)
AS SELECT
    exchange,
    canonical_symbol,
    toStartOfHour(timestamp) AS window_start,
    argMin(price, timestamp) AS open_price,
    max(price) AS high_price,
    min(price) AS low_price,
    argMax(price, timestamp) AS close_price,
    CAST(sum(quantity), 'Decimal(38, 8)') AS volume,
    count() AS trade_count
FROM k2.silver_trades
GROUP BY
    exchange,
    canonical_symbol,
    window_start;

CREATE TABLE k2.ohlcv_1m
(
    `exchange` LowCardinality(String),
    `canonical_symbol` LowCardinality(String),
    `window_start` DateTime64(3, 'UTC'),
    `window_end` SimpleAggregateFunction(any, DateTime64(3, 'UTC')) DEFAULT window_start + toIntervalMinute(1),
    `open_price` SimpleAggregateFunction(any, Decimal(18, 8)),
    `high_price` SimpleAggregateFunction(max, Decimal(18, 8)),
    `low_price` SimpleAggregateFunction(min, Decimal(18, 8)),
    `close_price` SimpleAggregateFunction(anyLast, Decimal(18, 8)),
    `volume` SimpleAggregateFunction(sum, Decimal(38, 8)),
    `trade_count` SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (exchange, canonical_symbol, window_start)
SETTINGS index_granularity = 8192;

CREATE MATERIALIZED VIEW k2.ohlcv_1m_mv TO k2.ohlcv_1m
(
    `exchange` LowCardinality(String),
    `canonical_symbol` LowCardinality(String),
    `window_start` DateTime('UTC'),
    `open_price` Decimal(18, 8),
    `high_price` Decimal(18, 8),
    `low_price` Decimal(18, 8),
    `close_price` Decimal(18, 8),
    `volume` Decimal(38, 8),
    `trade_count` UInt64
)
AS SELECT
    exchange,
    canonical_symbol,
    toStartOfMinute(timestamp) AS window_start,
    argMin(price, timestamp) AS open_price,
    max(price) AS high_price,
    min(price) AS low_price,
    argMax(price, timestamp) AS close_price,
    CAST(sum(quantity), 'Decimal(38, 8)') AS volume,
    count() AS trade_count
FROM k2.silver_trades
GROUP BY
    exchange,
    canonical_symbol,
    window_start;

CREATE TABLE k2.ohlcv_5m
(
    `exchange` LowCardinality(String),
    `canonical_symbol` LowCardinality(String),
    `window_start` DateTime64(3, 'UTC'),
    `window_end` SimpleAggregateFunction(any, DateTime64(3, 'UTC')) DEFAULT window_start + toIntervalMinute(5),
    `open_price` SimpleAggregateFunction(any, Decimal(18, 8)),
    `high_price` SimpleAggregateFunction(max, Decimal(18, 8)),
    `low_price` SimpleAggregateFunction(min, Decimal(18, 8)),
    `close_price` SimpleAggregateFunction(anyLast, Decimal(18, 8)),
    `volume` SimpleAggregateFunction(sum, Decimal(38, 8)),
    `trade_count` SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (exchange, canonical_symbol, window_start)
SETTINGS index_granularity = 8192;

CREATE MATERIALIZED VIEW k2.ohlcv_5m_mv TO k2.ohlcv_5m
(
    `exchange` LowCardinality(String),
    `canonical_symbol` LowCardinality(String),
    `window_start` DateTime('UTC'),
    `open_price` Decimal(18, 8),
    `high_price` Decimal(18, 8),
    `low_price` Decimal(18, 8),
    `close_price` Decimal(18, 8),
    `volume` Decimal(38, 8),
    `trade_count` UInt64
)
AS SELECT
    exchange,
    canonical_symbol,
    toStartOfFiveMinutes(timestamp) AS window_start,
    argMin(price, timestamp) AS open_price,
    max(price) AS high_price,
    min(price) AS low_price,
    argMax(price, timestamp) AS close_price,
    CAST(sum(quantity), 'Decimal(38, 8)') AS volume,
    count() AS trade_count
FROM k2.silver_trades
GROUP BY
    exchange,
    canonical_symbol,
    window_start;
