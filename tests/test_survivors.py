"""One test per class of bug an audit planted and the suite let through (issue 19).

Each crosses the I/O the pure decisions (tests/test_decisions_*.py) leave out: real ``k2-migrate``
processes on an embedded database of their own where the promise spans processes (a change written
by a host with another clock, a failed revert resumed, a mutation without ``done_when`` killed and
resumed), the lock's own reads where it does not. The other two classes — a ``';'`` literal beside a
database argument while rewriting, a cluster host neither done nor failed at the DDL timeout — are
decided wholly by pure functions and tested there (test_decisions_sqltext.py, test_decisions_ops.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from k2_migrations.errors import LockHeld
from k2_migrations.state.journal import Identity
from k2_migrations.state.lock import MigrationLock
from k2_migrations.state.versions import VERSION_LOG
from tests.conftest import SERVER_URL, Project
from tests.support.engine_query import query
from tests.support.kill_harness import Forker, write_project
from tests.test_kill_points import KILLED

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

embedded_only = pytest.mark.skipif(bool(SERVER_URL), reason="each case runs on an embedded engine of its own")


def current(forker: Forker, root: Path) -> dict[str, object]:
    done = forker.run_project(root, "current", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    document: dict[str, object] = json.loads(done.stdout)
    return document


@embedded_only
def test_a_change_written_by_a_host_with_a_fast_clock_does_not_outrank_the_changes_after_it(
    forker: Forker, tmp_path: Path
) -> None:
    """Heads follow the record's seq. Here a1 -> a2 was recorded by a host whose clock is a day ahead;
    this host's a2 -> a3 then carries an earlier time than the change before it."""
    write_project(
        tmp_path,
        [
            ("a1", None, "op.create_database('h1')", "op.drop_database('h1')"),
            ("a2", "a1", "pass", "pass"),
            ("a3", "a2", "op.create_database('h3')", "op.drop_database('h3')"),
        ],
    )
    assert forker.run_project(tmp_path, "upgrade", "a1").returncode == 0
    log = f"k2_migrations.{VERSION_LOG}"
    query(
        tmp_path / "engine",
        f"INSERT INTO {log} (seq, revision, applied, host, command, at)"
        " SELECT 2, change.1, change.2, 'fast-clock-host', 'k2-migrate upgrade a2',"
        " now64(6) + INTERVAL 1 DAY FROM (SELECT arrayJoin([('a1', 0), ('a2', 1)]) AS change)",
    )
    assert current(forker, tmp_path)["current"] == ["a2"]
    upgraded = forker.run_project(tmp_path, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr[-2000:]
    assert query(tmp_path / "engine", f"SELECT max(at) > now64(6) + INTERVAL 1 HOUR FROM {log}") == [[1]]
    assert current(forker, tmp_path)["current"] == ["a3"]
    # What Alembic reads (the view) agrees: one step down goes to a2, not from two heads.
    assert query(tmp_path / "engine", "SELECT version_num FROM k2_migrations.alembic_version") == [["a3"]]
    down = forker.run_project(tmp_path, "downgrade", "-1")
    assert down.returncode == 0, down.stderr[-2000:]
    assert current(forker, tmp_path)["current"] == ["a2"]
    assert query(tmp_path / "engine", "SELECT name FROM system.databases WHERE name LIKE 'h_'") == [["h1"]]


def dead_pid() -> int:
    """The pid of a process of this host that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_holder_on_another_host_is_judged_by_its_heartbeat_not_by_a_local_pid(
    project: Project, ch: Client
) -> None:
    """A pid means nothing on another host: a fresh heartbeat holds the lock however dead the pid is here.
    (On chDB a table lock is always stale, so the server rule is driven through the class directly.)"""
    db = project.migrations_database
    ch.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    pid = dead_pid()
    me = Identity("me", "migrator", socket.gethostname(), os.getpid(), "k2-migrate upgrade head")
    for host, stale in (("db-2.elsewhere", False), (socket.gethostname(), True)):
        holder = MigrationLock(ch, db, Identity("ci", "m", host, pid, "k2-migrate upgrade"), embedded=False)
        holder.acquire()  # no heartbeat thread (no client factory): its one heartbeat is fresh
        state = holder.read()
        assert state is not None and state.host == host and state.pid == pid and state.heartbeat_age_s < 30
        second = MigrationLock(ch, db, me, embedded=False)
        if stale:
            second.acquire()
            assert second.broken_stale is not None and second.broken_stale.host == host
            second.release()
        else:
            with pytest.raises(LockHeld) as caught:
                second.acquire(timeout_s=0)
            assert f"ci@{host} pid {pid}" in caught.value.message
            holder.release()
        assert holder.read() is None


@embedded_only
def test_a_revert_that_failed_half_way_is_resumed_as_a_revert(forker: Forker, tmp_path: Path) -> None:
    """r2's upgrade fails; the downgrade reverts it and fails half-way (after dropping one of two
    databases); the same downgrade again must finish the revert, not close it as done."""
    fail_if = "op.execute_sql(f\"SELECT throwIf({int(bool(os.environ.get('FAIL_REVERT')))})\")"
    write_project(
        tmp_path,
        [
            ("r1", None, "op.create_database('base1')", "op.drop_database('base1')"),
            (
                "r2",
                "r1",
                "op.create_database('x1'); op.create_database('x2'); op.execute_sql('SELECT throwIf(1)')",
                f"op.drop_database('x1'); {fail_if}; op.drop_database('x2')",
            ),
        ],
    )
    revision = tmp_path / "versions" / "r2.py"
    revision.write_text("import os\n" + revision.read_text())
    assert forker.run_project(tmp_path, "upgrade", "r1").returncode == 0
    failed = forker.run_project(tmp_path, "upgrade", "head")
    assert failed.returncode == 6, failed.stderr[-2000:]
    reverting = forker.run_project(tmp_path, "downgrade", "r1", FAIL_REVERT="1")
    assert reverting.returncode == 6, reverting.stderr[-2000:]
    databases = "SELECT name FROM system.databases WHERE name IN ('x1', 'x2', 'base1') ORDER BY name"
    assert query(tmp_path / "engine", databases) == [["base1"], ["x2"]]
    in_progress = current(forker, tmp_path)["in_progress"]
    assert isinstance(in_progress, dict) and in_progress["revision"] == "r2"
    resumed = forker.run_project(tmp_path, "downgrade", "r1")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "revert an interrupted run" in resumed.stderr
    assert query(tmp_path / "engine", databases) == [["base1"]]
    state = current(forker, tmp_path)
    assert state["current"] == ["r1"] and state["in_progress"] is None


@embedded_only
def test_a_mutation_without_done_when_killed_after_it_was_issued_is_never_issued_again(
    forker: Forker, tmp_path: Path
) -> None:
    """``v = v + 1`` twice would be wrong data: the resumed step finds its command in system.mutations."""
    write_project(
        tmp_path,
        [
            (
                "m1",
                None,
                "op.create_database('m'); op.create_object('m', 't',"
                " 'CREATE TABLE m.t (id UInt64, v UInt64) ENGINE = MergeTree ORDER BY id')",
                "op.drop_database('m')",
            ),
            (
                "m2",
                "m1",
                "op.execute_sql('INSERT INTO m.t SELECT number, 0 FROM numbers(100)',"
                " done_when='SELECT count() = 100 FROM m.t')",
                "pass",
            ),
            ("m3", "m2", "op.run_mutation('m', 't', 'UPDATE v = v + 1 WHERE 1')", "pass"),
        ],
    )
    killed = forker.run_project(tmp_path, "upgrade", "head", K2_MIGRATE_FAILPOINT="mutation-issued")
    assert killed.returncode == KILLED, killed.stderr[-2000:]
    resumed = forker.run_project(tmp_path, "upgrade", "head")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (
        "waited for the running mutation" in resumed.stderr
        or "issued by the interrupted run" in resumed.stderr
    )
    assert query(tmp_path / "engine", "SELECT count() FROM system.mutations WHERE database = 'm'") == [[1]]
    assert query(tmp_path / "engine", "SELECT countIf(v = 1), count() FROM m.t") == [[100, 100]]
    assert current(forker, tmp_path)["current"] == ["m3"]
