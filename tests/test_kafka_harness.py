"""End-to-end proofs for the Kafka test harness and for what a K2 migration does to Kafka ingestion.

The chDB scenario mirrors the production K2 binance feed (shared/k2-schema.md): a JSONEachRow Kafka
engine table with ``kafka_num_consumers=1`` and ``kafka_handle_error_mode='stream'``, a view that sends
rows with an empty ``_error`` to the bronze table and one that sends the others to the dead-letter table.
It then does to ingestion what the migration does -- drop the views and the Kafka table, re-create them
under the same group name in another database -- and checks, by (topic, partition, offset), that every
produced message arrived exactly once; also while messages flow, and across a close/reopen of chDB.

The chDB parts run in a child process (``python -m tests.test_kafka_harness ...``): chDB holds one data
path per process and the suite's shared engine owns this process's; a child also turns a hang into a
timeout and may close and reopen its engine freely.

Timing: on Tansu the consumer-group join of librdkafka takes about half of ``session.timeout.ms``
(librdkafka default 45 s, so ~23 s, plus the engine's 7.5 s flush interval: first rows after ~24 s).
The child opens chDB with a config file setting the engine-wide librdkafka ``session_timeout_ms`` to
``K2_KAFKA_SESSION_TIMEOUT_MS`` (default 6000; ``0`` keeps the engine default), which brings the first
rows to ~8 s. The Kafka table DDL itself is production's. Measurements are printed (``-s``) and attached
to the report as user properties.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.kafka_broker import (
    MALFORMED_MESSAGES,
    BackgroundProducer,
    KafkaBroker,
    KafkaClient,
    binance_trade_message,
    write_chdb_kafka_config,
)
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 3
SESSION_TIMEOUT_MS = int(os.environ.get("K2_KAFKA_SESSION_TIMEOUT_MS", "6000"))
ARRIVAL_DEADLINE_S = 90.0  # first rows take ~25 s with the engine's defaults: be generous
CHILD_TIMEOUT_S = 300.0

Offset = tuple[str, int, int]  # (topic, partition, offset)

needs_chdb = pytest.mark.skipif(
    importlib.util.find_spec("chdb") is None, reason="chDB (the embedded engine) is not installed"
)


# ---------------------------------------------------------------------------- harness on its own


@pytest.mark.kafka
def test_broker_topics_produce_offsets(kafka_broker: KafkaBroker) -> None:
    """Topic creation, keyed produce over partitions, end offsets, a group's committed offsets."""
    from confluent_kafka import Consumer

    broker = kafka_broker
    topic = f"harness.basics.{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, PARTITIONS)
    assert broker.partitions(topic) == [0, 1, 2]

    values = [f"message-{i}" for i in range(60)]
    placed = broker.produce(topic, values, keys=[f"key-{i % 11}" for i in range(60)])
    assert len(placed) == 60
    assert len(set(placed)) == 60, "every message has its own (partition, offset)"
    assert len({p for p, _ in placed}) > 1, "keys spread messages over partitions"
    expected_end = {p: 1 + max(o for q, o in placed if q == p) for p, _ in placed}
    assert broker.end_offsets(topic) == expected_end
    read = broker.read_all(topic)
    assert {(r.partition, r.offset): r.value for r in read} == {
        pl: v.encode() for pl, v in zip(placed, values, strict=True)
    }

    # Same key, same partition (the broker hashes keys): what the ordering of one symbol relies on.
    again = broker.produce(topic, ["x", "y"], keys=["key-3", "key-3"])
    assert again[0][0] == again[1][0] == placed[3][0]

    group = f"harness-basics-{uuid.uuid4().hex[:8]}"
    assert broker.committed_offsets(group, topic) == {}
    consumer = Consumer(
        broker.client_config(
            **{
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
            }
        )
    )
    try:
        consumer.subscribe([topic])
        consumed: list[tuple[int, int]] = []

        def consume_one() -> bool:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                part, offset = msg.partition(), msg.offset()
                assert part is not None and offset is not None
                consumed.append((part, offset))
                consumer.commit(message=msg, asynchronous=False)
            return len(consumed) == 20

        wait_until(consume_one, 60, lambda: f"20 messages consumed; {len(consumed)} so far", interval_s=0)
    finally:
        consumer.close()
    assert len(consumed) == 20
    expected_committed = {p: 1 + max(o for q, o in consumed if q == p) for p, _ in consumed}
    assert broker.committed_offsets(group, topic) == expected_committed


