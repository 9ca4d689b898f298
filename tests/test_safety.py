"""The bad-input catalogue, interrupted runs, and the lock: one clear line, the right exit code.

Every case runs with a password in the URL or in K2_MIGRATE_PASSWORD and checks it never appears.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from k2_migrations.errors import LockHeld
from k2_migrations.state.journal import Identity
from k2_migrations.state.lock import MigrationLock
from tests.conftest import SERVER_URL, Project, scalar, table_names, unique
from tests.support.kill_harness import k2_migrate
from tests.support.wait import wait_until

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

SECRET = "pw-Sw0rdfish-77"


@pytest.fixture(autouse=True)
def password_everywhere(project: Project) -> None:
    """Every case here runs with a password in K2_MIGRATE_PASSWORD; it must never be printed."""
    project.env["K2_MIGRATE_PASSWORD"] = SECRET


def assert_one_clear_line(result_output: str) -> None:
    lines = [line for line in result_output.splitlines() if line.startswith("k2-migrate: error:")]
    assert len(lines) == 1, result_output
    assert "Traceback" not in result_output
    assert SECRET not in result_output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def plain_http_server() -> Iterator[int]:
    """An HTTP (not HTTPS) listener on 127.0.0.1: a TLS client's handshake with it fails."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("password_in", ["url", "env"])
def test_unknown_scheme_and_unreachable_host(project: Project, password_in: str) -> None:
    env = {"K2_MIGRATE_PASSWORD": SECRET} if password_in == "env" else {}
    auth = f"u:{SECRET}" if password_in == "url" else "u"
    bad_scheme = project.run("--url", f"postgres://{auth}@h/db", "current", env=env)
    assert bad_scheme.exit_code == 2 and "unknown URL scheme 'postgres'" in bad_scheme.stderr
    assert_one_clear_line(bad_scheme.output)
    unreachable = project.run("--url", f"clickhouse://{auth}@127.0.0.1:{free_port()}/db", "upgrade", env=env)
    assert unreachable.exit_code == 3
    assert (
        "cannot reach ClickHouse at clickhouse://u" in unreachable.stderr
        and "connection refused" in unreachable.stderr
    )
    assert_one_clear_line(unreachable.output)


def test_tls_failure(project: Project, plain_http_server: int) -> None:
    result = project.run("--url", f"clickhouses://u:{SECRET}@127.0.0.1:{plain_http_server}/db", "current")
    assert result.exit_code == 3
    assert "TLS handshake with clickhouses://u:***@127.0.0.1" in result.stderr
    assert_one_clear_line(result.output)


@pytest.mark.skipif(
    not SERVER_URL, reason="logins and unknown databases need a server (K2_TEST_CLICKHOUSE_URL)"
)
def test_wrong_password_and_unknown_database(project: Project) -> None:
    from k2_migrations.config import parse_url

    target = parse_url(str(SERVER_URL))
    wrong = project.run(
        "--url", f"clickhouse://{target.username}:{SECRET}@{target.host}:{target.port}/default", "current"
    )
    assert wrong.exit_code == 3 and "refused the login" in wrong.stderr
    assert_one_clear_line(wrong.output)
    missing = project.run(
        "--url", f"clickhouse://{target.username}@{target.host}:{target.port}/nosuchdb", "current"
    )
    assert missing.exit_code == 2 and "database 'nosuchdb' does not exist" in missing.stderr


