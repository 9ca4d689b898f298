-- K2 silver: the normalised trades (both exchanges) and the views that fill them from bronze.
-- The declared schema after k2_004 (docs/declared-schema.md); the statements may come in any order.

CREATE TABLE k2.silver_trades
(
    `exchange` LowCardinality(String),
    `canonical_symbol` LowCardinality(String),
    `trade_id` String,
    `timestamp` DateTime64(3, 'UTC'),
    `price` Decimal(18, 8),
    `quantity` Decimal(18, 8),
    `side` Enum8('buy' = 1, 'sell' = 2),
    `ingested_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (exchange, canonical_symbol, timestamp, trade_id)
SETTINGS index_granularity = 8192;

CREATE MATERIALIZED VIEW k2.silver_trades_binance_mv TO k2.silver_trades
(
    `exchange` String,
    `canonical_symbol` String,
    `trade_id` String,
    `timestamp` DateTime64(3, 'UTC'),
    `price` Decimal(18, 8),
    `quantity` Decimal(18, 8),
    `side` Enum8('buy' = 1, 'sell' = 2),
    `ingested_at` DateTime64(3, 'UTC')
)
AS SELECT
    'binance' AS exchange,
    multiIf((length(symbol) > 4) AND endsWith(symbol, 'USDT'), concat(substring(symbol, 1, length(symbol) - 4), '/USDT'), (length(symbol) > 4) AND endsWith(symbol, 'USDC'), concat(substring(symbol, 1, length(symbol) - 4), '/USDC'), (length(symbol) > 5) AND endsWith(symbol, 'FDUSD'), concat(substring(symbol, 1, length(symbol) - 5), '/FDUSD'), (length(symbol) > 3) AND endsWith(symbol, 'BTC'), concat(substring(symbol, 1, length(symbol) - 3), '/BTC'), (length(symbol) > 3) AND endsWith(symbol, 'ETH'), concat(substring(symbol, 1, length(symbol) - 3), '/ETH'), (length(symbol) > 3) AND endsWith(symbol, 'EUR'), concat(substring(symbol, 1, length(symbol) - 3), '/EUR'), (length(symbol) > 3) AND endsWith(symbol, 'USD'), concat(substring(symbol, 1, length(symbol) - 3), '/USD'), symbol) AS canonical_symbol,
    toString(trade_id) AS trade_id,
    exchange_timestamp AS timestamp,
    price,
    quantity,
    CAST(if(is_buyer_maker, 'sell', 'buy'), 'Enum8(\'buy\' = 1, \'sell\' = 2)') AS side,
    ingested_at
FROM k2.bronze_trades_binance;

CREATE MATERIALIZED VIEW k2.silver_trades_kraken_mv TO k2.silver_trades
(
    `exchange` String,
    `canonical_symbol` String,
    `trade_id` String,
    `timestamp` DateTime64(3, 'UTC'),
    `price` Decimal(18, 8),
    `quantity` Decimal(18, 8),
    `side` Enum8('buy' = 1, 'sell' = 2),
    `ingested_at` DateTime64(3, 'UTC')
)
AS SELECT
    'kraken' AS exchange,
    multiIf(startsWith(pair, 'XBT/'), concat('BTC/', substring(pair, 5)), startsWith(pair, 'XDG/'), concat('DOGE/', substring(pair, 5)), pair) AS canonical_symbol,
    toString(trade_id) AS trade_id,
    toDateTime64(exchange_timestamp, 3, 'UTC') AS timestamp,
    price,
    volume AS quantity,
    CAST(if(side = 'b', 'buy', 'sell'), 'Enum8(\'buy\' = 1, \'sell\' = 2)') AS side,
    ingested_at
FROM k2.bronze_trades_kraken;