@pytest.mark.kafka
def test_background_producer_is_bounded_and_records_offsets(kafka_broker: KafkaBroker) -> None:
    """The background producer stops by itself, honours its rate, and records every offset once."""
    broker = kafka_broker
    topics = [f"harness.bg.{uuid.uuid4().hex[:8]}.{n}" for n in range(2)]
    for topic in topics:
        broker.create_topic(topic, PARTITIONS)
    started = time.monotonic()
    producer = BackgroundProducer(
        broker.bootstrap, topics, rate_per_second=400, malformed_fraction=0.25, max_messages=200, seed=7
    ).start()
    producer.wait_until(200, timeout=30)
    records = producer.stop()
    elapsed = time.monotonic() - started
    assert producer.stop_reason == "max_messages"
    assert len(records) == 200
    assert elapsed >= 199 / 400, "rate limit honoured"
    assert 20 < sum(r.malformed for r in records) < 80
    assert all(r.value in MALFORMED_MESSAGES for r in records if r.malformed)
    for topic in topics:
        mine = [r for r in records if r.topic == topic]
        assert len(mine) == 100
        assert len({(r.partition, r.offset) for r in mine}) == 100
        ends = broker.end_offsets(topic)
        assert sum(ends.values()) == 100
        assert {(r.partition, r.offset) for r in mine} == {
            (p, o) for p, end in ends.items() for o in range(end)
        }

    timed = BackgroundProducer(broker.bootstrap, topics[:1], rate_per_second=50, max_seconds=0.5).start()
    wait_until(lambda: not timed.running, 10, "the producer to stop by itself after max_seconds=0.5")
    assert timed.stop_reason == "max_seconds"
    assert 10 <= len(timed.stop()) <= 30


# ---------------------------------------------------------------------------- chDB, in a child process


@pytest.fixture(scope="session")
def chdb_kafka_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scratch space for the child processes' chDB data paths and findings."""
    return tmp_path_factory.mktemp("chdb-kafka")


def _run_child(
    scenario: str, args: list[str], findings_path: Path, record_property: Callable[[str, object], None]
) -> dict[str, Any]:
    """Run ``scenario`` in a child process; report its findings; fail with its stderr if it failed."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "tests.test_kafka_harness", scenario, *args, str(findings_path)]
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False
        )
        failure = None if done.returncode == 0 else f"exit {done.returncode}; stderr:\n{done.stderr[-4000:]}"
        output = done.stdout
    except subprocess.TimeoutExpired as exc:  # the child was killed: a hang
        failure = f"no end within {CHILD_TIMEOUT_S} s (killed)"
        output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    print(output, end="")
    findings: dict[str, Any] = json.loads(findings_path.read_text()) if findings_path.exists() else {}
    for key, value in findings.items():
        record_property(key, value)
    if failure is not None:
        pytest.fail(f"{scenario} scenario failed: {failure}\nfindings so far: {findings}")
    return findings


@pytest.mark.slow  # a minute of consumer-group joins; tests/test_k2_kafka.py proves the migration's own case
@pytest.mark.kafka
@needs_chdb
def test_kafka_table_recreated_elsewhere_loses_and_duplicates_nothing(
    kafka_broker: KafkaBroker, chdb_kafka_dir: Path, record_property: Callable[[str, object], None]
) -> None:
    """Consume; pause by dropping; produce while paused; re-create in another database: exactly once.

    Then the same while messages flow (views first, and the Kafka table first), and across a close and
    reopen of chDB with the Kafka table attached. Every step checks no gap and no duplicate.
    """
    data = chdb_kafka_dir / f"recreate-{uuid.uuid4().hex[:8]}"
    findings = _run_child(
        "recreate", [kafka_broker.bootstrap, str(data)], data.with_suffix(".json"), record_property
    )
    assert findings["duplicates_total"] == 0


# Slow, and once (1 of 3 full runs here) chDB itself aborted in this scenario while closing consumers
# of an unreachable broker (glibc: "pthread_mutex_lock: Assertion ... failed", exit -6): an engine
# crash outside k2-migrate that the suite cannot make deterministic. Run it with -m slow.
@pytest.mark.slow
@pytest.mark.kafka
@needs_chdb
def test_unreachable_broker_does_not_hang_drop_or_close(
    chdb_kafka_dir: Path, record_property: Callable[[str, object], None]
) -> None:
    """Kafka tables whose broker (``redpanda:9092``) cannot be resolved, with views attached.

    DROP of the views, of the Kafka tables (before and after their views), of the database, and closing
    chDB must each return promptly. Needs no broker; marked ``kafka`` as it is about the Kafka engine.
    """
    data = chdb_kafka_dir / f"unreachable-{uuid.uuid4().hex[:8]}"
    findings = _run_child("unreachable", [str(data)], data.with_suffix(".json"), record_property)
    errors: list[str] = findings["consumer_exceptions"]
    assert errors and all("redpanda:9092" in e for e in errors)
    timings = {k: v for k, v in findings.items() if k.endswith("_s")}
    assert max(timings.values()) < 15, timings


# ---------------------------------------------------------------------------- child-process side


class Findings:
    """Measurements of a scenario, printed and saved to JSON after every change (partial on failure)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.values: dict[str, Any] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value
        print(f"[kafka finding] {key} = {value!r}", flush=True)
        self.path.write_text(json.dumps(self.values, indent=1, default=str))

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


