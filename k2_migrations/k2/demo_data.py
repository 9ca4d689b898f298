"""Realistic, deterministic synthetic K2 market data, generated server-side.

Why: the migration's guards (zero data loss, logical counts of Replacing/Aggregating tables) and its
timings only mean something on data shaped like production's, at production's volume and at 10x and
100x of it. Production data cannot be copied into tests, so this module makes data with the same shape
as the 2026-02-12 handoff describes: ~1.28M Binance and ~6K Kraken bronze rows, a few dozen dead
letters, at-least-once redeliveries (so the ReplacingMergeTree silver table holds ~1.14M logical rows),
and trades concentrated in a few hundred minutes over 8 days (333 1m, 76 5m, 13 1h and 8 1d candles).

Only the bronze tables are written. Silver and the four candle tables are filled by the schema's own
materialized views, exactly as the Kafka pipeline fills them, so the derived tables carry whatever
the real views do (including the candles' double counting of redelivered trades).

Every row is computed by ``INSERT ... SELECT ... FROM numbers()`` from ``cityHash64`` of fixed seeds
and the row number: no ``rand()``, no ``now()``, so two loads at the same scale insert the same rows.
Inserts go in batches of at most :data:`BATCH_ROWS` rows so memory stays flat at scale 100 (128M rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from k2_migrations.k2.baseline_schema import OHLCV_TABLES, validate_database

__all__ = ["BATCH_ROWS", "SEGMENTS", "PlannedSegment", "Segment", "expected_counts", "load", "plan"]

BATCH_ROWS = 2_000_000
"""Most rows one INSERT generates: bounds the server's memory (views run once per insert)."""

REPLAY_BLOCK = 1024
"""Redelivery model: of every 1024 consecutive messages of a segment the last
:data:`REPLAY_TAIL` are delivered twice, as when a consumer restarts before committing a batch."""

REPLAY_TAIL = 128

_REPLAY_DELAY_MS = 47_000
"""How much later a redelivered copy is ingested: its ``ingested_at`` is newer, so
ReplacingMergeTree(ingested_at) keeps the copy, and the two rows are otherwise identical."""

_DAY0 = datetime(2026, 2, 4, tzinfo=UTC)
"""First day of the 8-day span; the last day is 2026-02-11, the day before the handoff."""

_TRADE_ID_GAP = 3_000_017
"""Trade ids skipped between two bursts of one symbol: the exchange kept trading while the feed was off."""

_TOPICS = {"binance": "market.crypto.trades.binance", "kraken": "market.crypto.trades.kraken"}
_DEAD_LETTERS_AT_SCALE_1 = {"binance": 30, "kraken": 6}

# The parser errors the dead-letter rows carry, worded as ClickHouse's JSONEachRow reader words them.
_ERROR_TRUNCATED = "Cannot parse input: expected '\"' at end of stream.: (at row 1)"
_ERROR_NAN = "Cannot parse input: expected a decimal number, got 'NaN': (at row 1)"
_ERROR_UNKNOWN_FIELD = "Unknown field found while parsing JSONEachRow format: {field}: (at row 1)"


@dataclass(frozen=True)
class _Asset:
    """How a base asset's price moves: a sum of slow and fast waves around ``base`` (so Binance and
    Kraken quotes of one asset track each other), plus per-trade noise."""

    base: float
    phase: float


@dataclass(frozen=True)
class _Instrument:
    """One traded symbol: price tick, lot step and the Pareto-tailed trade-size distribution."""

    asset: _Asset
    basis: float  # multiplicative offset from the asset's reference price (USD vs USDT quotes)
    ticks_per_unit: int  # 100 -> prices in 0.01 steps
    steps_per_unit: int  # 100_000 -> quantities in 0.00001 steps
    min_steps: int  # smallest trade, in steps
    max_steps: int  # largest trade, in steps
    trade_id_base: int
    partition: int  # producers key by symbol: one partition per symbol


_BTC = _Asset(base=97_250.0, phase=0.3)
_ETH = _Asset(base=2_690.0, phase=1.7)
_SOL = _Asset(base=196.0, phase=2.9)

_INSTRUMENTS: dict[tuple[str, str], _Instrument] = {
    ("binance", "BTCUSDT"): _Instrument(_BTC, 1.0, 100, 100_000, 100, 500_000, 4_417_000_000, 0),
    ("binance", "ETHUSDT"): _Instrument(_ETH, 1.0, 100, 10_000, 100, 1_000_000, 2_131_000_000, 1),
    ("binance", "SOLUSDT"): _Instrument(_SOL, 1.0, 100, 1_000, 100, 2_000_000, 1_052_000_000, 2),
    ("kraken", "XBT/USD"): _Instrument(_BTC, 0.9996, 10, 100_000_000, 20_000, 300_000_000, 81_400_000, 0),
    ("kraken", "ETH/USD"): _Instrument(_ETH, 0.9995, 100, 100_000_000, 500_000, 5_000_000_000, 32_700_000, 1),
}


