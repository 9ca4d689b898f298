"""Proof by killing: SIGKILL at every step of the K2 revisions, up and down; Ctrl-C at a safe point.

Each scenario prepares an embedded database with the K2 baseline and data in ``default``, copies
it, runs the same command uninterrupted on the copy (the reference), and on the original runs a
chain of processes: the k-th is killed the moment step k of a revision starts, and the next one
resumes. The chain must end in exactly the reference's schema and row counts.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SERVER_URL
from tests.support.kill_harness import Forker, inspect, k2_migrate

pytestmark = pytest.mark.skipif(bool(SERVER_URL), reason="kills embedded-engine processes")

ENV = {"K2_KAFKA_BROKERS": "127.0.0.1:9", "K2_TARGET_DATABASE": "k2"}
SCALE = "0.01"


def prepared(tmp_path: Path, to: str, name: str = "db") -> Path:
    """The K2 baseline with data in ``default``, upgraded to ``to``; deterministic, so two are equal."""
    path = tmp_path / name
    assert k2_migrate(path, "upgrade", "k2_001", env=ENV).returncode == 0
    load = (
        "import clickhouse_connect, sys; from k2_migrations.k2 import demo_data;"
        f" demo_data.load(clickhouse_connect.get_client(dsn='chdb://{path}'), 'default', {SCALE})"
    )
    subprocess.run([sys.executable, "-c", load], check=True, capture_output=True)
    if to != "k2_001":
        assert k2_migrate(path, "upgrade", to, env=ENV).returncode == 0
    return path


def steps_of(path: Path, target: str) -> list[tuple[str, int]]:
    plan = k2_migrate(path, "plan", target, "--json", env=ENV)
    assert plan.returncode == 0, plan.stderr
    return [(r["revision"], s["index"]) for r in json.loads(plan.stdout)["revisions"] for s in r["steps"]]


def reference(tmp_path: Path, start: str, *command: str) -> dict[str, object]:
    """The state an uninterrupted run reaches from the same start (a data directory is not copyable:
    its Atomic databases link into it by absolute paths)."""
    twin = prepared(tmp_path, start, "reference")
    assert k2_migrate(twin, *command, env=ENV).returncode == 0
    return inspect(twin, "default", "k2")


@pytest.mark.parametrize(
    ("start", "command"), [("k2_001", ("upgrade", "head")), ("k2_004", ("downgrade", "base"))]
)
def test_killed_at_every_step_converges(tmp_path: Path, start: str, command: tuple[str, str]) -> None:
    path = prepared(tmp_path, start)
    expected = reference(tmp_path, start, *command)
    points = steps_of(path, command[1])
    assert len(points) > 60
    with Forker(tmp_path) as forker:
        for point in points:
            outcome = forker.run(path, *command, env=ENV, kill_at=point)
            assert outcome.killed and outcome.returncode == -signal.SIGKILL, (point, outcome.stderr[-2000:])
    final = k2_migrate(path, *command, env=ENV)
    assert final.returncode == 0, final.stderr[-3000:]
    assert inspect(path, "default", "k2") == expected
    again = k2_migrate(path, "current", "--json", env=ENV)
    assert json.loads(again.stdout)["in_progress"] is None


def test_ctrl_c_stops_at_a_safe_point_and_says_how_to_continue(tmp_path: Path) -> None:
    path = prepared(tmp_path, "k2_002")
    expected = reference(tmp_path, "k2_002", "upgrade", "head")
    stopped = k2_migrate(path, "upgrade", "head", env=ENV, kill_at=("k2_003", 20), sig=signal.SIGINT)
    assert stopped.returncode == 130
    assert (
        "stopped by Ctrl-C before step 21 of k2_003; run the same command again to resume" in stopped.stderr
    )
    assert "Traceback" not in stopped.stderr
    resumed = k2_migrate(path, "upgrade", "head", env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "k2_003 up (resumed)" in resumed.stdout
    assert inspect(path, "default", "k2") == expected


def test_killed_during_the_window_end_mutations_never_reissues_them(tmp_path: Path) -> None:
    path = prepared(tmp_path, "k2_003")
    for table in ("ohlcv_1m", "ohlcv_5m", "ohlcv_1h", "ohlcv_1d"):
        outcome = k2_migrate(path, "upgrade", "head", env=ENV, kill_on=f"mutation on k2.{table}")
        assert outcome.killed, outcome.stderr[-2000:]
    assert k2_migrate(path, "upgrade", "head", env=ENV).returncode == 0
    state = inspect(path, "k2")
    assert state["window_end_mutations"] == {
        f"k2.{t}": 1 for t in ("ohlcv_1m", "ohlcv_5m", "ohlcv_1h", "ohlcv_1d")
    }
