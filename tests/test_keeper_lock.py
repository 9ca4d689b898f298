"""The lock in Keeper: runs on two hosts of one cluster exclude each other through ZooKeeper.

Each "host" is an embedded path of its own whose configuration names one real ZooKeeper (Debian's,
started by :mod:`tests.support.zookeeper`): the two paths share nothing but Keeper, as two servers
of a cluster do. Every run is a real ``k2-migrate`` process; each test has its own migrations
database, hence its own lock in Keeper.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.gated import GATED_REVISION
from tests.support.kill_harness import environment
from tests.support.zookeeper import ZooKeeper, chdb_config

#: Seconds without a heartbeat after which a holder counts as dead, in these tests' projects.
EXPIRY_S = 4


#: A run holding the lock from another host (its identity says so) until it is killed: what a
#: crashed host looks like to the others, since its pid cannot be checked from here.
FOREIGN_HOLDER = """
import os, sys, time
from k2_migrations.backends import open_backend
from k2_migrations.config import parse_url
from k2_migrations.state.journal import Identity
from k2_migrations.state.lock import MigrationLock

url, database, expiry = sys.argv[1], sys.argv[2], float(sys.argv[3])
backend = open_backend(parse_url(url))
backend.client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
identity = Identity("ops", "embedded", "far-host", os.getpid(), "k2-migrate upgrade head")
lock = MigrationLock(
    backend.client, database, identity, embedded=True, expiry_s=expiry, client_factory=backend.new_client
)
lock.acquire()
print(lock.kind, flush=True)
time.sleep(600)
"""


@dataclass
class Cluster:
    """One project and embedded "hosts" (paths) whose configuration names the same ZooKeeper."""

    project: Path
    database: str
    config: Path

    @property
    def gate(self) -> Path:
        return self.project / "gate"

    def url(self, host: str) -> str:
        return f"chdb://{self.project / host}?config-file={self.config}"

    def command(self, host: str, *args: str) -> list[str]:
        ini = str(self.project / "alembic.ini")
        return [sys.executable, "-m", "k2_migrations", "-c", ini, "--url", self.url(host), *args]

    def run(self, host: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(host, *args),
            check=False,
            capture_output=True,
            text=True,
            env=environment(),
            timeout=90,
        )

    def start(self, host: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(host, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )

    def revision_span(self, host: str) -> tuple[datetime, datetime]:
        """When ``host``'s run of the revision started and was done, by that host's journal."""
        done = self.run(host, "log", "--json")
        assert done.returncode == 0, done.stderr
        entries = json.loads(done.stdout)["entries"]
        at = {
            e["status"]: datetime.fromisoformat(e["at"])
            for e in entries
            if e["kind"] == "revision" and e["revision"] == "k1"
        }
        return at["started"], at["done"]


@pytest.fixture
def cluster(tmp_path: Path, zookeeper: ZooKeeper) -> Cluster:
    database = f"kl_{uuid.uuid4().hex[:8]}"
    found = Cluster(tmp_path, database, chdb_config(zookeeper, tmp_path / "chdb.xml"))
    (tmp_path / "versions").mkdir()
    (tmp_path / "versions" / "rk1_gated.py").write_text(GATED_REVISION.format(gate=str(found.gate)))
    ini = (ROOT / "alembic.ini").read_text()
    ini = ini.replace("migrations_database = k2_migrations", f"migrations_database = {database}")
    ini = ini.replace("lock_expiry = 60", f"lock_expiry = {EXPIRY_S}")
    assert database in ini and f"lock_expiry = {EXPIRY_S}" in ini
    (tmp_path / "alembic.ini").write_text(ini)
    return found


def wait_for_first_step(process: subprocess.Popen[str]) -> None:
    """Read the run's stderr until its first step starts: by then it holds the lock."""
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith("  [1] "):
            return
    process.wait()
    raise AssertionError(f"the run never started a step: {''.join(lines)}")


def finish(process: subprocess.Popen[str]) -> tuple[str, str]:
    """The run's remaining output once it has ended (killed if it outlives the test)."""
    try:
        return process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_of_two_hosts_started_together_one_runs_and_the_other_names_it(cluster: Cluster) -> None:
    runs = {host: cluster.start(host, "upgrade", "head") for host in ("a", "b")}
    try:
        # The first to take the lock holds it until the gate opens; the other gives up at once.
        refused = next(host for host in _exits(runs))
        _, loser_err = finish(runs[refused])
    finally:
        cluster.gate.touch()
        outcomes = {host: finish(process) for host, process in runs.items() if host != refused}
    winner = "b" if refused == "a" else "a"
    assert runs[refused].returncode == 4, loser_err
    assert runs[winner].returncode == 0, outcomes[winner]
    (line,) = loser_err.strip().splitlines()
    assert line.startswith(
        f"k2-migrate: error: another migration run holds the lock on {cluster.database} (in Keeper): "
    )
    assert f"pid {runs[winner].pid} " in line and "upgrade head" in line
    # The refused host applied nothing; the lock was released by the winner.
    current = json.loads(cluster.run(refused, "current", "--json").stdout)
    assert current["current"] == [] and current["in_progress"] is None
    shown = json.loads(cluster.run(refused, "lock", "--json").stdout)
    assert shown["kind"] == "keeper" and shown["held"] is False