@dataclass(frozen=True)
class Segment:
    """A stretch of minutes during which one symbol's feed was on (the handoff's data came in bursts)."""

    exchange: str
    symbol: str
    day: int  # days after 2026-02-04
    start: str  # "HH:MM" UTC, minute-aligned
    minutes: int
    trades_per_minute: int  # unique trades per minute at scale 1

    @property
    def start_ms(self) -> int:
        """Epoch milliseconds of the segment's first minute."""
        hours, minutes = (int(part) for part in self.start.split(":"))
        return int(_DAY0.timestamp() * 1000) + ((self.day * 24 + hours) * 60 + minutes) * 60_000

    def unique_trades(self, scale: float) -> int:
        """Unique trades at ``scale``; never fewer than two a minute, which (with the spacing used in
        :func:`_common_with`) puts a trade in every minute, so candle counts do not depend on scale."""
        return max(2 * self.minutes, round(self.minutes * self.trades_per_minute * scale))


SEGMENTS: tuple[Segment, ...] = (
    Segment("binance", "BTCUSDT", 0, "09:47", 31, 5_400),
    Segment("binance", "ETHUSDT", 0, "09:53", 23, 2_970),
    Segment("binance", "BTCUSDT", 3, "16:03", 41, 5_400),
    Segment("binance", "BTCUSDT", 7, "14:03", 83, 5_400),
    Segment("binance", "ETHUSDT", 7, "14:12", 64, 2_970),
    Segment("binance", "SOLUSDT", 7, "14:24", 27, 1_620),
    Segment("kraken", "XBT/USD", 7, "14:29", 38, 95),
    Segment("kraken", "ETH/USD", 7, "14:33", 26, 67),
)
"""The bursts, in time order per symbol. Chosen so that the candle counts are exactly the handoff's:
333 one-minute, 76 five-minute, 13 hourly and 8 daily candles."""


@dataclass(frozen=True)
class PlannedSegment:
    """One segment with everything that depends on scale and on the segments before it."""

    segment: Segment
    seed: int
    trades: int
    dead_letters: int
    first_offset: int  # Kafka offset of the segment's first message (dead letters come first)
    first_trade_id: int


def _replays(trades: int) -> int:
    """How many of ``trades`` consecutive messages are delivered a second time."""
    full, rest = divmod(trades, REPLAY_BLOCK)
    return full * REPLAY_TAIL + max(0, rest - (REPLAY_BLOCK - REPLAY_TAIL))