def test_unknown_ambiguous_and_out_of_range_revisions(project: Project) -> None:
    project.write_revision("abcd1", None, "pass", "pass")
    project.write_revision("abcd2", "abcd1", "pass", "pass")
    for args, fragment in [
        (("upgrade", "nosuch"), "No such revision or branch 'nosuch'"),
        (("upgrade", "abcd"), "Multiple revisions start with 'abcd'"),
        (("show", "zzz"), "unknown revision 'zzz'; k2-migrate history lists the revisions"),
        (("downgrade", "-5"), "cannot downgrade 5 revision(s) from base: it is at base"),
        (("plan", "nosuch"), "No such revision or branch 'nosuch'; k2-migrate history lists the revisions"),
    ]:
        result = project.run(*args, env={"K2_MIGRATE_PASSWORD": SECRET})
        assert result.exit_code == 2, (args, result.output)
        assert fragment in result.stderr, (args, result.stderr)
        assert_one_clear_line(result.output)


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"ra.py": "revision = 'a'\ndown_revision = None\ndef upgrade(:\n"}, "syntax error at line 3"),
        (
            {"ra.py": "revision = 'a'\n\ndef upgrade() -> None: ...\ndef downgrade() -> None: ...\n"},
            "no down_revision",
        ),
        (
            {"ra.py": "revision = 'a'\ndown_revision = None\ndef upgrade() -> None: ...\n"},
            "has no downgrade() function",
        ),
        (
            {
                "ra.py": "revision = 'a'\ndown_revision = 'b'\ndef upgrade() -> None: ...\ndef downgrade() -> None: ...\n",
                "rb.py": "revision = 'b'\ndown_revision = 'a'\ndef upgrade() -> None: ...\ndef downgrade() -> None: ...\n",
            },
            "Cycle is detected in revisions (a, b)",
        ),
        (
            {
                "ra.py": "revision = 'a'\ndown_revision = None\ndef upgrade() -> None: ...\ndef downgrade() -> None: ...\n",
                "rb.py": "revision = 'b'\ndown_revision = None\ndef upgrade() -> None: ...\ndef downgrade() -> None: ...\n",
            },
            "more than one head; join them with k2-migrate merge",
        ),
    ],
)
def test_malformed_revision_files(project: Project, files: dict[str, str], fragment: str) -> None:
    for name, text in files.items():
        (project.versions / name).write_text(text)
    result = project.run("upgrade", "head")
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr
    assert_one_clear_line(result.output)