def _exits(runs: dict[str, subprocess.Popen[str]]) -> Iterator[str]:
    """The hosts whose run has ended, as they end (polled: at most 90 s)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for host, process in runs.items():
            if process.poll() is not None:
                yield host
        time.sleep(0.05)


def test_a_waiting_host_runs_after_the_holder_and_lock_shows_the_holder(cluster: Cluster) -> None:
    holder = cluster.start("a", "upgrade", "head")
    waiter: subprocess.Popen[str] | None = None
    try:
        wait_for_first_step(holder)
        shown = cluster.run("b", "lock", "--json")
        waiter = cluster.start("b", "--lock-timeout", "30", "upgrade", "head")
        # Let it open its engine and find the lock held before letting the holder finish.
        deadline = time.monotonic() + 30
        while not (cluster.project / "b" / "k2-migrate-holder.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)
        assert waiter.poll() is None, waiter.communicate()
    finally:
        cluster.gate.touch()
        finish(holder)
        waited = finish(waiter) if waiter is not None else ("", "")
    assert holder.returncode == 0
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["held"] is True and document["kind"] == "keeper"
    assert document["holder"]["pid"] == holder.pid and document["holder"]["stale"] is False
    assert document["holder"]["command"].endswith("upgrade head")
    assert waiter is not None and waiter.returncode == 0, waited
    assert "broke a stale lock" not in waited[0]
    # Each host's journal, read back: b's revision began only once a's was done.
    _, a_done = cluster.revision_span("a")
    b_started, _ = cluster.revision_span("b")
    assert b_started >= a_done, (a_done, b_started)


def test_a_killed_holder_is_broken_and_the_waiting_host_takes_over(cluster: Cluster) -> None:
    holder = cluster.start("a", "upgrade", "head")
    try:
        wait_for_first_step(holder)
        holder.send_signal(signal.SIGKILL)
    finally:
        cluster.gate.touch()
        finish(holder)
    waited = cluster.run("b", "--lock-timeout", "30", "upgrade", "head")
    assert waited.returncode == 0, waited.stderr
    # The same host: its pid is dead, so the lock is stale at once, expiry or not.
    assert "broke a stale lock held by " in waited.stdout and f"pid {holder.pid} " in waited.stdout


def test_a_holder_on_another_host_is_live_while_it_heartbeats_and_stale_after_expiry(
    cluster: Cluster,
) -> None:
    cluster.gate.touch()
    foreign = subprocess.Popen(
        [sys.executable, "-c", FOREIGN_HOLDER, cluster.url("far"), cluster.database, str(EXPIRY_S)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=environment(),
    )
    try:
        assert foreign.stdout is not None and foreign.stdout.readline().strip() == "keeper"
        time.sleep(EXPIRY_S + 1)  # past the expiry: only its heartbeat keeps the lock live
        refused = cluster.run("b", "upgrade", "head")
        os.kill(foreign.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        waited = cluster.run("b", "--lock-timeout", "30", "upgrade", "head")
        took = time.monotonic() - killed_at
    finally:
        if foreign.poll() is None:
            foreign.kill()
        foreign.communicate()
    assert refused.returncode == 4, refused.stderr
    assert f"ops@far-host pid {foreign.pid} " in refused.stderr
    assert waited.returncode == 0, waited.stderr
    assert f"broke a stale lock held by ops@far-host pid {foreign.pid} " in waited.stdout
    # Its pid cannot be checked from another host: only the expiry frees it, EXPIRY_S after its
    # last heartbeat (at most a heartbeat, 1 s, before the kill).
    assert took > EXPIRY_S - 1


def test_unlock_force_on_another_host_stops_the_holder_at_its_next_step(cluster: Cluster) -> None:
    holder = cluster.start("a", "upgrade", "head")
    try:
        wait_for_first_step(holder)
        broken = cluster.run("b", "unlock", "--force")
        # The holder's heartbeat (a quarter of the expiry) finds its key gone before the gate opens.
        time.sleep(EXPIRY_S / 4 + 1)
    finally:
        cluster.gate.touch()
        _, holder_err = finish(holder)
    assert broken.returncode == 0, broken.stderr
    assert broken.stdout.startswith("broke the lock held by ") and f"pid {holder.pid} " in broken.stdout
    assert holder.returncode == 4, holder_err
    assert "the migration lock was lost before step 2 of k1" in holder_err
