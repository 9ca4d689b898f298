"""Guards and intentional drops agree: a table dropped with ``allow_rows=True`` is accounted, not lost.

Lint's advice for a drop that may lose rows is to take guards before it and check them after.
Following it must work: the table ``op.drop_object(..., allow_rows=True)`` drops is reported as
dropped on purpose with the rows it had, while rows that vanish any other way — a DELETE, a TRUNCATE
before the drop, a raw DROP TABLE — still stop the run with exit code 5, and the error says the
data was left in place only when it was.

Every run is a real ``k2-migrate`` process (forked, imports paid once) on an embedded database of its
own, and the state is read back from system tables by yet another process (chDB opens one data path
per process).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from k2_migrations.authoring.lint import lint_source
from tests.conftest import ROOT, Project
from tests.support.engine_query import run_with_client
from tests.support.kill_harness import Forker, Outcome

SETUP = """
op.create_database("app")
op.create_object("app", "t", "CREATE TABLE app.t (id UInt64) ENGINE = MergeTree ORDER BY id")
op.create_object("app", "keep", "CREATE TABLE app.keep (id UInt64) ENGINE = MergeTree ORDER BY id")
op.execute_sql("INSERT INTO app.t SELECT number FROM numbers(10)", done_when="SELECT count() > 0 FROM app.t")
op.execute_sql("INSERT INTO app.keep SELECT number FROM numbers(5)", done_when="SELECT count() > 0 FROM app.keep")
"""

GUARDED_DROP = """
op.take_guards("rows", ["app.t", "app.keep"])
op.drop_object("app", "t", allow_rows=True)
op.check_guards("rows")
"""


def make_project(tmp_path: Path, downgrade: str) -> Project:
    """A project whose one revision fills app.t (10 rows) and app.keep (5 rows) and whose downgrade is given."""
    (tmp_path / "versions").mkdir()
    (tmp_path / "alembic.ini").write_text((ROOT / "alembic.ini").read_text())
    project = Project(tmp_path)
    project.write_revision("a1", None, SETUP, downgrade)
    return project


def k2_migrate(
    forker: Forker, project: Project, *args: str, kill_at: tuple[str, int] | None = None
) -> Outcome:
    """One ``k2-migrate`` process on this project's own embedded database."""
    # The harness names the K2 project's alembic.ini; a second -c (the last one wins) names this one.
    config = ("-c", str(project.root / "alembic.ini"))
    return forker.run(project.root / "db", *config, *args, env={}, kill_at=kill_at, timeout_s=120)


def live_tables(project: Project, create: str = "") -> dict[str, int]:
    """The tables of ``app`` and their row counts, read from system tables by a separate process
    (after running ``create``, when given)."""
    code = (
        "if sys.argv[2]:\n    c.command(sys.argv[2])\n"
        "names = c.query(\"SELECT name FROM system.tables WHERE database = 'app'\").result_rows\n"
        "print(json.dumps({n: int(c.command(f'SELECT count() FROM app.{n}')) for (n,) in names}))\n"
    )
    tables: dict[str, int] = run_with_client(project.root / "db", code, create, timeout=120)
    return tables


def test_following_lints_advice_drops_the_table_and_reports_it_dropped_on_purpose(
    forker: Forker, tmp_path: Path
) -> None:
    unguarded = lint_source(
        Path("r.py"), 'def downgrade():\n    op.drop_object("app", "t", allow_rows=True)\n'
    )
    assert [f.rule for f in unguarded] == ["drop-without-guard"]
    assert "reported as dropped on purpose with the rows it had" in unguarded[0].fix
    project = make_project(tmp_path, GUARDED_DROP)
    assert lint_source(project.versions / "ra1.py", (project.versions / "ra1.py").read_text()) == []

    assert k2_migrate(forker, project, "upgrade", "head").returncode == 0
    down = k2_migrate(forker, project, "downgrade", "base", "--json")

    assert down.returncode == 0, down.stderr
    guards = {g["table"]: g for g in json.loads(down.stdout)["guards"]}
    assert guards["app.t"] == {
        "label": "rows",
        "table": "app.t",
        "moved_to": "app.t",
        "before": 10,
        "after": 10,
        "inserted": 0,
        "lost": 0,
        "ok": True,
        "dropped_by_step": 2,
    }
    assert guards["app.keep"]["after"] == 5 and guards["app.keep"]["dropped_by_step"] is None
    assert "[2] drop app.t" in down.stderr and "10 rows, dropped on purpose (guarded)" in down.stderr
    assert live_tables(project) == {"keep": 5}


