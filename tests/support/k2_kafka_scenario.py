"""The K2 migration under live Kafka traffic, in one process like a ClickHouse server (run as a child).

``python -m tests.support.k2_kafka_scenario WORK_DIR`` starts its own broker, builds the K2 baseline
in an embedded database whose Kafka tables read from it, keeps producing valid and malformed
messages to both topics, runs ``upgrade head`` in the same process while the consumers run (as
they would on a server), keeps producing a while longer, waits until everything produced has been
consumed, and prints a JSON report: every produced (topic, partition, offset) must be in a bronze
table or the dead-letter table exactly once.

A message not in any table is told apart by the consumer group's committed offset (read from the
broker): at or past it, the message is still in Kafka, waiting for a consumer that has stalled;
below it, ClickHouse committed it, so it should be in a table: lost. Before the migration the
scenario waits until every topic's consumer has delivered (``baseline_wait_s``: none did within
:data:`BASELINE_LIMIT_S` is a stall of the broker or its group join, reported as such), and after it
until nothing produced is missing or :data:`DRAIN_LIMIT_S` has passed.

The engine is opened with a config file lowering librdkafka's session timeout to 6 s, so a
consumer group join takes seconds instead of the ~24 s the test broker holds it with the default.
"""

from __future__ import annotations

import collections
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import clickhouse_connect

from k2_migrations.commands.migrate import migrate
from k2_migrations.commands.project import Project, Settings
from k2_migrations.output.progress import Progress
from k2_migrations.output.report import run_document
from tests.support.kafka_broker import BackgroundProducer, KafkaBroker, write_chdb_kafka_config

ROOT = Path(__file__).resolve().parents[2]
TOPICS = {
    "market.crypto.trades.binance": "bronze_trades_binance",
    "market.crypto.trades.kraken": "bronze_trades_kraken",
}
SESSION_TIMEOUT_MS = 6000
#: How long the baseline's consumers may take to deliver their first rows (a group join took 8-25 s).
BASELINE_LIMIT_S = 240.0
#: How long after the producer stops every produced message may take to arrive.
DRAIN_LIMIT_S = 240.0

Message = tuple[str, int, int]  # topic, partition, offset


def classify(
    produced: Iterable[Message], consumed: Iterable[Message], committed: dict[tuple[str, int], int]
) -> dict[str, list[Message]]:
    """Split what was produced but is in no table into stalled (at or past the group's committed
    offset of its partition: still in Kafka) and lost (below it: committed, yet in no table)."""
    missing = sorted(set(produced) - set(consumed))
    stalled = [m for m in missing if m[2] >= committed.get((m[0], m[1]), 0)]
    lost = [m for m in missing if m[2] < committed.get((m[0], m[1]), 0)]
    return {"stalled": stalled, "lost": lost}


