-- K2 bronze: the Kafka queues, the raw trades and their dead-letter table, and the views between them.
-- The declared schema after k2_004 (docs/declared-schema.md); the statements may come in any order.

CREATE TABLE k2.bronze_trades_binance
(
    `exchange_timestamp` DateTime64(3, 'UTC'),
    `symbol` LowCardinality(String),
    `trade_id` UInt64,
    `price` Decimal(18, 8),
    `quantity` Decimal(18, 8),
    `is_buyer_maker` Bool,
    `event_timestamp` DateTime64(3, 'UTC'),
    `kafka_partition` UInt32,
    `kafka_offset` UInt64,
    `ingested_at` DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(exchange_timestamp)
ORDER BY (symbol, exchange_timestamp, trade_id)
SETTINGS index_granularity = 8192;

CREATE MATERIALIZED VIEW k2.bronze_trades_binance_dlq_mv TO k2.bronze_trades_dlq
(
    `exchange` String,
    `kafka_topic` LowCardinality(String),
    `kafka_partition` UInt64,
    `kafka_offset` UInt64,
    `raw_message` String,
    `error` String
)
AS SELECT
    'binance' AS exchange,
    _topic AS kafka_topic,
    _partition AS kafka_partition,
    _offset AS kafka_offset,
    _raw_message AS raw_message,
    _error AS error
FROM k2.bronze_trades_binance_queue
WHERE length(_error) > 0;

CREATE MATERIALIZED VIEW k2.bronze_trades_binance_mv TO k2.bronze_trades_binance
(
    `exchange_timestamp` DateTime64(3, 'UTC'),
    `symbol` String,
    `trade_id` UInt64,
    `price` Decimal(18, 8),
    `quantity` Decimal(18, 8),
    `is_buyer_maker` Bool,
    `event_timestamp` DateTime64(3, 'UTC'),
    `kafka_partition` UInt64,
    `kafka_offset` UInt64
)
AS SELECT
    fromUnixTimestamp64Milli(trade_time_ms, 'UTC') AS exchange_timestamp,
    symbol,
    trade_id,
    price,
    quantity,
    is_buyer_maker,
    fromUnixTimestamp64Milli(event_time_ms, 'UTC') AS event_timestamp,
    _partition AS kafka_partition,
    _offset AS kafka_offset
FROM k2.bronze_trades_binance_queue
WHERE length(_error) = 0;

CREATE TABLE k2.bronze_trades_binance_queue
(
    `symbol` String,
    `trade_id` UInt64,
    `price` Decimal(18, 8),
    `quantity` Decimal(18, 8),
    `trade_time_ms` UInt64,
    `event_time_ms` UInt64,
    `is_buyer_maker` Bool
)
ENGINE = Kafka
SETTINGS kafka_broker_list = 'redpanda:9092', kafka_topic_list = 'market.crypto.trades.binance', kafka_group_name = 'k2_bronze_trades_binance', kafka_format = 'JSONEachRow', kafka_num_consumers = 1, kafka_handle_error_mode = 'stream';

CREATE TABLE k2.bronze_trades_dlq
(
    `exchange` LowCardinality(String),
    `kafka_topic` String,
    `kafka_partition` UInt32,
    `kafka_offset` UInt64,
    `raw_message` String,
    `error` String,
    `ingested_at` DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (exchange, ingested_at)
SETTINGS index_granularity = 8192;

CREATE TABLE k2.bronze_trades_kraken
(
    `exchange_timestamp` DateTime64(6, 'UTC'),
    `pair` LowCardinality(String),
    `side` LowCardinality(String),
    `order_type` LowCardinality(String),
    `trade_id` UInt64,
    `price` Decimal(18, 8),
    `volume` Decimal(18, 8),
    `kafka_partition` UInt32,
    `kafka_offset` UInt64,
    `ingested_at` DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(exchange_timestamp)
ORDER BY (pair, exchange_timestamp, trade_id)
SETTINGS index_granularity = 8192;

CREATE MATERIALIZED VIEW k2.bronze_trades_kraken_dlq_mv TO k2.bronze_trades_dlq
(
    `exchange` String,
    `kafka_topic` LowCardinality(String),
    `kafka_partition` UInt64,
    `kafka_offset` UInt64,
    `raw_message` String,
    `error` String
)
AS SELECT
    'kraken' AS exchange,
    _topic AS kafka_topic,
    _partition AS kafka_partition,
    _offset AS kafka_offset,
    _raw_message AS raw_message,
    _error AS error
FROM k2.bronze_trades_kraken_queue
WHERE length(_error) > 0;

CREATE MATERIALIZED VIEW k2.bronze_trades_kraken_mv TO k2.bronze_trades_kraken
(
    `exchange_timestamp` DateTime64(6, 'UTC'),
    `pair` String,
    `side` String,
    `order_type` String,
    `trade_id` UInt64,
    `price` Decimal(18, 8),
    `volume` Decimal(18, 8),
    `kafka_partition` UInt64,
    `kafka_offset` UInt64
)
AS SELECT
    parseDateTime64BestEffort(timestamp, 6, 'UTC') AS exchange_timestamp,
    pair,
    side,
    order_type,
    trade_id,
    price,
    volume,
    _partition AS kafka_partition,
    _offset AS kafka_offset
FROM k2.bronze_trades_kraken_queue
WHERE length(_error) = 0;

CREATE TABLE k2.bronze_trades_kraken_queue
(
    `pair` String,
    `side` String,
    `order_type` String,
    `trade_id` UInt64,
    `price` Decimal(18, 8),
    `volume` Decimal(18, 8),
    `timestamp` String
)
ENGINE = Kafka
SETTINGS kafka_broker_list = 'redpanda:9092', kafka_topic_list = 'market.crypto.trades.kraken', kafka_group_name = 'k2_bronze_trades_kraken', kafka_format = 'JSONEachRow', kafka_num_consumers = 1, kafka_handle_error_mode = 'stream';