def _check_scale(scale: float) -> float:
    """Reject scales that would make no sense (or NaN) before any row is written."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    return scale


def plan(scale: float = 1.0) -> list[PlannedSegment]:
    """Lay out every segment at ``scale``: trade counts, dead letters, offsets and trade ids.

    Dead letters are spread round-robin over an exchange's segments and sit at the start of a burst
    (a feed handler reconnecting), taking real offsets, so a topic partition's offsets are gapless across
    bronze and the DLQ. Trade ids run on per symbol, jumping between bursts as the exchange kept trading.
    """
    _check_scale(scale)
    dead_total = {ex: max(1, round(n * scale)) for ex, n in _DEAD_LETTERS_AT_SCALE_1.items()}
    per_exchange = {ex: [s for s in SEGMENTS if s.exchange == ex] for ex in _TOPICS}
    next_offset: dict[tuple[str, str], int] = {}
    next_trade_id: dict[tuple[str, str], int] = {}
    planned: list[PlannedSegment] = []
    for seed, segment in enumerate(SEGMENTS, start=1):
        key = (segment.exchange, segment.symbol)
        siblings = per_exchange[segment.exchange]
        rank = siblings.index(segment)
        dead = dead_total[segment.exchange] // len(siblings)
        dead += int(rank < dead_total[segment.exchange] % len(siblings))
        trades = segment.unique_trades(scale)
        offset = next_offset.get(key, 0)
        trade_id = next_trade_id.get(key, _INSTRUMENTS[key].trade_id_base)
        planned.append(PlannedSegment(segment, seed, trades, dead, offset, trade_id))
        next_offset[key] = offset + dead + trades
        next_trade_id[key] = trade_id + trades + _TRADE_ID_GAP
    return planned


def _windows(segment: Segment, width_minutes: int) -> set[tuple[str, str, int]]:
    """The candle windows of ``width_minutes`` that a segment's trades fall into."""
    first = segment.start_ms // 60_000
    return {
        (segment.exchange, segment.symbol, minute // width_minutes)
        for minute in range(first, first + segment.minutes)
    }


def expected_counts(scale: float = 1.0) -> dict[str, int]:
    """What :func:`load` at ``scale`` produces in every data table of an empty schema.

    Bronze tables: rows (``count()``; MergeTree keeps redeliveries). ``silver_trades``: logical rows
    (``count()`` with FINAL), one per unique trade. OHLCV tables: logical candles, one per exchange,
    symbol and window (the same at every scale). Guards compare against these in tests.
    """
    planned = plan(scale)
    counts = {
        "bronze_trades_binance": 0,
        "bronze_trades_kraken": 0,
        "bronze_trades_dlq": sum(p.dead_letters for p in planned),
        "silver_trades": sum(p.trades for p in planned),
    }
    for p in planned:
        counts[f"bronze_trades_{p.segment.exchange}"] += p.trades + _replays(p.trades)
    widths = {"ohlcv_1m": 1, "ohlcv_5m": 5, "ohlcv_1h": 60, "ohlcv_1d": 1_440}
    for table in OHLCV_TABLES:
        counts[table] = len(set().union(*(_windows(s, widths[table]) for s in SEGMENTS)))
    return counts


def _sql_string(value: str) -> str:
    """A ClickHouse string literal for a constant this module controls."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _common_with(p: PlannedSegment) -> str:
    """WITH-clause shared by both exchanges: trade time, price and quantity of row ``number``.

    Trade ``i`` of ``n`` lands at ``start + i*D/n`` plus a jitter below the spacing ``D/n``: times
    increase with the offset (as in one Kafka partition), stay inside the segment and, with at least
    two trades a minute, leave no minute empty.
    """
    s = p.segment
    inst = _INSTRUMENTS[(s.exchange, s.symbol)]
    duration_ms = s.minutes * 60_000
    spacing = max(1, duration_ms // p.trades)
    two_pi = 2 * math.pi
    phase = inst.asset.phase
    return f"""WITH
    {s.start_ms} + intDiv(number * {duration_ms}, {p.trades}) + cityHash64({p.seed}, number, 1) % {spacing}
        AS t_ms,
    t_ms / 1000. AS x,
    {inst.asset.base * inst.basis!r} * (1
        + 0.03 * sin({two_pi!r} * x / 777600 + {phase!r})
        + 0.011 * sin({two_pi!r} * x / 21600 + {2 * phase!r})
        + 0.0035 * sin({two_pi!r} * x / 2220 + {3 * phase!r})
        + 0.0008 * sin({two_pi!r} * x / 187 + {5 * phase!r})
        + 0.0003 * ((cityHash64({p.seed}, number, 2) % 1000000) / 1000000. - 0.5)) AS price_f,
    (cityHash64({p.seed}, number, 3) % 1000000 + 1) / 1000000. AS u_size,
    toDecimal64(toInt64(round(price_f * {inst.ticks_per_unit})), 8) / {inst.ticks_per_unit} AS price_d,
    toDecimal64(toInt64(least({float(inst.max_steps)!r}, greatest({inst.min_steps},
        floor({inst.min_steps} * pow(u_size, -1 / 1.2))))), 8) / {inst.steps_per_unit} AS quantity_d,
    {p.first_offset + p.dead_letters} + number AS offset_n"""


def _ingested_at(p: PlannedSegment, replay: bool) -> str:
    """Deterministic ingestion time: 40-300 ms after the trade, or later still for a redelivery."""
    delay = 40 + (_REPLAY_DELAY_MS if replay else 0)
    return f"fromUnixTimestamp64Milli(toInt64(t_ms + {delay} + cityHash64({p.seed}, number, 6) % 260), 'UTC')"


def _batch_source(lo: int, count: int, replay: bool) -> str:
    """FROM/WHERE for rows ``lo .. lo+count-1``; a redelivery batch keeps only the replayed tails."""
    where = f"\nWHERE number % {REPLAY_BLOCK} >= {REPLAY_BLOCK - REPLAY_TAIL}" if replay else ""
    return f"FROM numbers({lo}, {count}){where}"


def _binance_sql(database: str, p: PlannedSegment, lo: int, count: int, replay: bool) -> str:
    """One batch of Binance trades (or of their redeliveries) as an INSERT ... SELECT."""
    s = p.segment
    inst = _INSTRUMENTS[(s.exchange, s.symbol)]
    return f"""INSERT INTO {database}.bronze_trades_binance
    (exchange_timestamp, symbol, trade_id, price, quantity, is_buyer_maker, event_timestamp,
     kafka_partition, kafka_offset, ingested_at)
{_common_with(p)}
SELECT
    fromUnixTimestamp64Milli(toInt64(t_ms), 'UTC'),
    {_sql_string(s.symbol)},
    {p.first_trade_id} + number,
    price_d,
    quantity_d,
    cityHash64({p.seed}, number, 4) % 100 < 48,
    fromUnixTimestamp64Milli(toInt64(t_ms + 1 + cityHash64({p.seed}, number, 5) % 15), 'UTC'),
    {inst.partition},
    offset_n,
    {_ingested_at(p, replay)}
{_batch_source(lo, count, replay)}"""


def _kraken_sql(database: str, p: PlannedSegment, lo: int, count: int, replay: bool) -> str:
    """One batch of Kraken trades (microsecond timestamps, b/s sides, m/l order types)."""
    s = p.segment
    inst = _INSTRUMENTS[(s.exchange, s.symbol)]
    return f"""INSERT INTO {database}.bronze_trades_kraken
    (exchange_timestamp, pair, side, order_type, trade_id, price, volume,
     kafka_partition, kafka_offset, ingested_at)
{_common_with(p)}
SELECT
    fromUnixTimestamp64Micro(toInt64(t_ms * 1000 + cityHash64({p.seed}, number, 7) % 1000), 'UTC'),
    {_sql_string(s.symbol)},
    if(cityHash64({p.seed}, number, 4) % 100 < 51, 'b', 's'),
    if(cityHash64({p.seed}, number, 8) % 100 < 72, 'm', 'l'),
    {p.first_trade_id} + number,
    price_d,
    quantity_d,
    {inst.partition},
    offset_n,
    {_ingested_at(p, replay)}
{_batch_source(lo, count, replay)}"""


def _dead_letter_sql(database: str, p: PlannedSegment) -> str:
    """The segment's dead letters: messages JSONEachRow could not parse, kept with the parser's error.

    Three kinds, as seen on real feeds: a message cut short, a number the exchange sent as text the
    parser rejects, and a control message (subscription ack / heartbeat) published to the trade topic.
    """
    s = p.segment
    inst = _INSTRUMENTS[(s.exchange, s.symbol)]
    field = "symbol" if s.exchange == "binance" else "pair"
    head = f'concat(\'{{"{field}":"{s.symbol}","trade_id":\', toString({p.first_trade_id} + number)'
    control = '{"result":null,"id":1}' if s.exchange == "binance" else '{"channel":"heartbeat"}'
    control_field = "result" if s.exchange == "binance" else "channel"
    return f"""INSERT INTO {database}.bronze_trades_dlq
    (exchange, kafka_topic, kafka_partition, kafka_offset, raw_message, error, ingested_at)
SELECT
    {_sql_string(s.exchange)},
    {_sql_string(_TOPICS[s.exchange])},
    {inst.partition},
    {p.first_offset} + number,
    multiIf(number % 3 = 0, {head}, ',"price":"{inst.asset.base:.0f}.'),
            number % 3 = 1, {head}, ',"price":"NaN","quantity":"0.5"}}'),
            {_sql_string(control)}),
    multiIf(number % 3 = 0, {_sql_string(_ERROR_TRUNCATED)},
            number % 3 = 1, {_sql_string(_ERROR_NAN)},
            {_sql_string(_ERROR_UNKNOWN_FIELD.format(field=control_field))}),
    fromUnixTimestamp64Milli(toInt64({s.start_ms - 2_000} + number * 137), 'UTC')