def test_embedded_path_unusable(project: Project, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = project.run("--url", f"chdb://{blocker}/db", "current")
    assert (
        result.exit_code == 3 and f"cannot create the embedded data directory {blocker}/db" in result.stderr
    )
    assert_one_clear_line(result.output)


def test_embedded_path_held_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "held"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, clickhouse_connect; c = clickhouse_connect.get_client(dsn='chdb://"
            + str(path)
            + "');"
            " c.command('SELECT 1'); print('ready', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        done = k2_migrate(path, "upgrade", env={})
    finally:
        holder.communicate("")
    assert done.returncode == 3
    assert f"the embedded database {path} is in use by another process" in done.stderr
    assert_one_clear_line(done.stdout + done.stderr)


def test_failed_revision_stays_in_progress_then_resumes(project: Project, ch: Client) -> None:
    db = unique("app")
    upgrade = f"""
        op.create_database("{db}")
        op.create_object("{db}", "t", "CREATE TABLE {db}.t (id UInt64) ENGINE = MergeTree ORDER BY id")
        op.execute_sql("INSERT INTO {db}.t SELECT number FROM numbers(5)", done_when="SELECT count() > 0 FROM {db}.t")
        op.execute_sql("INSERT INTO {db}.nosuch VALUES (1)")
        op.create_object("{db}", "u", "CREATE TABLE {db}.u (id UInt64) ENGINE = MergeTree ORDER BY id")
    """
    downgrade = f"""
        op.drop_object("{db}", "u")
        op.drop_object("{db}", "t", allow_rows=True)
        op.drop_database("{db}")
    """
    project.write_revision("a1", None, upgrade, downgrade)
    failed = project.run("upgrade", "head", env={"K2_MIGRATE_PASSWORD": SECRET})
    assert failed.exit_code == 6
    assert (
        "step 4 of a1 (execute INSERT INTO" in failed.stderr
        and "the revision resumes at this step" in failed.stderr
    )
    assert_one_clear_line(failed.output)
    current = json.loads(project.run("current", "--json").stdout)
    assert current["current"] == [] and current["in_progress"]["revision"] == "a1"
    stamp = project.run("stamp", "a1")
    assert stamp.exit_code == 7 and "revision a1 is half-applied (an interrupted upgrade)" in stamp.stderr
    # Fix the failing statement; steps 1-3 are done and must not run again.
    project.write_revision(
        "a1", None, upgrade.replace(f"{db}.nosuch VALUES (1)", f"{db}.t VALUES (99)"), downgrade
    )
    resumed = project.run("upgrade", "head", "--json")
    assert resumed.exit_code == 0, resumed.output
    steps = json.loads(resumed.stdout)["revisions"][0]["steps"]
    assert [s["status"] for s in steps] == ["skipped", "skipped", "skipped", "done", "done"]
    assert scalar(ch, f"SELECT count() FROM {db}.t") == 6
    assert table_names(ch, db) == {"t", "u"}
    assert json.loads(project.run("current", "--json").stdout)["in_progress"] is None


def test_a_python_error_in_a_revision_names_the_file_and_line(project: Project, ch: Client) -> None:
    db = unique("app")
    upgrade = f"""
        op.create_database("{db}")
        tables = {{"t": 1}}
        op.create_object("{db}", tables["u"], "CREATE TABLE {db}.u (id UInt64) ENGINE = MergeTree ORDER BY id")
    """
    path = project.write_revision("a1", None, upgrade, f'op.drop_database("{db}")')
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if 'tables["u"]' in text)
    failed = project.run("upgrade", "head")
    assert failed.exit_code == 2
    assert f"revision a1 (versions/{path.name}, line {line}) raised KeyError: 'u'" in failed.stderr
    assert "a bug in k2-migrate" not in failed.stderr
    assert_one_clear_line(failed.output)
    assert json.loads(project.run("current", "--json").stdout)["in_progress"]["revision"] == "a1"
    project.write_revision("a1", None, upgrade.replace('tables["u"]', '"u"'), f'op.drop_database("{db}")')
    resumed = project.run("upgrade", "head", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert [s["status"] for s in json.loads(resumed.stdout)["revisions"][0]["steps"]] == ["skipped", "done"]
    assert table_names(ch, db) == {"u"}


def test_interrupted_upgrade_can_be_reverted_by_downgrade(project: Project, ch: Client) -> None:
    db = unique("app")
    project.write_revision(
        "a1",
        None,
        f"""
        op.create_database("{db}")
        op.create_object("{db}", "t", "CREATE TABLE {db}.t (id UInt64) ENGINE = MergeTree ORDER BY id")
        op.execute_sql("SELECT throwIf(1, 'boom')")
        """,
        f"""
        op.drop_object("{db}", "t")
        op.drop_database("{db}")
        """,
    )
    assert project.run("upgrade", "head").exit_code == 6
    assert table_names(ch, db) == {"t"}
    reverted = project.run("downgrade", "base", "--json")
    assert reverted.exit_code == 0, reverted.output
    document = json.loads(reverted.stdout)
    assert document["revisions"][0]["reverted"] is True
    assert db not in {str(r[0]) for r in ch.query("SELECT name FROM system.databases").result_rows}
    assert json.loads(project.run("current", "--json").stdout)["in_progress"] is None


def test_lock_held_by_a_live_run_is_refused(project: Project, ch: Client) -> None:
    """The server rule (on chDB a leftover lock is always stale, so the class is driven directly)."""
    db = project.migrations_database
    ch.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    holder_identity = Identity("ci", "migrator", socket.gethostname(), os.getpid(), "k2-migrate upgrade head")
    holder = MigrationLock(ch, db, holder_identity, embedded=False)
    holder.acquire()
    try:
        second = MigrationLock(
            ch, db, Identity("me", "migrator", "laptop", 1, "k2-migrate downgrade"), embedded=False
        )
        with pytest.raises(LockHeld) as caught:
            second.acquire(timeout_s=0.5)
        assert caught.value.exit_code == 4
        assert f"holds the lock on {db}: ci@{socket.gethostname()} pid {os.getpid()}" in caught.value.message
    finally:
        holder.release()
    assert holder.read() is None


def test_stale_lock_is_broken_and_reported(project: Project, ch: Client) -> None:
    db = project.migrations_database
    ch.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    dead = MigrationLock(
        ch, db, Identity("ci", "m", "gone-host", 99999, "k2-migrate upgrade"), embedded=False, expiry_s=0.0
    )
    dead.acquire()  # never released: its holder "died"
    project.write_revision("a1", None, "pass", "pass")
    result = project.run("upgrade", "head")
    assert result.exit_code == 0, result.output
    assert "broke a stale lock held by ci@gone-host pid 99999" in result.stdout


@pytest.mark.skipif(not SERVER_URL, reason="grants need a server (K2_TEST_CLICKHOUSE_URL)")
def test_a_missing_grant_is_named(project: Project, ch: Client) -> None:
    from k2_migrations.config import parse_url

    user = unique("nogrant")
    ch.command(f"CREATE USER {user} IDENTIFIED WITH plaintext_password BY '{SECRET}'")
    try:
        target = parse_url(str(SERVER_URL))
        project.write_revision("a1", None, "pass", "pass")
        result = project.run(
            "--url",
            f"clickhouse://{user}@{target.host}:{target.port}/default",
            "upgrade",
            env={"K2_MIGRATE_PASSWORD": SECRET},
        )
        assert result.exit_code == 3
        assert "the migration user may not create the migrations database" in result.stderr
        assert "CREATE DATABASE" in result.stderr
        assert_one_clear_line(result.output)
    finally:
        ch.command(f"DROP USER IF EXISTS {user}")


def test_heartbeat_keeps_a_lock_fresh_and_notices_when_it_is_broken(
    project: Project, ch: Client, target_url: str
) -> None:
    import time

    from k2_migrations.backends import open_backend
    from k2_migrations.config import parse_url

    db = project.migrations_database
    ch.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    backend = open_backend(parse_url(target_url))
    try:
        holder = MigrationLock(
            ch,
            db,
            Identity("ci", "m", socket.gethostname(), os.getpid(), "k2-migrate upgrade"),
            embedded=False,
            expiry_s=1.0,
            heartbeat_s=0.2,
            client_factory=backend.new_client,
        )
        holder.acquire()
        # Not a wait for a state: holding past the 1 s expiry IS the case, only the heartbeat keeps it fresh.
        time.sleep(1.5)
        state = holder.read()
        assert state is not None and state.heartbeat_age_s < 1.0 and not holder.is_stale(state)
        assert not holder.lost
        MigrationLock(ch, db, Identity("ops", "m", "h", 1, "unlock"), embedded=False).force_break()
        wait_until(lambda: holder.lost, 5, "the heartbeat to notice the broken lock")
        holder.release()
    finally:
        backend.close()


def test_an_interrupted_revert_is_finished_or_abandoned(project: Project, ch: Client) -> None:
    db = unique("app")

    def write(upgrade_ok: bool, downgrade_ok: bool) -> None:
        project.write_revision(
            "a1",
            None,
            f"""
            op.create_database("{db}")
            op.create_object("{db}", "t1", "CREATE TABLE {db}.t1 (id UInt64) ENGINE = MergeTree ORDER BY id")
            op.create_object("{db}", "t2", "CREATE TABLE {db}.t2 (id UInt64) ENGINE = MergeTree ORDER BY id")
            op.execute_sql("SELECT {"1" if upgrade_ok else "throwIf(1, 'up failed')"}")
            """,
            f"""
            op.drop_object("{db}", "t2")
            op.execute_sql("SELECT {"1" if downgrade_ok else "throwIf(1, 'down failed')"}")
            op.drop_object("{db}", "t1")
            op.drop_database("{db}")
            """,
        )

    write(upgrade_ok=False, downgrade_ok=False)
    assert project.run("upgrade", "head").exit_code == 6
    revert = project.run("downgrade", "base")
    assert revert.exit_code == 6 and "down failed" in revert.stderr
    assert table_names(ch, db) == {"t1"}  # half reverted
    state = json.loads(project.run("current", "--json").stdout)["in_progress"]
    assert (state["revision"], state["direction"]) == ("a1", "down")
    # The opposite command abandons the revert and runs the revision again from its first step.
    write(upgrade_ok=True, downgrade_ok=False)
    again = project.run("upgrade", "head", "--json")
    assert again.exit_code == 0, again.output
    assert table_names(ch, db) == {"t1", "t2"}
    assert json.loads(project.run("current", "--json").stdout)["current"] == ["a1"]
    # And a revert interrupted on the way down is finished by the same command.
    write(upgrade_ok=False, downgrade_ok=False)
    assert project.run("downgrade", "base").exit_code == 6  # a1's own downgrade, interrupted
    write(upgrade_ok=False, downgrade_ok=True)
    finished = project.run("downgrade", "base")
    assert finished.exit_code == 0, finished.output
    assert db not in {str(r[0]) for r in ch.query("SELECT name FROM system.databases").result_rows}
    assert json.loads(project.run("current", "--json").stdout) | {"url": ""} == {
        "ok": True,
        "url": "",
        "current": [],
        "head": "a1",
        "heads": ["a1"],
        "up_to_date": False,
        "in_progress": None,
    }
