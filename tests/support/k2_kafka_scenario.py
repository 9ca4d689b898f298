"""The K2 migration under live Kafka traffic, in one process like a ClickHouse server (run as a child).

``python -m tests.support.k2_kafka_scenario WORK_DIR`` starts its own broker, builds the K2 baseline
in an embedded database whose Kafka tables read from it, keeps producing valid and malformed
messages to both topics, runs ``upgrade head`` in the same process while the consumers run (as
they would on a server), keeps producing a while longer, waits until everything produced has been
consumed, and prints a JSON report: every produced (topic, partition, offset) must be in a bronze
table or the dead-letter table exactly once.

The engine is opened with a config file lowering librdkafka's session timeout to 6 s, so a
consumer group join takes seconds instead of the ~24 s the test broker holds it with the default.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
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


def main(work: Path) -> dict[str, object]:
    config = write_chdb_kafka_config(work / "chdb-kafka.xml", SESSION_TIMEOUT_MS)
    path = work / "chdb"
    url = f"chdb://{path}?config-file={config}"
    with KafkaBroker() as broker:
        for topic in TOPICS:
            broker.create_topic(topic, partitions=2)
        os.environ.update({"K2_KAFKA_BROKERS": broker.bootstrap, "K2_TARGET_DATABASE": "k2"})
        project = Project(Settings(config_file=ROOT / "alembic.ini", url=url, command="kafka scenario"))
        migrate(project, "up", "k2_001", Progress(quiet=True))
        # Hold the engine open between runs, as a server would: its Kafka consumers keep running.
        client = clickhouse_connect.get_client(
            dsn=f"chdb://{path}", chdb_options={"config-file": str(config)}
        )
        producer = BackgroundProducer(
            broker.bootstrap,
            list(TOPICS),
            rate_per_second=150,
            malformed_fraction=0.05,
            max_messages=50_000,
            max_seconds=600,
        ).start()
        first_rows = _wait(lambda: _bronze_rows(client, "default") > 0, 90)
        result = migrate(project, "up", "head", Progress())
        time.sleep(5)  # keep producing into the migrated pipeline
        records = producer.stop()
        produced = {(r.topic, r.partition, r.offset) for r in records}
        _wait(lambda: produced <= set(_consumed(client)), 120)
        consumed = collections.Counter(_consumed(client))
        dead = set(_dead_letters(client))
        left_in_default = int(
            client.query(
                "SELECT count() FROM system.tables WHERE database = 'default' AND name LIKE 'bronze%'"
            ).result_rows[0][0]
        )
        client.close()
    document = run_document(result)
    return {
        "produced": len(produced),
        "malformed": sum(1 for r in records if r.malformed),
        "first_rows_after_s": first_rows,
        "missing": sorted(map(list, produced - set(consumed)))[:20],
        "missing_count": len(produced - set(consumed)),
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


def _bronze_rows(client: object, database: str) -> int:
    return int(client.command(f"SELECT count() FROM {database}.bronze_trades_binance"))  # type: ignore[attr-defined]


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


def _wait(condition: object, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if condition():  # type: ignore[operator]
                return round(time.monotonic() - started, 1)
        except Exception:  # the table may be mid-move; ask again
            pass
        time.sleep(0.5)
    return -1.0


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