class Engine:
    """A chDB session on one data path, optionally with a config file, and small query helpers."""

    def __init__(self, path: Path, config_file: Path | None) -> None:
        self.path = path
        self.config_file = config_file
        self._session: Any = None

    def open(self) -> None:
        from chdb import session

        suffix = f"?config-file={self.config_file}" if self.config_file is not None else ""
        self._session = session.Session(f"{self.path}{suffix}")

    def close(self) -> float:
        """Close the session; return how long that took."""
        started = time.monotonic()
        if self._session is not None:
            self._session.close()
            self._session = None
        return time.monotonic() - started

    def execute(self, sql: str) -> float:
        """Run a statement; return how long it took."""
        started = time.monotonic()
        self._session.query(sql, "TabSeparated")
        return time.monotonic() - started

    def rows(self, sql: str) -> list[list[Any]]:
        out: bytes = self._session.query(sql, "JSONCompactEachRow").bytes()
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def scalar(self, sql: str) -> int:
        return int(self.rows(sql)[0][0])


def _librdkafka_config(directory: Path) -> Path | None:
    """The Kafka tests' chDB config file (see write_chdb_kafka_config), or none with the engine defaults."""
    if SESSION_TIMEOUT_MS <= 0:
        return None
    return write_chdb_kafka_config(directory / "chdb-kafka-config.xml", SESSION_TIMEOUT_MS)


QUEUE = "bronze_trades_binance_queue"
VIEWS = ("bronze_trades_binance_mv", "bronze_trades_binance_dlq_mv")