def main(work: Path) -> dict[str, object]:
    config = write_chdb_kafka_config(work / "chdb-kafka.xml", SESSION_TIMEOUT_MS)
    path = work / "chdb"
    url = f"chdb://{path}?config-file={config}"
    with KafkaBroker() as broker:
        for topic in TOPICS:
            broker.create_topic(topic, partitions=2)
        os.environ.update({"K2_KAFKA_BROKERS": broker.bootstrap, "K2_TARGET_DATABASE": "k2"})
        project = Project(Settings(config_file=ROOT / "alembic.ini", url=url, command="kafka scenario"))
        # Hold the engine open from before the Kafka tables exist, as a server would: their consumers
        # must never be stopped while joining (on the test broker such a group stays stuck: a run
        # that closed the engine right after creating them left one topic unread for 240 s).
        client = clickhouse_connect.get_client(
            dsn=f"chdb://{path}", chdb_options={"config-file": str(config)}
        )
        migrate(project, "up", "k2_001", Progress(quiet=True))
        producer = BackgroundProducer(
            broker.bootstrap,
            list(TOPICS),
            rate_per_second=150,
            malformed_fraction=0.05,
            max_messages=50_000,
            max_seconds=600,
        ).start()
        first_rows = _wait(lambda: _every_topic_delivered(client), BASELINE_LIMIT_S)
        if first_rows < 0:
            records = producer.stop()
            return {
                "baseline_stalled": True,
                "baseline_wait_s": BASELINE_LIMIT_S,
                "produced": len(records),
                "committed": _as_json(_committed(broker, client)),
            }
        result = migrate(project, "up", "head", Progress())
        time.sleep(5)  # keep producing into the migrated pipeline
        records = producer.stop()
        produced = {(r.topic, r.partition, r.offset) for r in records}
        drained = _wait(lambda: produced <= set(_consumed(client)), DRAIN_LIMIT_S)
        consumed = collections.Counter(_consumed(client))
        dead = set(_dead_letters(client))
        committed = _committed(broker, client)
        missing = classify(produced, consumed, committed)
        left_in_default = int(
            client.query(
                "SELECT count() FROM system.tables WHERE database = 'default' AND name LIKE 'bronze%'"
            ).result_rows[0][0]
        )
        client.close()
    document = run_document(result)
    return {
        "baseline_stalled": False,
        "produced": len(produced),
        "malformed": sum(1 for r in records if r.malformed),
        "baseline_wait_s": first_rows,
        "drained_after_s": drained,
        "lost": missing["lost"][:20],
        "lost_count": len(missing["lost"]),
        "stalled": missing["stalled"][:20],
        "stalled_count": len(missing["stalled"]),
        "committed": _as_json(committed),
        "duplicates": sum(n - 1 for n in consumed.values() if n > 1),
        "unexpected": len(set(consumed) - produced),
        "malformed_in_dead_letters": len(
            {(r.topic, r.partition, r.offset) for r in records if r.malformed} & dead
        ),
        "pauses": document["intervals"],
        "slowest_steps_ms": sorted(
            (
                (s["elapsed_ms"], f"{r['revision']} {s['operation'][:60]}")
                for r in document["revisions"]
                for s in r["steps"]
            ),
            reverse=True,
        )[:6],
        "guards_ok": all(g["ok"] for g in document["guards"]),
        "left_in_default": left_in_default,
    }


def _every_topic_delivered(client: object) -> bool:
    """Every topic's consumer in the baseline (``default``) has delivered rows."""
    command = client.command  # type: ignore[attr-defined]
    return all(int(command(f"SELECT count() FROM default.{table}")) > 0 for table in TOPICS.values())


def _committed(broker: KafkaBroker, client: object) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the next offset its group will read, for each group a Kafka table names."""
    rows = client.query(  # type: ignore[attr-defined]
        "SELECT create_table_query FROM system.tables WHERE engine = 'Kafka'"
    ).result_rows
    groups = {
        (topic.group(1), group.group(1))
        for (ddl,) in rows
        if (topic := re.search(r"kafka_topic_list = '([^']+)'", ddl))
        and (group := re.search(r"kafka_group_name = '([^']+)'", ddl))
    }
    return {
        (topic, partition): offset
        for topic, group in groups
        for partition, offset in broker.committed_offsets(group, topic).items()
    }


def _consumed(client: object) -> list[tuple[str, int, int]]:
    query = client.query  # type: ignore[attr-defined]
    out: list[tuple[str, int, int]] = []
    for topic, table in TOPICS.items():
        out += [
            (topic, int(p), int(o))
            for p, o in query(f"SELECT kafka_partition, kafka_offset FROM k2.{table}").result_rows
        ]
    return out + _dead_letters(client)


def _dead_letters(client: object) -> list[tuple[str, int, int]]:
    rows = client.query(  # type: ignore[attr-defined]
        "SELECT kafka_topic, kafka_partition, kafka_offset FROM k2.bronze_trades_dlq"
    ).result_rows
    return [(str(t), int(p), int(o)) for t, p, o in rows]


def _as_json(committed: dict[tuple[str, int], int]) -> dict[str, int]:
    return {f"{topic}/{partition}": offset for (topic, partition), offset in sorted(committed.items())}


def _wait(condition: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until ``condition`` held, or -1.0 if it did not within ``timeout_s``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if condition():
                return round(time.monotonic() - started, 1)
        except Exception:  # the table may be mid-move; ask again
            pass
        time.sleep(0.5)
    return -1.0


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
