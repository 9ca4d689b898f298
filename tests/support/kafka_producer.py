"""What the Kafka test harness produces: K2 trade messages, malformed ones, and a background producer.

Clients are ``confluent-kafka`` (librdkafka, the same client library the ClickHouse Kafka engine uses).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

from confluent_kafka import KafkaError, Message, Producer

from tests.support.tansu import KafkaHarnessError
from tests.support.wait import wait_until

LOG: Final = logging.getLogger("tests.support.kafka_broker")
"""librdkafka's logs go to Python logging under the harness's name."""

#: Malformed payloads. Each one is rejected by ClickHouse's JSONEachRow parser for a Kafka table whose
#: columns include ``trade_id UInt64`` and ``price Decimal(18,8)`` (both K2 queues), so with
#: ``kafka_handle_error_mode='stream'`` each yields exactly one row with a non-empty ``_error``.
#: Deliberately absent: an empty payload (the Kafka engine skips it: no row at all, so its offset never
#: shows up anywhere), several JSON objects in one message (one row per object, all with the same offset),
#: missing or unknown fields (accepted silently: defaults / skipped).
MALFORMED_MESSAGES: Final[tuple[bytes, ...]] = (
    b"not json {",
    b'{"symbol": "BTCUSDT", "trade_id": "abc", "price": "1.0"}',
    b'{"symbol": "BTCUSDT", "trade_id": -5, "price": "1.0"}',
    b'{"symbol": "BTCUSDT", "trade_id": 1.5, "price": "1.0"}',
    b'{"symbol": "BTCUSDT", "trade_id": 7, "price": "1e400"}',
    b'{"symbol": "BTCUSDT", "trade_id": 7',
    b"[1, 2, 3]",
    b"null",
)

_BINANCE_SYMBOLS: Final = ("BTCUSDT", "ETHUSDT", "SOLUSDC", "ETHBTC", "BTCFDUSD")
_KRAKEN_PAIRS: Final = ("XBT/USD", "ETH/USD", "XDG/USD", "SOL/EUR")
_EPOCH_MS: Final = 1_767_225_600_000  # 2026-01-01T00:00:00Z

Delivery = Callable[[KafkaError | None, Message], None]


@dataclass(frozen=True, slots=True)
class ProducedRecord:
    """One message the broker acknowledged: where it landed and what it was."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    malformed: bool