def test_a_resumed_run_still_knows_the_drop_was_on_purpose(forker: Forker, tmp_path: Path) -> None:
    """The drop is done in one process and the check in the next: the journal carries the drop."""
    gate = "SELECT count() = 0 FROM system.tables WHERE database = 'app' AND name = 'go'"
    project = make_project(
        tmp_path,
        f"""
        op.take_guards("rows", ["app.t", "app.keep"])
        op.drop_object("app", "t", allow_rows=True)
        op.verify("gate", "{gate}")
        op.check_guards("rows")
        """,
    )
    assert k2_migrate(forker, project, "upgrade", "head").returncode == 0

    stopped = k2_migrate(forker, project, "downgrade", "base")
    assert stopped.returncode == 5 and "check 'gate' failed: 1 violation(s)" in stopped.stderr
    assert live_tables(project, "CREATE TABLE app.go (x UInt8) ENGINE = Memory") == {"keep": 5, "go": 0}
    resumed = k2_migrate(forker, project, "downgrade", "base")

    assert resumed.returncode == 0, resumed.stderr
    assert "[2] drop app.t: already done" in resumed.stderr
    summary = [" ".join(line.split()) for line in resumed.stdout.splitlines() if line.startswith("  rows ")]
    assert sorted(summary) == [
        "rows app.keep 5 -> 5 ok: none lost",
        "rows app.t 10 -> 10 ok: dropped by step 2 (allow_rows) with 10 rows",
    ]


def test_rows_deleted_next_to_an_intentional_drop_still_fail_the_guard(
    forker: Forker, tmp_path: Path
) -> None:
    project = make_project(
        tmp_path,
        """
        op.take_guards("rows", ["app.t", "app.keep"])
        op.execute_sql("ALTER TABLE app.keep DROP PART 'all_1_1_0'")
        op.drop_object("app", "t", allow_rows=True)
        op.check_guards("rows")
        """,
    )
    assert k2_migrate(forker, project, "upgrade", "head").returncode == 0

    down = k2_migrate(forker, project, "downgrade", "base")

    assert down.returncode == 5
    assert (
        "k2-migrate: error: guard 'rows' failed: app.keep: before 5, after 0: 5 lost; the data was left where it is"
        in down.stderr
    )
    assert "app.t" not in down.stderr.split("guard 'rows' failed:")[1]  # dropped on purpose: not a failure
    assert live_tables(project) == {"keep": 0}


def test_rows_gone_before_the_drop_or_by_raw_sql_fail_without_claiming_the_data_is_in_place(
    forker: Forker, tmp_path: Path
) -> None:
    project = make_project(
        tmp_path,
        """
        op.take_guards("rows", ["app.t", "app.keep"])
        op.execute_sql("TRUNCATE TABLE app.t")
        op.drop_object("app", "t", allow_rows=True)
        op.execute_sql("DROP TABLE app.keep")
        op.check_guards("rows")
        """,
    )
    assert k2_migrate(forker, project, "upgrade", "head").returncode == 0

    down = k2_migrate(forker, project, "downgrade", "base")

    assert down.returncode == 5
    error = next(line for line in down.stderr.splitlines() if line.startswith("k2-migrate: error:"))
    assert "app.t: before 10, 0 when step 3 dropped it" in error
    assert "app.keep: before 5, missing" in error
    assert "app.t, app.keep no longer exist(s): those rows are not in place" in error
    assert "app.keep was not dropped by op.drop_object after the guard was taken" in error
    assert "left where it is" not in down.stderr
    assert live_tables(project) == {}


def test_a_run_killed_right_after_the_drop_resumes_with_the_drop_accounted(
    forker: Forker, tmp_path: Path
) -> None:
    """Killed once the drop is done but before its ``done`` row is durable: the resumed run finds the
    table gone, and the drop step it re-checks stands for it with the guard's baseline."""
    project = make_project(tmp_path, GUARDED_DROP)
    assert k2_migrate(forker, project, "upgrade", "head").returncode == 0

    killed = k2_migrate(forker, project, "downgrade", "base", kill_at=("a1", 3))
    assert killed.killed and killed.returncode == -signal.SIGKILL
    assert live_tables(project) == {"keep": 5}
    resumed = k2_migrate(forker, project, "downgrade", "base", "--json")

    assert resumed.returncode == 0, resumed.stderr
    assert "dropped by the interrupted run; its guard's baseline stands for it" in resumed.stderr
    guards = {
        g["table"]: (g["before"], g["after"], g["dropped_by_step"])
        for g in json.loads(resumed.stdout)["guards"]
    }
    assert guards == {"app.t": (10, 10, 2), "app.keep": (5, 5, None)}


def test_a_guard_taken_again_after_a_drop_and_re_create_does_not_remember_the_earlier_drop(
    forker: Forker, tmp_path: Path
) -> None:
    """The second guard counts the re-created table: rows it then loses are lost, whatever the first
    guard's drop of the same name had."""
    project = make_project(
        tmp_path,
        """
        op.take_guards("first", ["app.t"])
        op.drop_object("app", "t", allow_rows=True)
        op.check_guards("first")
        op.create_object("app", "t", "CREATE TABLE app.t (id UInt64) ENGINE = MergeTree ORDER BY id")
        op.execute_sql("INSERT INTO app.t SELECT number FROM numbers(10)", done_when="SELECT count() > 0 FROM app.t")
        op.take_guards("second", ["app.t"])
        op.execute_sql("TRUNCATE TABLE app.t")
        op.check_guards("second")
        """,
    )
    assert k2_migrate(forker, project, "upgrade", "head").returncode == 0

    down = k2_migrate(forker, project, "downgrade", "base")

    assert down.returncode == 5, down.stderr
    assert "guard 'second' failed: app.t: before 10, after 0: 10 lost" in down.stderr
    assert live_tables(project) == {"t": 0, "keep": 5}
