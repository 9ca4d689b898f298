"""Kafka end to end: every message produced while ``upgrade head`` runs lands exactly once.

A message in no table is a loss only if the consumer group committed past it; one still at or past
the committed offset is waiting in Kafka for a stalled consumer, and the test says so instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SERVER_URL
from tests.support.k2_kafka_scenario import BASELINE_LIMIT_S, DRAIN_LIMIT_S, classify
from tests.support.kafka_broker import TansuUnavailableError, find_tansu

kafka = pytest.mark.kafka
embedded_only = pytest.mark.skipif(bool(SERVER_URL), reason="drives an embedded engine")


def test_a_message_in_no_table_is_stalled_at_or_past_the_committed_offset_and_lost_below_it() -> None:
    produced = [("t", 0, offset) for offset in range(6)] + [("t", 1, 0), ("u", 0, 0)]
    consumed = [("t", 0, 0), ("t", 0, 2), ("t", 1, 0)]
    committed = {("t", 0): 3}  # t/0 read up to offset 2; u/0 never committed
    assert classify(produced, consumed, committed) == {
        "stalled": [("t", 0, 3), ("t", 0, 4), ("t", 0, 5), ("u", 0, 0)],
        "lost": [("t", 0, 1)],
    }


@kafka
@embedded_only
def test_messages_produced_during_the_migration_arrive_exactly_once(tmp_path: Path) -> None:
    try:
        find_tansu()
    except TansuUnavailableError as exc:
        pytest.skip(str(exc))
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.k2_kafka_scenario", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300 + BASELINE_LIMIT_S + DRAIN_LIMIT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=2))
    assert not report["baseline_stalled"], (
        f"stall, not a loss: the baseline's consumers delivered nothing from some topic within "
        f"{BASELINE_LIMIT_S:.0f} s of the engine opening (broker or consumer-group join), before any "
        f"migration ran; committed offsets {report['committed']}"
    )
    assert report["lost_count"] == 0, (
        f"LOST: {report['lost_count']} message(s) below their group's committed offset are in no table: "
        f"{report['lost']}"
    )
    assert report["duplicates"] == 0
    assert report["unexpected"] == 0
    assert report["stalled_count"] == 0, (
        f"stall, not a loss: {report['stalled_count']} message(s) at or past their group's committed "
        f"offset {report['committed']} still in Kafka {DRAIN_LIMIT_S:.0f} s after the producer stopped: "
        f"{report['stalled']}"
    )
    assert report["produced"] > 1000 and report["malformed"] > 0
    assert report["malformed_in_dead_letters"] == report["malformed"]
    assert report["guards_ok"] is True and report["left_in_default"] == 0
    assert {(p["revision"], p["name"]) for p in report["pauses"]} == {("k2_003", "ingestion_pause")}
