"""Failures inside a step, placed exactly with failpoints: after a mutation was accepted, between a move
and its row count. Each run is a real ``k2-migrate`` process (forked by conftest's ``forker``) on an embedded database of its own; what
happened is read back from the engine (system.mutations, row counts) in a separate process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SERVER_URL
from tests.support.engine_query import query
from tests.support.kill_harness import Forker, write_project

pytestmark = pytest.mark.skipif(bool(SERVER_URL), reason="each case runs on an embedded engine of its own")

KILLED = -9


def test_killed_while_its_mutation_runs_the_step_waits_for_it_and_never_reissues_it(
    forker: Forker, tmp_path: Path
) -> None:
    # 2,000 rows at 4 ms each (8 s, long enough under load): a mutation that is still running when the process is killed, and
    # still running (re-started by the engine on reopen) when the next run reaches the step.
    fill = (
        "op.execute_sql('INSERT INTO m.t SELECT number, 0 FROM numbers(2000)',"
        " done_when='SELECT count() = 2000 FROM m.t')"
    )
    mutation = (
        "op.run_mutation('m', 't', 'UPDATE v = 1 + sleepEachRow(0.004) WHERE v = 0',"
        " done_when='SELECT countIf(v = 0) = 0 FROM m.t')"
    )
    write_project(
        tmp_path,
        [
            ("m1", None, "op.create_database('m')", "op.drop_database('m')"),
            (
                "m2",
                "m1",
                "op.create_object('m', 't', 'CREATE TABLE m.t (id UInt64, v UInt8) ENGINE = MergeTree"
                " ORDER BY id SETTINGS index_granularity = 64')",
                "op.drop_object('m', 't', allow_rows=True)",
            ),
            ("m3", "m2", fill, "pass"),
            ("m4", "m3", mutation, "pass"),
        ],
    )
    killed = forker.run_project(tmp_path, "upgrade", "head", K2_MIGRATE_FAILPOINT="mutation-issued")
    assert killed.returncode == KILLED, killed.stderr[-2000:]
    assert query(tmp_path / "engine", "SELECT count() FROM system.mutations WHERE database = 'm'") == [[1]]
    resumed = forker.run_project(tmp_path, "upgrade", "head")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "waited for the running mutation" in resumed.stderr
    assert query(
        tmp_path / "engine",
        "SELECT count(), is_done FROM system.mutations WHERE database = 'm' GROUP BY is_done",
    ) == [[1, 1]]
    assert query(tmp_path / "engine", "SELECT countIf(v = 1), count() FROM m.t") == [[2000, 2000]]
    current = forker.run_project(tmp_path, "current", "--json")
    assert json.loads(current.stdout)["current"] == ["m4"]


def test_rows_lost_between_a_move_and_its_count_stop_the_run_and_say_where_the_data_is(
    forker: Forker, tmp_path: Path
) -> None:
    write_project(
        tmp_path,
        [
            (
                "v1",
                None,
                "op.create_database('src'); op.create_database('dst'); op.create_object('src', 't',"
                " 'CREATE TABLE src.t (id UInt64) ENGINE = MergeTree ORDER BY id')",
                "op.drop_database('dst'); op.drop_database('src')",
            ),
            (
                "v2",
                "v1",
                "op.execute_sql('INSERT INTO src.t SELECT number FROM numbers(100)',"
                " done_when='SELECT count() = 100 FROM src.t')",
                "pass",
            ),
            ("v3", "v2", "op.move_table('src', 't', 'dst')", "op.move_table('dst', 't', 'src')"),
        ],
    )
    assert forker.run_project(tmp_path, "upgrade", "v2").returncode == 0
    # Another writer deletes 10 rows from the destination at the moment the move is done and before
    # it is counted.
    lost = forker.run_project(
        tmp_path,
        "upgrade",
        "head",
        K2_MIGRATE_FAILPOINT="move-moved",
        K2_MIGRATE_FAILPOINT_SQL="DELETE FROM dst.t WHERE id < 10",
    )
    assert lost.returncode == 5, lost.stderr[-2000:]
    error = lost.stderr.strip().splitlines()[-1]
    assert error.startswith("k2-migrate: error:")
    assert "dst.t holds 90 of the 100 rows src.t had before the move (10 lost)" in error
    # The data is where the message says: 90 rows in dst.t, src.t gone (renamed), nothing else dropped.
    assert query(tmp_path / "engine", "SELECT count() FROM dst.t") == [[90]]
    assert query(
        tmp_path / "engine", "SELECT name FROM system.tables WHERE database IN ('src', 'dst') ORDER BY name"
    ) == [["t"]]
    current = forker.run_project(tmp_path, "current", "--json")
    document = json.loads(current.stdout)
    assert document["current"] == ["v2"] and document["in_progress"]["revision"] == "v3"


def test_a_revision_changed_after_its_interrupted_run_is_refused_until_restored(
    forker: Forker, tmp_path: Path
) -> None:
    """Steps already done are skipped by their index: if the file changed under them, resuming would
    skip the wrong work. The run refuses (exit 7) and names the step; with the file restored it resumes."""
    first = "op.create_database('c'); op.execute_sql('SELECT throwIf(1)')"
    write_project(tmp_path, [("c1", None, first, "op.drop_database('c')")])
    failed = forker.run_project(tmp_path, "upgrade", "head")
    assert failed.returncode == 6, failed.stderr[-2000:]
    revision = tmp_path / "versions" / "c1.py"
    original = revision.read_text()
    revision.write_text(original.replace("op.create_database('c')", "op.create_database('d')"))
    changed = forker.run_project(tmp_path, "upgrade", "head")
    assert changed.returncode == 7, changed.stderr[-2000:]
    line = changed.stderr.strip().splitlines()[-1]
    assert "revision c1 changed since its interrupted run: step 1 was 'create database c'" in line
    assert query(tmp_path / "engine", "SELECT name FROM system.databases WHERE name IN ('c', 'd')") == [["c"]]
    revision.write_text(original.replace("op.execute_sql('SELECT throwIf(1)')", "pass"))
    resumed = forker.run_project(tmp_path, "upgrade", "head")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(forker.run_project(tmp_path, "current", "--json").stdout)["current"] == ["c1"]


def test_rows_lost_while_partitions_are_attached_keep_the_source(forker: Forker, tmp_path: Path) -> None:
    """Into chDB's ``default`` (an Overlay database) a RENAME is refused and the move attaches
    partitions: rows lost from the copy before its count must stop the run with the source kept."""
    write_project(
        tmp_path,
        [
            (
                "p1",
                None,
                "op.create_database('src'); op.create_object('src', 't',"
                " 'CREATE TABLE src.t (id UInt64) ENGINE = MergeTree ORDER BY id')",
                "op.drop_database('src')",
            ),
            (
                "p2",
                "p1",
                "op.execute_sql('INSERT INTO src.t SELECT number FROM numbers(100)',"
                " done_when='SELECT count() = 100 FROM src.t')",
                "pass",
            ),
            ("p3", "p2", "op.move_table('src', 't', 'default')", "op.move_table('default', 't', 'src')"),
        ],
    )
    assert forker.run_project(tmp_path, "upgrade", "p2").returncode == 0
    lost = forker.run_project(
        tmp_path,
        "upgrade",
        "head",
        K2_MIGRATE_FAILPOINT="move-attached",
        K2_MIGRATE_FAILPOINT_SQL="DELETE FROM default.t WHERE id < 10",
    )
    assert lost.returncode == 5, lost.stderr[-2000:]
    line = lost.stderr.strip().splitlines()[-1]
    assert (
        "default.t has 90 of the 100 rows of src.t after attaching its partitions (10 lost); the source is kept"
        in line
    )
    assert query(tmp_path / "engine", "SELECT count() FROM src.t") == [[100]]