FROM numbers({p.dead_letters})"""


def load(client: Client, database: str, scale: float = 1.0) -> dict[str, int]:
    """Insert synthetic trades and dead letters into ``database``'s three bronze tables.

    The schema (with its views) must already exist; silver and the candles are derived by the views.
    Returns the rows inserted per bronze table. At scale 1: ~1.28M Binance rows, ~5.8K Kraken rows and
    36 dead letters; :func:`expected_counts` gives every table's expected count, derived ones included.
    Original deliveries of a batch are inserted before its redeliveries, as a restarted consumer would.
    """
    db = validate_database(database)
    inserted = {"bronze_trades_binance": 0, "bronze_trades_kraken": 0, "bronze_trades_dlq": 0}
    for p in plan(scale):
        if p.dead_letters:
            client.command(_dead_letter_sql(db, p))
            inserted["bronze_trades_dlq"] += p.dead_letters
        render = _binance_sql if p.segment.exchange == "binance" else _kraken_sql
        for lo in range(0, p.trades, BATCH_ROWS):
            count = min(BATCH_ROWS, p.trades - lo)
            client.command(render(db, p, lo, count, replay=False))
            client.command(render(db, p, lo, count, replay=True))
            inserted[f"bronze_trades_{p.segment.exchange}"] += count + _batch_replays(lo, count)
    return inserted


def _batch_replays(lo: int, count: int) -> int:
    """Replayed rows among ``lo .. lo+count-1`` (the replay test is on the row number itself)."""
    return _replays(lo + count) - _replays(lo)
