"""Every command through the CLI, against the real engine: output, exit codes, --json, --sql."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import ROOT, Project, scalar, table_names, unique
from tests.support.kill_harness import environment

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


def two_revisions(project: Project, db: str) -> None:
    project.write_revision(
        "a1",
        None,
        f"""
        op.create_database("{db}")
        op.create_object("{db}", "t", "CREATE TABLE {db}.t (id UInt64) ENGINE = MergeTree ORDER BY id")
        op.execute_sql("INSERT INTO {db}.t SELECT number FROM numbers(10)", done_when="SELECT count() > 0 FROM {db}.t")
        """,
        f"""
        op.drop_object("{db}", "t", allow_rows=True)
        op.drop_database("{db}")
        """,
    )
    project.write_revision(
        "b2",
        "a1",
        f"""
        op.take_guards("rows", ["{db}.t"])
        op.add_column_if_missing("{db}", "t", "flag", "UInt8", default="1")
        op.check_guards("rows")
        """,
        f"""
        op.take_guards("rows", ["{db}.t"])
        op.drop_column_if_exists("{db}", "t", "flag")
        op.check_guards("rows")
        """,
    )


def test_help_is_fast_and_imports_nothing_heavy() -> None:
    code = (
        "import sys, time; t = time.perf_counter();"
        "from k2_migrations.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('alembic', 'sqlalchemy', 'clickhouse_connect', 'chdb') if m in sys.modules]\n"
        "print(heavy, file=sys.stderr)"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    assert "upgrade" in done.stdout and "Exit codes" in done.stdout
    assert done.stderr.strip() == "[]"
    assert elapsed < 0.3 + 0.2, f"--help took {elapsed:.2f}s"  # interpreter start included; the bar is 0.3 s


def test_upgrade_current_history_heads_show(project: Project, ch: Client) -> None:
    db = unique("app")
    two_revisions(project, db)
    current = project.run("current")
    assert current.exit_code == 0 and "base (no revision applied)" in current.stdout
    up = project.run("upgrade", "head")
    assert up.exit_code == 0, up.output
    assert "base -> b2" in up.stdout
    assert f"{db}.t" in up.stdout and "10 ->" in up.stdout  # the guard in the summary
    assert "b2 (head) — revision b2" in project.run("current").stdout
    history = project.run("history").stdout.splitlines()
    assert history == ["a1 -> b2 (head), revision b2", "<base> -> a1, revision a1"]
    assert project.run("heads").stdout.strip() == "b2 (head)"
    show = project.run("show", "a1")
    assert show.exit_code == 0 and "Rev: a1\nParent: <base>" in show.stdout
    assert [
        c[0]
        for c in ch.query(f"SELECT name FROM system.columns WHERE database='{db}' AND table='t'").result_rows
    ] == [
        "id",
        "flag",
    ]


def test_json_output_parses_back(project: Project) -> None:
    db = unique("app")
    two_revisions(project, db)
    up = json.loads(project.run("upgrade", "head", "--json").stdout)
    assert up["ok"] is True and up["from"] == [] and up["to"] == ["b2"]
    assert [r["revision"] for r in up["revisions"]] == ["a1", "b2"]
    assert up["guards"] == [
        {
            "label": "rows",
            "table": f"{db}.t",
            "moved_to": f"{db}.t",
            "before": 10,
            "after": 10,
            "ok": True,
            "inserted": 0,
            "lost": 0,
            "dropped_by_step": None,
        }
    ]
    current = json.loads(project.run("current", "--json").stdout)
    assert current == {
        "ok": True,
        "url": re.sub(r":[^:@/]+@", ":***@", project.env["K2_MIGRATE_URL"]),  # a password masked
        "current": ["b2"],
        "head": "b2",
        "heads": ["b2"],
        "up_to_date": True,
        "in_progress": None,
    }
    plan = json.loads(project.run("plan", "base", "--json").stdout)
    assert plan["direction"] == "down" and [r["revision"] for r in plan["revisions"]] == ["b2", "a1"]
    down = json.loads(project.run("downgrade", "base", "--json").stdout)
    assert down["to"] == [] and down["command"] == "down"
    error = project.run("upgrade", "nosuch", "--json")
    assert error.exit_code == 2
    assert json.loads(error.stdout) == {
        "ok": False,
        "error": "No such revision or branch 'nosuch'; k2-migrate history lists the revisions",
        "exit_code": 2,
    }


def test_plan_touches_nothing_and_shows_sql_and_guards(project: Project, ch: Client) -> None:
    db = unique("app")
    two_revisions(project, db)
    plan = project.run("plan")
    assert plan.exit_code == 0, plan.output
    assert "Plan: upgrade from base to head (2 revision(s)); nothing was run." in plan.stdout
    assert f"CREATE TABLE {db}.t (id UInt64) ENGINE = MergeTree ORDER BY id" in plan.stdout
    assert f"guard: baseline parts of {db}.t" in plan.stdout
    assert db not in {str(r[0]) for r in ch.query("SELECT name FROM system.databases").result_rows}
    assert project.run("current", "--json").stdout.count('"current": []') == 1


def test_offline_sql_prints_the_script_and_touches_nothing(project: Project, ch: Client) -> None:
    db = unique("app")
    two_revisions(project, db)
    sql = project.run("upgrade", "head", "--sql")
    assert sql.exit_code == 0, sql.output
    assert f"CREATE DATABASE IF NOT EXISTS {db};" in sql.stdout
    assert f"ALTER TABLE {db}.t ADD COLUMN IF NOT EXISTS flag UInt8 DEFAULT 1;" in sql.stdout
    assert "INSERT INTO" in sql.stdout and "alembic_version" in sql.stdout
    assert "SYNC" not in sql.stdout
    assert db not in {str(r[0]) for r in ch.query("SELECT name FROM system.databases").result_rows}
    down = project.run("downgrade", "b2:base", "--sql")
    assert down.exit_code == 0 and f"DROP DATABASE IF EXISTS {db};" in down.stdout
    assert project.run("downgrade", "base", "--sql").exit_code == 2


def test_stamp_and_downgrade_relative(project: Project, ch: Client) -> None:
    db = unique("app")
    two_revisions(project, db)
    assert project.run("upgrade", "a1").exit_code == 0
    assert "a1" in project.run("current").stdout
    stamp = project.run("stamp", "b2")
    assert stamp.exit_code == 0 and "stamped: a1 -> b2" in stamp.stdout
    down = project.run("downgrade", "-1")
    assert down.exit_code == 0, down.output
    assert json.loads(project.run("current", "--json").stdout)["current"] == ["a1"]
    assert table_names(ch, db) == {"t"}


def test_revision_writes_a_clickhouse_template(project: Project) -> None:
    result = project.run("revision", "-m", "add flag column")
    assert result.exit_code == 0, result.output
    written = list(project.versions.glob("r*_add_flag_column.py"))
    assert len(written) == 1
    text = written[0].read_text()
    assert "def upgrade() -> None:" in text and "def downgrade() -> None:" in text
    assert "op.take_guards" in text and "idempotent" in text
    second = project.run("revision", "-m", "second")
    assert second.exit_code == 0
    heads = project.run("heads").stdout.strip().splitlines()
    assert len(heads) == 1  # the new revision follows the previous head


def test_log_shows_the_journal_newest_first(project: Project) -> None:
    db = unique("app")
    two_revisions(project, db)
    assert project.run("upgrade", "head").exit_code == 0
    log = project.run("log", "--json")
    entries = json.loads(log.stdout)["entries"]
    assert (
        entries[0]["kind"] == "revision" and entries[0]["status"] == "done" and entries[0]["revision"] == "b2"
    )
    assert any(e["operation"] == f"create database {db}" and e["status"] == "done" for e in entries)
    text = project.run("log").stdout
    assert "step" in text and "create database" in text


def test_lock_and_unlock_commands(project: Project, ch: Client) -> None:
    assert project.run("lock").stdout.strip() == "the lock is free"
    refused = project.run("unlock")
    assert refused.exit_code == 2 and "--force" in refused.stderr
    db = project.migrations_database
    ch.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    ch.command(
        f"CREATE TABLE {db}.k2_migrations_lock (seq UInt64, owner_id String, host String, pid UInt32, os_user String,"
        " db_user String, command String, started_at DateTime64(3, 'UTC'), heartbeat_at DateTime64(3, 'UTC'))"
        " ENGINE = MergeTree ORDER BY seq"
    )
    ch.command(
        f"INSERT INTO {db}.k2_migrations_lock VALUES (1, 'x', 'deploy-7', 4242, 'ci', 'migrator', 'k2-migrate upgrade',"
        " now64(3), now64(3))"
    )
    shown = project.run("lock")
    assert "held by ci@deploy-7 pid 4242 ('k2-migrate upgrade'" in shown.stdout
    broken = project.run("unlock", "--force")
    assert broken.exit_code == 0 and "broke the lock held by ci@deploy-7" in broken.stdout
    assert project.run("lock").stdout.strip() == "the lock is free"


def test_default_target_is_the_embedded_engine_under_the_working_directory(tmp_path: Path) -> None:
    """With no URL anywhere, a fresh directory gets .k2-migrate/chdb (a separate process: one path each)."""
    (tmp_path / "versions").mkdir()
    (tmp_path / "alembic.ini").write_text((ROOT / "alembic.ini").read_text())
    env = environment()
    done = subprocess.run(
        [sys.executable, "-m", "k2_migrations", "current"],
        cwd=tmp_path,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert f"chdb://{tmp_path}/.k2-migrate/chdb: base" in done.stdout
    assert (tmp_path / ".k2-migrate" / "chdb").is_dir()


def test_guard_catches_rows_vanishing(project: Project, ch: Client) -> None:
    db = unique("app")
    ch.command(f"CREATE DATABASE {db}")
    ch.command(f"CREATE TABLE {db}.t (id UInt64) ENGINE = MergeTree ORDER BY id")
    ch.command(f"INSERT INTO {db}.t SELECT number FROM numbers(100)")
    project.write_revision(
        "a1",
        None,
        f"""
        op.take_guards("rows", ["{db}.t"])
        op.execute_sql("ALTER TABLE {db}.t DELETE WHERE id < 3 SETTINGS mutations_sync = 2")
        op.check_guards("rows")
        """,
        "",
    )
    result = project.run("upgrade", "head")
    assert result.exit_code == 5
    assert (
        f"guard 'rows' failed: {db}.t: before 100, after 97: 3 lost; the data was left where it is"
        in result.stderr
    )
    assert json.loads(project.run("current", "--json").stdout)["current"] == []


def test_guard_on_a_collapsing_engine_is_not_fooled_by_merges(project: Project, ch: Client) -> None:
    db = unique("app")
    ch.command(f"CREATE DATABASE {db}")
    ch.command(f"CREATE TABLE {db}.r (id UInt64, v UInt8) ENGINE = ReplacingMergeTree ORDER BY id")
    for _ in range(3):
        ch.command(f"INSERT INTO {db}.r SELECT number, 1 FROM numbers(50)")
    project.write_revision(
        "a1",
        None,
        f"""
        op.take_guards("rows", ["{db}.r"])
        op.execute_sql("OPTIMIZE TABLE {db}.r FINAL", done_when="SELECT 0")
        op.check_guards("rows")
        """,
        "",
    )
    # Merges are held for the guard, so the OPTIMIZE cannot collapse rows under it: it is refused.
    result = project.run("upgrade", "head")
    assert result.exit_code == 6 and "Cancelled merging parts" in result.stderr
    assert scalar(ch, f"SELECT count() FROM {db}.r") == 150
    # Once the run ended, merges are running again.
    ch.command(f"OPTIMIZE TABLE {db}.r FINAL")
    assert scalar(ch, f"SELECT count() FROM {db}.r") == 50


def test_offline_sql_for_a_server_url_needs_no_server_and_hides_the_password(project: Project) -> None:
    db = unique("app")
    two_revisions(project, db)
    result = project.run(
        "--url", "clickhouses://migrator:Sekr1t-pw@ch.invalid:8443/default", "upgrade", "head", "--sql"
    )
    assert result.exit_code == 0, result.output
    assert f"CREATE DATABASE IF NOT EXISTS {db};" in result.stdout
    assert f"CREATE TABLE {db}.t (id UInt64) ENGINE = MergeTree ORDER BY id;" in result.stdout
    assert f"CREATE TABLE IF NOT EXISTS {project.migrations_database}.k2_migrations_versions" in result.stdout
    assert "Sekr1t-pw" not in result.output


def test_check_reports_drift_without_false_alarms(project: Project, ch: Client) -> None:
    db = unique("app")
    two_revisions(project, db)
    before = project.run("check")
    assert before.exit_code == 2 and "no schema was recorded for revision base" in before.stderr
    assert project.run("upgrade", "head").exit_code == 0
    clean = project.run("check")
    assert clean.exit_code == 0, clean.output
    assert "no drift: the live schema is what revision b2 left" in clean.stdout
    # Re-creating a table with the same meaning but other formatting is not drift.
    ch.command(f"DROP TABLE {db}.t")
    ch.command(
        f"create table {db}.t ( `id`   UInt64, flag UInt8 default 1 ) engine = MergeTree() order by (id)"
    )
    assert project.run("check").exit_code == 0
    ch.command(f"ALTER TABLE {db}.t ADD COLUMN extra String")
    ch.command(f"CREATE TABLE {db}.stray (x UInt8) ENGINE = Memory")
    drift = project.run("check", "--json")
    assert drift.exit_code == 8
    document = json.loads(drift.stdout)
    assert document["ok"] is False and document["revision"] == "b2"
    assert any(
        line.startswith(f"{db}.t columns: expected (id UInt64, flag UInt8)") for line in document["drift"]
    )
    assert f"{db}.stray object: expected absent, found present" in document["drift"]
    text = project.run("check")
    assert (
        text.exit_code == 8
        and "k2-migrate: error: 2 difference(s) from the schema revision b2 left" in text.stderr
    )
    # An upgrade with nothing to do leaves the record as the revisions left it: the drift stays visible.
    assert project.run("upgrade", "head").exit_code == 0
    assert project.run("check").exit_code == 8


def test_the_journal_keeps_any_text_exactly(project: Project, ch: Client) -> None:
    """Journal rows go in as one JSONEachRow block: quotes, backslashes, newlines, tabs and non-ASCII
    text in SQL come back from ``log --json`` exactly as they ran."""
    db = unique("app")
    sql = f"INSERT INTO {db}.t VALUES ('it\\'s a \\\\ back\\nslash, a \"quote\", a\\ttab, 数据 and 🚀')"
    ch.command(f"CREATE DATABASE {db}")
    ch.command(f"CREATE TABLE {db}.t (note String) ENGINE = MergeTree ORDER BY note")
    project.write_revision("a1", None, f"op.execute_sql({sql!r})", "")
    assert project.run("upgrade", "head").exit_code == 0
    assert scalar(ch, f"SELECT note FROM {db}.t") == 'it\'s a \\ back\nslash, a "quote", a\ttab, 数据 and 🚀'
    entries = json.loads(project.run("log", "--json").stdout)["entries"]
    step = next(e for e in entries if e["kind"] == "step" and e["status"] == "done")
    assert step["sql"] == sql
    started = [e for e in entries if e["kind"] == "revision" and e["status"] == "started"]
    assert len(started) == 1 and len(started[0]["at"].split(".")[1]) >= 6  # microseconds kept