class BinanceFeed:
    """The production binance ingestion objects (Kafka table, two views, bronze + dlq) for one topic."""

    def __init__(self, engine: Engine, kafka: KafkaClient, topic: str, group: str, targets: str) -> None:
        self.engine = engine
        self.kafka = kafka
        self.topic = topic
        self.group = group
        self.targets = targets
        self.attached_in: str | None = None
        self.rows_at_attach = 0

    def create_targets(self) -> None:
        db = self.targets
        self.engine.execute(f"""
            CREATE TABLE {db}.bronze_trades_binance (
                exchange_timestamp DateTime64(3, 'UTC'), symbol LowCardinality(String), trade_id UInt64,
                price Decimal(18, 8), quantity Decimal(18, 8), is_buyer_maker Bool,
                event_timestamp DateTime64(3, 'UTC'), kafka_partition UInt32, kafka_offset UInt64,
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3))
            ENGINE = MergeTree PARTITION BY toYYYYMM(exchange_timestamp)
            ORDER BY (symbol, exchange_timestamp, trade_id)""")
        self.engine.execute(f"""
            CREATE TABLE {db}.bronze_trades_dlq (
                exchange LowCardinality(String), kafka_topic String, kafka_partition UInt32,
                kafka_offset UInt64, raw_message String, error String,
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3))
            ENGINE = MergeTree ORDER BY (exchange, ingested_at)""")

    def attach(self, db: str) -> float:
        """Create the Kafka table and both views (fully qualified) in ``db``; return the DDL time."""
        self.rows_at_attach = self.row_count()
        t = self.targets
        took = self.engine.execute(f"""
            CREATE TABLE {db}.{QUEUE} (
                symbol String, trade_id UInt64, price Decimal(18, 8), quantity Decimal(18, 8),
                trade_time_ms UInt64, event_time_ms UInt64, is_buyer_maker Bool)
            ENGINE = Kafka SETTINGS kafka_broker_list = '{self.kafka.bootstrap}',
                kafka_topic_list = '{self.topic}', kafka_group_name = '{self.group}',
                kafka_format = 'JSONEachRow', kafka_num_consumers = 1, kafka_handle_error_mode = 'stream'""")
        took += self.engine.execute(f"""
            CREATE MATERIALIZED VIEW {db}.{VIEWS[0]} TO {t}.bronze_trades_binance AS
            SELECT fromUnixTimestamp64Milli(toInt64(trade_time_ms), 'UTC') AS exchange_timestamp,
                   symbol, trade_id, price, quantity, is_buyer_maker,
                   fromUnixTimestamp64Milli(toInt64(event_time_ms), 'UTC') AS event_timestamp,
                   _partition AS kafka_partition, _offset AS kafka_offset
            FROM {db}.{QUEUE} WHERE length(_error) = 0""")
        took += self.engine.execute(f"""
            CREATE MATERIALIZED VIEW {db}.{VIEWS[1]} TO {t}.bronze_trades_dlq AS
            SELECT 'binance' AS exchange, _topic AS kafka_topic, _partition AS kafka_partition,
                   _offset AS kafka_offset, _raw_message AS raw_message, _error AS error
            FROM {db}.{QUEUE} WHERE length(_error) > 0""")
        self.attached_in = db
        return took

    def detach(self, *, views_first: bool = True) -> float:
        """Drop the views and the Kafka table (plain DROP: SYNC hangs on chDB); return the DDL time."""
        db = self.attached_in
        assert db is not None
        views = [f"DROP TABLE {db}.{view}" for view in VIEWS]
        queue = [f"DROP TABLE {db}.{QUEUE}"]
        took = sum(self.engine.execute(sql) for sql in (views + queue if views_first else queue + views))
        self.attached_in = None
        return took

    def arrived(self) -> Counter[Offset]:
        """How many rows each (topic, partition, offset) produced in bronze + dlq."""
        t = self.targets
        rows = self.engine.rows(f"""
            SELECT '{self.topic}', kafka_partition, kafka_offset FROM {t}.bronze_trades_binance
            UNION ALL SELECT kafka_topic, kafka_partition, kafka_offset FROM {t}.bronze_trades_dlq""")
        return Counter((str(r[0]), int(r[1]), int(r[2])) for r in rows)

    def dead_letters(self) -> set[Offset]:
        """(topic, partition, offset) of the rows in the dead-letter table."""
        rows = self.engine.rows(
            f"SELECT kafka_topic, kafka_partition, kafka_offset FROM {self.targets}.bronze_trades_dlq"
        )
        return {(str(r[0]), int(r[1]), int(r[2])) for r in rows}

    def row_count(self) -> int:
        t = self.targets
        return self.engine.scalar(
            f"SELECT (SELECT count() FROM {t}.bronze_trades_binance) + (SELECT count() FROM {t}.bronze_trades_dlq)"
        )

    def messages_read(self) -> int:
        """Messages the current Kafka table's consumer has polled (written to views or not)."""
        return self.engine.scalar(
            "SELECT sum(num_messages_read) FROM system.kafka_consumers "
            f"WHERE database = '{self.attached_in}' AND table = '{QUEUE}'"
        )

    def wait_for(self, expected: set[Offset], deadline_s: float = ARRIVAL_DEADLINE_S) -> float:
        """Poll until every expected offset arrived; return seconds from now to the first new row."""
        started = time.monotonic()
        baseline = self.row_count()
        first_row: list[float] = []
        missing = set(expected)

        def all_arrived() -> bool:
            nonlocal missing
            if not first_row and self.row_count() > baseline:
                first_row.append(time.monotonic() - started)
            missing = expected - set(self.arrived())
            return not missing

        wait_until(
            all_arrived,
            deadline_s,
            lambda: (
                f"{len(expected)} messages to arrive; {len(missing)} missing (first: {sorted(missing)[:5]});"
                f" consumers: {self.consumers()}"
            ),
            interval_s=0.25,
        )
        return first_row[0] if first_row else 0.0

    def wait_committed(self, deadline_s: float = 30.0) -> float:
        """Poll until the group's committed offsets equal the topic's end offsets; return the wait."""
        started = time.monotonic()
        ends = self.kafka.end_offsets(self.topic)
        wait_until(
            lambda: self.kafka.committed_offsets(self.group, self.topic) == ends,
            deadline_s,
            lambda: (
                f"group {self.group} to commit the topic's end {ends}; it committed"
                f" {self.kafka.committed_offsets(self.group, self.topic)}"
            ),
            interval_s=0.2,
        )
        return time.monotonic() - started

    def wait_for_flow(self, flowing: BackgroundProducer, deadline_s: float = ARRIVAL_DEADLINE_S) -> int:
        """Wait until the consumer is polling the running producer's messages; return polled-not-written."""
        read_before = self.messages_read()
        wait_until(
            lambda: self.messages_read() >= read_before + 100,
            deadline_s,
            lambda: f"the consumer to poll 100 of the producer's messages: {self.consumers()}",
        )
        return self.messages_read() - (self.row_count() - self.rows_at_attach)

    def consumers(self) -> list[list[Any]]:
        return self.engine.rows(
            "SELECT database, table, assignments.partition_id, assignments.current_offset, "
            "exceptions.text, num_messages_read, num_commits FROM system.kafka_consumers"
        )


