"""Kafka end to end: every message produced while ``upgrade head`` runs lands exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SERVER_URL
from tests.support.kafka_broker import TansuUnavailableError, find_tansu

pytestmark = [pytest.mark.kafka, pytest.mark.skipif(bool(SERVER_URL), reason="drives an embedded engine")]


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
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=2))
    assert report["produced"] > 1000 and report["malformed"] > 0
    assert report["malformed_in_dead_letters"] == report["malformed"]
    assert report["missing_count"] == 0, report["missing"]
    assert report["duplicates"] == 0
    assert report["unexpected"] == 0
    assert report["guards_ok"] is True and report["left_in_default"] == 0
    assert {(p["revision"], p["name"]) for p in report["pauses"]} == {("k2_003", "ingestion_pause")}