def binance_trade_message(seq: int) -> bytes:
    """A valid Binance trade message as the K2 binance queue expects it (JSONEachRow)."""
    ms = _EPOCH_MS + seq * 37
    payload = {
        "symbol": _BINANCE_SYMBOLS[seq % len(_BINANCE_SYMBOLS)],
        "trade_id": seq,
        "price": f"{40000 + seq % 1000}.{seq % 100_000_000:08d}",
        "quantity": f"0.{(seq * 7919) % 100_000_000:08d}",
        "trade_time_ms": ms,
        "event_time_ms": ms + 3,
        "is_buyer_maker": seq % 2 == 0,
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def kraken_trade_message(seq: int) -> bytes:
    """A valid Kraken trade message as the K2 kraken queue expects it (JSONEachRow, ISO timestamp)."""
    micros = (_EPOCH_MS + seq * 37) * 1000 + seq % 1000
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(micros // 1_000_000))
    payload = {
        "pair": _KRAKEN_PAIRS[seq % len(_KRAKEN_PAIRS)],
        "side": "b" if seq % 2 == 0 else "s",
        "order_type": "m" if seq % 3 else "l",
        "trade_id": seq,
        "price": f"{2000 + seq % 500}.{seq % 100_000:05d}",
        "volume": f"{seq % 10}.{(seq * 104729) % 100_000_000:08d}",
        "timestamp": f"{stamp}.{micros % 1_000_000:06d}Z",
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def k2_trade_message(topic: str, seq: int) -> bytes:
    """A valid K2 message for ``topic``: Kraken-shaped if the topic name mentions kraken, else Binance."""
    return kraken_trade_message(seq) if "kraken" in topic else binance_trade_message(seq)


def send(producer: Producer, topic: str, value: bytes, key: bytes | None, on_delivery: Delivery) -> None:
    """Hand one message to librdkafka, serving delivery reports while its queue is full."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
            break
        except BufferError:
            producer.poll(0.1)
    producer.poll(0)


class BackgroundProducer:
    """A thread that produces to some topics at a bounded rate until stopped, recording every offset.

    Messages go round-robin over ``topics`` with key ``str(seq)`` (so they spread over partitions).
    A ``malformed_fraction`` of them (chosen by a seeded RNG) are taken from :data:`MALFORMED_MESSAGES`
    instead of :func:`k2_trade_message`. The thread stops by itself after ``max_messages`` messages or
    ``max_seconds`` seconds, whichever comes first, and ``stop()`` ends it earlier.

    Every acknowledged message is recorded as a :class:`ProducedRecord`; delivery failures are
    collected and raised by :meth:`stop`.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: list[str],
        *,
        rate_per_second: float = 100.0,
        malformed_fraction: float = 0.0,
        max_messages: int = 10_000,
        max_seconds: float = 60.0,
        seed: int = 0,
        first_seq: int = 0,
    ) -> None:
        """Configure, without starting. ``first_seq`` numbers the first message (trade ids)."""
        if not topics:
            raise ValueError("at least one topic is needed")
        if not 0.0 <= malformed_fraction <= 1.0:
            raise ValueError("malformed_fraction must be within [0, 1]")
        if rate_per_second <= 0 or max_messages < 0 or max_seconds <= 0:
            raise ValueError("rate_per_second and max_seconds must be positive, max_messages >= 0")
        self._bootstrap = bootstrap
        self._topics = tuple(topics)
        self._rate = rate_per_second
        self._malformed_fraction = malformed_fraction
        self._max_messages = max_messages
        self._max_seconds = max_seconds
        self._rng = random.Random(seed)
        self._first_seq = first_seq
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._records: list[ProducedRecord] = []
        self._errors: list[str] = []
        self._sent = 0
        self._stop_reason: str | None = None
        self._thread = threading.Thread(target=self._run, name="k2-background-producer", daemon=True)

    def __enter__(self) -> Self:
        """Start producing."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop producing; delivery errors are raised only if the block itself succeeded."""
        self.stop(raise_on_error=exc is None)

    def start(self) -> Self:
        """Start the producing thread."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0, *, raise_on_error: bool = True) -> list[ProducedRecord]:
        """Stop, wait until every sent message is acknowledged, and return all records.

        Raises:
            KafkaHarnessError: (with ``raise_on_error``) a message was not acknowledged, or the thread
                did not finish within ``timeout`` s.
        """
        self._stop_event.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        if raise_on_error:
            if self._thread.is_alive():
                raise KafkaHarnessError(f"background producer did not stop within {timeout} s")
            if self._errors:
                raise KafkaHarnessError(
                    f"background producer: {len(self._errors)} failure(s): {self._errors[:5]}"
                )
        return self.records

    def wait_until(self, produced: int, timeout: float = 30.0) -> None:
        """Block until at least ``produced`` messages are acknowledged.

        Raises:
            KafkaHarnessError: not reached within ``timeout`` s or the thread ended first.
        """

        def describe() -> str:
            return (
                f"{produced} acknowledged messages: {len(self.records)} so far "
                f"(stop reason: {self._stop_reason}, errors: {self._errors[:3]})"
            )

        def reached() -> bool:
            if len(self.records) >= produced:
                return True
            if not self._thread.is_alive():
                raise KafkaHarnessError(f"background producer ended before {describe()}")
            return False

        wait_until(reached, timeout, describe, interval_s=0.02, error=KafkaHarnessError)

    @property
    def running(self) -> bool:
        """Whether the thread is still producing (or flushing)."""
        return self._thread.is_alive()

    @property
    def stop_reason(self) -> str | None:
        """``"stopped"``, ``"max_messages"``, ``"max_seconds"`` or ``"missing_topics"`` once it ended."""
        return self._stop_reason

    @property
    def records(self) -> list[ProducedRecord]:
        """A snapshot of every acknowledged message so far, in acknowledgement order."""
        with self._lock:
            return list(self._records)

    def offsets(self, *, malformed: bool | None = None) -> set[tuple[str, int, int]]:
        """``(topic, partition, offset)`` of acknowledged messages, optionally only (not) malformed ones."""
        return {
            (r.topic, r.partition, r.offset)
            for r in self.records
            if malformed is None or r.malformed == malformed
        }

    def _on_delivery(self, malformed: bool) -> Delivery:
        """A delivery report callback recording the message's place, or the failure."""

        def callback(err: KafkaError | None, msg: Message) -> None:
            topic, part, offset = msg.topic(), msg.partition(), msg.offset()
            with self._lock:
                if err is not None or topic is None or part is None or offset is None:
                    self._errors.append(f"{topic} key={msg.key()!r}: {err}")
                    return
                self._records.append(
                    ProducedRecord(topic, part, offset, msg.key() or b"", msg.value() or b"", malformed)
                )

        return callback

    def _next_stop(self, started: float) -> str | None:
        """Why to stop now, if it is time; else wait until the rate allows the next message."""
        if self._sent >= self._max_messages:
            return "max_messages"
        elapsed = time.monotonic() - started
        if elapsed >= self._max_seconds:
            return "max_seconds"
        delay = self._sent / self._rate - elapsed
        if delay > 0 and self._stop_event.wait(min(delay, self._max_seconds - elapsed)):
            return "stopped"
        return "stopped" if self._stop_event.is_set() else None

    def _run(self) -> None:
        """The thread: produce until a stop reason, then flush."""
        producer = Producer({"bootstrap.servers": self._bootstrap, "acks": "all", "logger": LOG})
        started = time.monotonic()
        malformed_seq = 0
        try:
            missing = set(self._topics) - set(producer.list_topics(timeout=10.0).topics)
            if missing:  # producing would make Tansu auto-create them
                with self._lock:
                    self._errors.append(f"topics do not exist: {sorted(missing)}")
                self._stop_reason = "missing_topics"
                return
            while (reason := self._next_stop(started)) is None:
                seq = self._first_seq + self._sent
                topic = self._topics[self._sent % len(self._topics)]
                malformed = self._rng.random() < self._malformed_fraction
                if malformed:
                    value = MALFORMED_MESSAGES[malformed_seq % len(MALFORMED_MESSAGES)]
                    malformed_seq += 1
                else:
                    value = k2_trade_message(topic, seq)
                send(producer, topic, value, str(seq).encode(), self._on_delivery(malformed))
                self._sent += 1
            self._stop_reason = reason
        finally:
            remaining = producer.flush(30.0)
            if remaining:
                with self._lock:
                    self._errors.append(f"{remaining} message(s) unacknowledged after 30 s")