def _good_and_bad(first_seq: int, good: int, bad: int) -> tuple[list[bytes], list[str]]:
    """``good`` valid binance messages with ``bad`` malformed ones spread among them, and their keys."""
    values = [binance_trade_message(first_seq + i) for i in range(good)]
    step = max(good // max(bad, 1), 1)
    for n in range(bad):
        values.insert(min(n * (step + 1), len(values)), MALFORMED_MESSAGES[n % len(MALFORMED_MESSAGES)])
    return values, [str(first_seq + i) for i in range(len(values))]


def _exactly_once(arrived: Counter[Offset], expected: set[Offset]) -> tuple[int, int, int]:
    """(missing, duplicate rows, unexpected) of what arrived against what was produced."""
    missing = len(expected - set(arrived))
    duplicated = sum(n - 1 for n in arrived.values() if n > 1)
    unexpected = len(set(arrived) - expected)
    return missing, duplicated, unexpected


def _check_payloads(
    engine: Engine, feed: BinanceFeed, produced: dict[tuple[int, int], bytes], findings: Findings
) -> None:
    """Good rows carry their message's trade_id; dead letters carry the raw bytes and a parse error."""
    t = feed.targets
    for part, offset, trade_id in engine.rows(
        f"SELECT kafka_partition, kafka_offset, trade_id FROM {t}.bronze_trades_binance"
    ):
        assert json.loads(produced[(int(part), int(offset))])["trade_id"] == int(trade_id)
    dead = engine.rows(
        "SELECT kafka_topic, kafka_partition, kafka_offset, hex(raw_message), error, exchange "
        f"FROM {t}.bronze_trades_dlq"
    )
    errors: dict[str, str] = {}
    for topic, part, offset, raw_hex, error, exchange in dead:
        raw = bytes.fromhex(raw_hex)
        assert topic == feed.topic and exchange == "binance"
        assert raw == produced[(int(part), int(offset))], "_raw_message is exactly the message"
        assert raw in MALFORMED_MESSAGES, raw
        assert error.strip(), "_error is set for every malformed message"
        errors[raw.decode(errors="replace")] = error
    assert set(errors) == {m.decode() for m in MALFORMED_MESSAGES}, "each malformed shape is dead-lettered"
    findings["dlq_error_by_raw_message"] = errors


def scenario_recreate(bootstrap: str, data: Path, findings: Findings) -> None:
    """The child side of ``test_kafka_table_recreated_elsewhere_loses_and_duplicates_nothing``."""
    kafka = KafkaClient(bootstrap)
    data.mkdir(parents=True)
    engine = Engine(data / "chdb", _librdkafka_config(data))
    findings["librdkafka_session_timeout_ms"] = SESSION_TIMEOUT_MS or "engine default (45000)"
    suffix = uuid.uuid4().hex[:8]
    topic = f"market.crypto.trades.binance.{suffix}"
    kafka.create_topic(topic, PARTITIONS)
    engine.open()
    feed = BinanceFeed(engine, kafka, topic, f"k2_bronze_trades_binance_{suffix}", targets="default")
    engine.execute("CREATE DATABASE k2")
    feed.create_targets()
    expected: set[Offset] = set()
    malformed: set[Offset] = set()
    produced: dict[tuple[int, int], bytes] = {}

    def produce(first_seq: int, good: int, bad: int) -> set[Offset]:
        values, keys = _good_and_bad(first_seq, good, bad)
        placed = kafka.produce(topic, values, keys=keys)
        produced.update(zip(placed, values, strict=True))
        malformed.update(
            (topic, p, o) for (p, o), v in zip(placed, values, strict=True) if v in MALFORMED_MESSAGES
        )
        return {(topic, p, o) for p, o in placed}

    def collect(producer: BackgroundProducer) -> None:
        expected.update(producer.offsets())
        malformed.update(producer.offsets(malformed=True))

    def flowing(first_seq: int) -> BackgroundProducer:
        return BackgroundProducer(
            bootstrap,
            [topic],
            rate_per_second=300,
            malformed_fraction=0.1,
            max_messages=6000,
            max_seconds=40,
            first_seq=first_seq,
        )

    def settle(label: str) -> None:
        # Not a wait for a state: a duplicate is an absence to watch for, so this is an observation window
        # in which a straggling duplicate batch would show up.
        time.sleep(1.0)
        counts = _exactly_once(feed.arrived(), expected)
        findings[f"{label}_missing_dup_unexpected"] = counts
        assert counts[0] == 0, f"{label}: {counts[0]} message(s) lost"
        assert counts[2] == 0, f"{label}: rows for offsets never produced"
        assert counts[1] == 0, f"{label}: {counts[1]} duplicate row(s)"
        assert feed.dead_letters() == malformed, f"{label}: the dlq holds exactly the malformed messages"
        findings[f"{label}_commit_wait_s"] = round(feed.wait_committed(), 2)

    try:
        # 1. Messages produced before the Kafka table exists: a new group starts at the earliest offset.
        expected |= produce(0, good=300, bad=40)
        findings["attach_ddl_s"] = round(feed.attach("default"), 3)
        findings["first_row_after_attach_s"] = round(feed.wait_for(expected), 2)
        settle("initial")
        _check_payloads(engine, feed, produced, findings)

        # 2. Pause (views first, then the Kafka table), produce while nothing consumes, resume in k2.
        findings["detach_ddl_s"] = round(feed.detach(), 3)
        committed_at_pause = kafka.committed_offsets(feed.group, topic)
        rows_at_pause = feed.row_count()
        expected |= produce(1000, good=200, bad=25)
        time.sleep(2.0)  # an observation window, not a wait: nothing may arrive during it
        assert feed.row_count() == rows_at_pause, "nothing may consume while the Kafka table is gone"
        assert kafka.committed_offsets(feed.group, topic) == committed_at_pause
        feed.attach("k2")
        findings["first_row_after_recreate_in_k2_s"] = round(feed.wait_for(expected), 2)
        settle("recreate_same_group_in_k2")

        # 3. Drop the views, then the Kafka table, while a producer runs; re-create back in default.
        with flowing(10_000) as producer:
            findings["polled_not_written_at_drop_views_first"] = feed.wait_for_flow(producer)
            findings["detach_while_flowing_ddl_s"] = round(feed.detach(), 3)
            producer.wait_until(len(producer.records) + 100)  # messages produced while nothing consumes
        collect(producer)
        findings["produced_while_flowing_views_first"] = len(producer.records)
        feed.attach("default")
        findings["first_row_after_recreate_in_default_s"] = round(feed.wait_for(expected), 2)
        settle("drop_views_first_while_flowing")

        # 4. Drop the Kafka table while its views are still attached and messages flow (the wrong order).
        with flowing(20_000) as producer:
            findings["polled_not_written_at_drop_queue_first"] = feed.wait_for_flow(producer)
            findings["detach_queue_first_while_flowing_ddl_s"] = round(feed.detach(views_first=False), 3)
            producer.wait_until(len(producer.records) + 100)  # messages produced while nothing consumes
        collect(producer)
        feed.attach("k2")
        feed.wait_for(expected)
        settle("drop_queue_first_while_flowing")

        # 5. Close chDB with the Kafka table attached while messages flow; reopen: it resumes by itself.
        with flowing(30_000) as producer:
            findings["polled_not_written_at_close"] = feed.wait_for_flow(producer)
            findings["close_with_kafka_tables_attached_s"] = round(engine.close(), 3)
            producer.wait_until(len(producer.records) + 100)  # messages produced while chDB is closed
        collect(producer)
        engine.open()
        feed.rows_at_attach = feed.row_count()
        findings["first_row_after_reopen_s"] = round(feed.wait_for(expected), 2)
        settle("close_reopen_while_flowing")

        findings["messages_total"] = len(expected)
        findings["malformed_total"] = len(malformed)
        findings["duplicates_total"] = _exactly_once(feed.arrived(), expected)[1]
        findings["detach_at_end_ddl_s"] = round(feed.detach(), 3)
    finally:
        findings["close_at_end_s"] = round(engine.close(), 3)
        kafka.close()


def scenario_unreachable(data: Path, findings: Findings) -> None:
    """The child side of ``test_unreachable_broker_does_not_hang_drop_or_close``."""
    data.mkdir(parents=True)
    engine = Engine(data / "chdb", None)
    engine.open()

    def kafka_table(name: str, group: str) -> str:
        return f"""CREATE TABLE k2.{name} (symbol String, trade_id UInt64) ENGINE = Kafka SETTINGS
            kafka_broker_list = 'redpanda:9092', kafka_topic_list = 'market.crypto.trades.binance',
            kafka_group_name = '{group}', kafka_format = 'JSONEachRow', kafka_num_consumers = 1,
            kafka_handle_error_mode = 'stream'"""

    engine.execute("CREATE DATABASE k2")
    for feed in ("a", "b", "c"):
        findings[f"create_kafka_table_{feed}_s"] = round(
            engine.execute(kafka_table(f"q_{feed}", f"g_{feed}")), 3
        )
        engine.execute(
            f"CREATE TABLE k2.t_{feed} (symbol String, err String) ENGINE = MergeTree ORDER BY tuple()"
        )
        findings[f"create_view_{feed}_s"] = round(
            engine.execute(
                f"CREATE MATERIALIZED VIEW k2.mv_{feed} TO k2.t_{feed} AS SELECT symbol, _error AS err FROM k2.q_{feed}"
            ),
            3,
        )

    def failing_consumers() -> list[list[Any]]:
        reported = engine.rows("SELECT exceptions.text FROM system.kafka_consumers ORDER BY table")
        return reported if len([texts for (texts,) in reported if texts]) == 3 else []

    exceptions = wait_until(
        failing_consumers,
        30,
        "each of the 3 consumers to report that the broker cannot be reached",
        interval_s=0.25,
    )
    findings["consumer_exceptions"] = [texts[0].splitlines()[0] for (texts,) in exceptions if texts]
    findings["drop_view_s"] = round(engine.execute("DROP TABLE k2.mv_a"), 3)
    findings["drop_kafka_table_after_its_view_s"] = round(engine.execute("DROP TABLE k2.q_a"), 3)
    findings["drop_kafka_table_with_view_attached_s"] = round(engine.execute("DROP TABLE k2.q_b"), 3)
    findings["close_with_unreachable_kafka_table_and_view_attached_s"] = round(engine.close(), 3)
    started = time.monotonic()
    engine.open()
    findings["reopen_s"] = round(time.monotonic() - started, 3)
    wait_until(  # the drop below must meet a consumer that is running again, failing to reach the broker
        lambda: any(texts for (texts,) in engine.rows("SELECT exceptions.text FROM system.kafka_consumers")),
        30,
        "the reopened Kafka table's consumer to report the unreachable broker",
        interval_s=0.25,
    )
    findings["drop_database_with_unreachable_kafka_table_s"] = round(engine.execute("DROP DATABASE k2"), 3)
    findings["close_after_drop_s"] = round(engine.close(), 3)


def main(argv: list[str]) -> None:
    """Child-process entry: ``recreate BOOTSTRAP DATA FINDINGS`` or ``unreachable DATA FINDINGS``."""
    scenario, *args = argv
    findings = Findings(Path(args[-1]))
    if scenario == "recreate":
        scenario_recreate(args[0], Path(args[1]), findings)
    elif scenario == "unreachable":
        scenario_unreachable(Path(args[0]), findings)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
