"""Proof by killing: SIGKILL at every step of the K2 revisions, up and down; Ctrl-C at a safe point.

Each chain starts from an embedded database with the K2 baseline and data in ``default`` and runs
the same command again and again: the k-th run is killed the moment step k of a revision starts,
and the next resumes it. The chain must end in exactly the state an uninterrupted run reaches —
schema (every definition as stored by the server) and row counts.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import SERVER_URL
from tests.support.kill_harness import Forker, inspect, k2_migrate

pytestmark = pytest.mark.skipif(bool(SERVER_URL), reason="kills embedded-engine processes")

ENV = {"K2_KAFKA_BROKERS": "127.0.0.1:9", "K2_TARGET_DATABASE": "k2"}
SCALE = "0.01"


def prepared(forker: Forker, directory: Path, to: str) -> Path:
    """The K2 baseline with data in ``default``, upgraded to ``to``; deterministic, so two are equal."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "db"
    assert forker.run(path, "upgrade", "k2_001", env=ENV).returncode == 0
    load = (
        "import clickhouse_connect; from k2_migrations.k2 import demo_data;"
        f" demo_data.load(clickhouse_connect.get_client(dsn='chdb://{path}'), 'default', {SCALE})"
    )
    subprocess.run([sys.executable, "-c", load], check=True, capture_output=True)
    if to != "k2_001":
        assert forker.run(path, "upgrade", to, env=ENV).returncode == 0
    return path


def steps_of(forker: Forker, path: Path, target: str) -> list[tuple[str, int]]:
    plan = forker.run(path, "plan", target, "--json", env=ENV)
    assert plan.returncode == 0, plan.stderr
    return [(r["revision"], s["index"]) for r in json.loads(plan.stdout)["revisions"] for s in r["steps"]]


def kill_at_every_step(work: Path, path: Path, command: tuple[str, str], stride: int = 1) -> int:
    """A chain of runs, the k-th killed as the k-th chosen step starts (every ``stride``-th step),
    then one run to the end; returns how many kills. A fork server of its own: the two chains run side
    by side, and a server serves one run at a time."""
    with Forker(work) as forker:
        points = steps_of(forker, path, command[1])[::stride]
        for point in points:
            outcome = forker.run(path, *command, env=ENV, kill_at=point)
            assert outcome.killed and outcome.returncode == -signal.SIGKILL, (point, outcome.stderr[-2000:])
        final = forker.run(path, *command, env=ENV)
        assert final.returncode == 0, final.stderr[-3000:]
        assert json.loads(forker.run(path, "current", "--json", env=ENV).stdout)["in_progress"] is None
    return len(points)


@pytest.mark.slow
def test_killed_at_every_step_up_and_down_converges(forker: Forker, tmp_path: Path) -> None:
    """Every step: the full proof (``pytest -m slow``); ``make test`` kills at every fifth step."""
    killed_at_steps_up_and_down_converge(forker, tmp_path, stride=1)


def test_killed_at_every_fifth_step_up_and_down_converges(forker: Forker, tmp_path: Path) -> None:
    killed_at_steps_up_and_down_converge(forker, tmp_path, stride=5)


def killed_at_steps_up_and_down_converge(forker: Forker, tmp_path: Path, stride: int) -> None:
    """Upgrade chain from the baseline, downgrade chain from an uninterrupted upgrade, side by side.

    The uninterrupted upgrade is the upgrade chain's reference; the baseline as it was before any
    upgrade is the downgrade chain's, since ``downgrade base`` must restore it exactly.
    """
    up_path = prepared(forker, tmp_path / "up", "k2_001")
    down_path = prepared(forker, tmp_path / "down", "k2_001")
    original = inspect(down_path, "default", "k2")
    assert forker.run(down_path, "upgrade", "head", env=ENV).returncode == 0
    upgraded = inspect(down_path, "default", "k2")
    with ThreadPoolExecutor(2) as pool:
        up = pool.submit(kill_at_every_step, tmp_path / "up", up_path, ("upgrade", "head"), stride)
        down = pool.submit(kill_at_every_step, tmp_path / "down", down_path, ("downgrade", "base"), stride)
        # every chosen step of k2_002..k2_004, up and down
        assert up.result() > 30 // stride and down.result() > 30 // stride
    assert inspect(up_path, "default", "k2") == upgraded
    assert inspect(down_path, "default", "k2") == original


def test_ctrl_c_stops_at_a_safe_point_and_says_how_to_continue(forker: Forker, tmp_path: Path) -> None:
    path = prepared(forker, tmp_path / "a", "k2_002")
    twin = prepared(forker, tmp_path / "b", "k2_002")
    assert forker.run(twin, "upgrade", "head", env=ENV).returncode == 0
    # The Ctrl-C goes to a process started on its own, as a user's is.
    stopped = k2_migrate(path, "upgrade", "head", env=ENV, kill_at=("k2_003", 20), sig=signal.SIGINT)
    assert stopped.returncode == 130
    assert (
        "stopped by Ctrl-C before step 21 of k2_003; run the same command again to resume" in stopped.stderr
    )
    assert "Traceback" not in stopped.stderr
    resumed = forker.run(path, "upgrade", "head", env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "k2_003 up (resumed)" in resumed.stdout
    assert inspect(path, "default", "k2") == inspect(twin, "default", "k2")


def test_killed_during_the_window_end_mutations_never_reissues_them(forker: Forker, tmp_path: Path) -> None:
    path = prepared(forker, tmp_path, "k2_003")
    for table in ("ohlcv_1m", "ohlcv_5m", "ohlcv_1h", "ohlcv_1d"):
        outcome = k2_migrate(path, "upgrade", "head", env=ENV, kill_on=f"mutation on k2.{table}")
        assert outcome.killed, outcome.stderr[-2000:]
    assert forker.run(path, "upgrade", "head", env=ENV).returncode == 0
    state = inspect(path, "k2")
    assert state["window_end_mutations"] == {
        f"k2.{t}": 1 for t in ("ohlcv_1m", "ohlcv_5m", "ohlcv_1h", "ohlcv_1d")
    }
