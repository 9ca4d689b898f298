"""The four bugs of issue 19, each through real ``k2-migrate`` processes on an embedded engine of its own
(forked by the session's :class:`~tests.support.kill_harness.Forker`, imports paid once).

The schema is a small web-analytics one, not K2's: page views in a MergeTree table, a TO
materialized view summing them per day into an AggregatingMergeTree, plain views over both.
Revisions w1..w4 build it up; each has several steps, so a kill at step 2 leaves it half-applied.
What each run left is read back from the engine: ``k2-migrate current --json`` for the version
state and :mod:`tests.support.live_schema` (system tables, in a process of its own) for the schema.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import SERVER_URL, Project, scalar, unique
from tests.support.engine_query import query
from tests.support.kill_harness import (
    ROOT,
    Forker,
    Outcome,
    Revision,
    environment,
    write_project,
    write_revisions,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

pytestmark = pytest.mark.skipif(bool(SERVER_URL), reason="each case runs on an embedded engine of its own")

EVENTS = "CREATE TABLE web.events (ts DateTime, page String, user_id UInt64) ENGINE = MergeTree ORDER BY (page, ts)"
DAILY = (
    "CREATE TABLE web.daily_pages (day Date, page String, views AggregateFunction(count),"
    " users AggregateFunction(uniq, UInt64)) ENGINE = AggregatingMergeTree ORDER BY (day, page)"
)
DAILY_MV = (
    "CREATE MATERIALIZED VIEW web.daily_pages_mv TO web.daily_pages AS SELECT toDate(ts) AS day, page,"
    " countState() AS views, uniqState(user_id) AS users FROM web.events GROUP BY day, page"
)
TOP_PAGES = (
    "CREATE VIEW web.top_pages AS SELECT page, countMerge(views) AS views FROM web.daily_pages GROUP BY page"
)
REFERRERS = "CREATE VIEW web.referrers AS SELECT referrer, count() AS hits FROM web.events GROUP BY referrer"
PAGES = "CREATE VIEW web.pages AS SELECT page, count() AS hits FROM web.events GROUP BY page"
SESSIONS = "CREATE TABLE web.sessions (user_id UInt64, started DateTime) ENGINE = MergeTree ORDER BY user_id"
ACTIVE = "CREATE VIEW web.active_sessions AS SELECT user_id FROM web.sessions WHERE started > now() - 3600"
FILL = (
    "INSERT INTO web.events SELECT toDateTime('2026-01-01 00:00:00') + number, 'page' || toString(number % 7),"
    " number % 13 FROM numbers(1000)"
)

REVISIONS: list[Revision] = [
    (
        "w1",
        None,
        f"op.create_database('web')\n    op.create_object('web', 'events', {EVENTS!r})\n"
        f"    op.execute_sql({FILL!r}, done_when='SELECT count() = 1000 FROM web.events')",
        "op.drop_object('web', 'events', allow_rows=True)\n    op.drop_database('web')",
    ),
    (
        "w2",
        "w1",
        f"op.create_object('web', 'daily_pages', {DAILY!r})\n"
        f"    op.create_object('web', 'daily_pages_mv', {DAILY_MV!r})\n"
        f"    op.create_object('web', 'top_pages', {TOP_PAGES!r})",
        "op.drop_object('web', 'top_pages')\n    op.drop_object('web', 'daily_pages_mv')\n"
        "    op.drop_object('web', 'daily_pages', allow_rows=True)",
    ),
    (
        "w3",
        "w2",
        "op.add_column_if_missing('web', 'events', 'referrer', 'String')\n"
        f"    op.create_object('web', 'referrers', {REFERRERS!r})",
        "op.drop_object('web', 'referrers')\n    op.drop_column_if_exists('web', 'events', 'referrer')",
    ),
    (
        "w4",
        "w3",
        f"op.create_object('web', 'sessions', {SESSIONS!r})\n    op.create_object('web', 'active_sessions', {ACTIVE!r})",
        "op.drop_object('web', 'active_sessions')\n    op.drop_object('web', 'sessions', allow_rows=True)",
    ),
]

#: The tables of ``web`` (name: engine) each revision leaves.
S1 = {"events": "MergeTree"}
S2 = {**S1, "daily_pages": "AggregatingMergeTree", "daily_pages_mv": "MaterializedView", "top_pages": "View"}
S3 = {**S2, "referrers": "View"}
S4 = {**S3, "sessions": "MergeTree", "active_sessions": "View"}
EVENTS_COLUMNS = [["ts", "DateTime"], ["page", "String"], ["user_id", "UInt64"]]


@dataclass
class Web:
    """A project at ``root`` and its embedded database ``root/db``; each command a process of its own."""

    root: Path
    forker: Forker

    def k2(self, *args: str, kill_at: tuple[str, int] | None = None) -> Outcome:
        """One ``k2-migrate`` process, killed (SIGKILL) as step ``kill_at = (revision, N)`` starts."""
        # The harness names the K2 project's alembic.ini; a second -c (the last one wins) names this one.
        ini = ("-c", str(self.root / "alembic.ini"))
        return self.forker.run(self.root / "db", *ini, *args, env={}, kill_at=kill_at, timeout_s=120)

    def killed(self, *args: str, at: tuple[str, int]) -> None:
        outcome = self.k2(*args, kill_at=at)
        assert outcome.killed and outcome.returncode == -signal.SIGKILL, outcome.stderr[-2000:]

    def succeeds(self, *args: str) -> Outcome:
        outcome = self.k2(*args)
        assert outcome.returncode == 0, outcome.stderr[-2000:]
        return outcome

    def state(self) -> tuple[list[str], dict[str, Any] | None]:
        """The applied revisions and the interrupted attempt (revision, direction), as ``current --json`` says."""
        document = json.loads(self.succeeds("current", "--json").stdout)
        attempt = document["in_progress"]
        return document["current"], None if attempt is None else {
            "revision": attempt["revision"],
            "direction": attempt["direction"],
        }

    def schema(self) -> tuple[dict[str, str], list[list[str]]]:
        """The tables of ``web`` (name: engine) and the columns of web.events, from system tables."""
        done = subprocess.run(
            [sys.executable, "-m", "tests.support.live_schema", str(self.root / "db"), "k2_migrations"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env=environment(),
        )
        live = json.loads(done.stdout)
        return live["tables"].get("web", {}), live["columns"].get("web.events", [])

    def query(self, sql: str) -> list[list[Any]]:
        return query(self.root / "db", sql)


@pytest.fixture
def web(tmp_path: Path, forker: Forker) -> Callable[[list[Revision]], Web]:
    """Write the project of the given revisions; its runs."""
    return lambda revisions: Web(write_project(tmp_path, revisions), forker)


# -- 1. revert, then continue ---------------------------------------------------------------------


def test_killed_upgrade_then_downgrade_reverts_it_and_goes_on_through_a_kill_of_its_own(
    web: Callable[[list[Revision]], Web],
) -> None:
    site = web(REVISIONS)
    site.succeeds("upgrade", "w2")
    site.killed("upgrade", "head", at=("w3", 2))  # N = w3: its column added, its view not yet
    assert site.state() == (["w2"], {"revision": "w3", "direction": "up"})

    # The revert of w3, then w2's downgrade in the same run, killed in its turn (N-1 = w2).
    site.killed("downgrade", "-1", at=("w2", 2))
    assert site.state() == (["w2"], {"revision": "w2", "direction": "down"})
    tables, columns = site.schema()
    assert "referrers" not in tables and "top_pages" not in tables and columns == EVENTS_COLUMNS

    site.succeeds("downgrade", "-1")
    assert site.state() == (["w1"], None)
    assert site.schema() == (S1, EVENTS_COLUMNS)


def test_killed_downgrade_then_upgrade_reverts_it_and_goes_on_through_a_kill_of_its_own(
    web: Callable[[list[Revision]], Web],
) -> None:
    site = web(REVISIONS)
    site.succeeds("upgrade", "head")
    site.killed("downgrade", "base", at=("w3", 2))  # w4 down done; N = w3: its view dropped, not its column
    assert site.state() == (["w3"], {"revision": "w3", "direction": "down"})

    # The revert of w3's downgrade, then w4's upgrade in the same run, killed in its turn.
    site.killed("upgrade", "head", at=("w4", 2))
    assert site.state() == (["w3"], {"revision": "w4", "direction": "up"})
    tables, columns = site.schema()
    assert "referrers" in tables and columns == [*EVENTS_COLUMNS, ["referrer", "String"]]

    site.succeeds("upgrade", "head")
    assert site.state() == (["w4"], None)
    assert site.schema() == (S4, [*EVENTS_COLUMNS, ["referrer", "String"]])


def test_the_in_progress_message_names_commands_that_resume_or_only_revert_an_upgrade(
    web: Callable[[list[Revision]], Web],
) -> None:
    site = web(REVISIONS)
    site.succeeds("upgrade", "w2")
    site.killed("upgrade", "head", at=("w3", 2))
    outcome = site.succeeds("current")
    message = outcome.stdout + outcome.stderr
    assert (
        "revision w3 is half-applied (an interrupted upgrade); run k2-migrate upgrade w3 to resume it, or "
        "k2-migrate downgrade w2 to revert it, before anything else"
    ) in message

    site.succeeds("downgrade", "w2")  # revert only: w2 stays applied
    assert site.state() == (["w2"], None)
    assert site.schema() == (S2, EVENTS_COLUMNS)

    site.killed("upgrade", "head", at=("w3", 2))
    site.succeeds("upgrade", "w3")  # resume only: w4 is not applied
    assert site.state() == (["w3"], None)
    assert site.schema() == (S3, [*EVENTS_COLUMNS, ["referrer", "String"]])


def test_the_in_progress_message_names_commands_that_resume_or_only_revert_a_downgrade(
    web: Callable[[list[Revision]], Web],
) -> None:
    site = web(REVISIONS)
    site.succeeds("upgrade", "head")
    site.killed("downgrade", "base", at=("w3", 2))
    outcome = site.succeeds("current")
    message = outcome.stdout + outcome.stderr
    assert (
        "revision w3 is half-applied (an interrupted downgrade); run k2-migrate downgrade w2 to resume it, "
        "or k2-migrate upgrade w3 to revert it, before anything else"
    ) in message

    site.succeeds("upgrade", "w3")  # revert only: w4 stays unapplied
    assert site.state() == (["w3"], None)
    assert site.schema() == (S3, [*EVENTS_COLUMNS, ["referrer", "String"]])

    site.killed("downgrade", "base", at=("w3", 2))
    site.succeeds("downgrade", "w2")  # resume only: w2 stays applied
    assert site.state() == (["w2"], None)
    assert site.schema() == (S2, EVENTS_COLUMNS)


def test_an_interrupted_revert_names_the_commands_that_finish_it_or_run_the_revision_again(
    web: Callable[[list[Revision]], Web],
) -> None:
    site = web(REVISIONS)
    site.succeeds("upgrade", "w2")
    site.killed("upgrade", "head", at=("w3", 2))
    site.killed("downgrade", "w2", at=("w3", 2))  # the revert of w3 (its downgrade), killed in turn
    outcome = site.succeeds("current")
    message = outcome.stdout + outcome.stderr
    assert (
        "revision w3 is half-applied (an interrupted revert of its upgrade); run k2-migrate downgrade w2 to "
        "finish the revert, or k2-migrate upgrade w3 to run its upgrade again from its first step"
    ) in message
    site.succeeds("downgrade", "w2")
    assert site.state() == (["w2"], None)
    assert site.schema() == (S2, EVENTS_COLUMNS)


def test_for_a_merge_the_message_names_a_parent_whose_downgrade_only_reverts_it(
    web: Callable[[list[Revision]], Web],
) -> None:
    merge: list[Revision] = [
        REVISIONS[0],
        (
            "w2a",
            "w1",
            f"op.create_object('web', 'pages', {PAGES!r})",
            "pass",
        ),
        ("w2b", "w1", f"op.create_object('web', 'sessions', {SESSIONS!r})", "pass"),
        (
            "w3",
            ("w2a", "w2b"),
            f"op.create_object('web', 'daily_pages', {DAILY!r})\n    op.create_object('web', 'top_pages', {TOP_PAGES!r})",
            "op.drop_object('web', 'top_pages')\n    op.drop_object('web', 'daily_pages', allow_rows=True)",
        ),
    ]
    site = web(merge)
    site.succeeds("upgrade", "w2a")
    site.succeeds("upgrade", "w2b")
    site.killed("upgrade", "head", at=("w3", 2))
    outcome = site.succeeds("current")
    assert (
        "run k2-migrate upgrade w3 to resume it, or k2-migrate downgrade w2a to revert it" in outcome.stdout
    )

    site.succeeds("downgrade", "w2a")
    assert site.state() == (["w2a", "w2b"], None)
    assert site.schema()[0] == {**S1, "pages": "View", "sessions": "MergeTree"}


# -- 2. several statements in one request --------------------------------------------------------

SEVERAL = [
    ("op.execute_sql", "op.execute_sql('INSERT INTO web.events VALUES (now(), \\'a\\', 1); SELECT 1')"),
    (
        "op.execute_sql's done_when",
        "op.execute_sql('SELECT 1', done_when='SELECT 1; SELECT 2')",
    ),
    (
        "op.run_mutation's done_when on web.events",
        "op.run_mutation('web', 'events', 'DELETE WHERE user_id = 1', done_when='SELECT 1; SELECT 1')",
    ),
    (
        "op.run_mutation's command on web.events",
        "op.run_mutation('web', 'events', 'DELETE WHERE user_id = 1; DROP TABLE web.events')",
    ),
    ("op.verify('pages')", "op.verify('pages', 'SELECT 0; SELECT 0')"),
]


def on_database(revisions: list[Revision], db: str) -> list[Revision]:
    """The same revisions on the database ``db`` instead of ``web``."""
    return [
        (rev, down, re.sub(r"\bweb\b", db, up), re.sub(r"\bweb\b", db, back))
        for rev, down, up, back in revisions
    ]


def refused_in_one_line(exit_code: int, stderr: str, what: str) -> None:
    assert exit_code == 2, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("k2-migrate: error:")]
    assert len(errors) == 1 and f"{what} holds 2 statements" in errors[0], stderr[-2000:]
    assert "op.run_sql_file" in errors[0] and "Traceback" not in stderr


@pytest.mark.parametrize(("what", "call"), SEVERAL, ids=[w for w, _ in SEVERAL])
def test_several_statements_in_one_request_are_refused_on_the_embedded_engine_too(
    project: Project, ch: Client, what: str, call: str
) -> None:
    """Each operation's own check, in-process on the shared embedded engine (a database of its own, the
    same revisions); the real process's exit code and message: the test after this one."""
    db = unique("web")
    write_revisions(project.versions, on_database([REVISIONS[0], ("w2", "w1", call, "pass")], db))
    assert project.run("upgrade", "w1").exit_code == 0

    for command in (("plan", "head"), ("upgrade", "head")):
        refused = project.run(*command)
        refused_in_one_line(refused.exit_code, refused.stderr, re.sub(r"\bweb\b", db, what))
    assert json.loads(project.run("current", "--json").stdout)["current"] == ["w1"]
    assert scalar(ch, f"SELECT count() FROM {db}.events") == 1000  # nothing ran


def test_several_statements_in_one_request_are_refused_by_a_real_process(
    web: Callable[[list[Revision]], Web],
) -> None:
    what, call = SEVERAL[0]
    site = web([REVISIONS[0], ("w2", "w1", call, "pass")])
    site.succeeds("upgrade", "w1")

    for command in (("plan", "head"), ("upgrade", "head")):
        refused = site.k2(*command)
        refused_in_one_line(refused.returncode, refused.stderr, what)
    assert site.state()[0] == ["w1"]
    assert site.query("SELECT count() FROM web.events") == [[1000]]  # nothing ran


def test_a_semicolon_inside_a_literal_or_a_comment_is_one_statement(
    web: Callable[[list[Revision]], Web],
) -> None:
    insert = "INSERT INTO web.events SELECT now(), 'a;b', 1 -- one; row"
    call = f"op.execute_sql({insert!r}, done_when=\"SELECT count() = 1 FROM web.events WHERE page = 'a;b'\")"
    site = web([REVISIONS[0], ("w2", "w1", call, "pass")])
    site.succeeds("upgrade", "head")
    assert site.query("SELECT count() FROM web.events WHERE page = 'a;b'") == [[1]]


# -- 3. execute_sql's done_when: shown, and checked after --------------------------------------


def test_plan_and_sql_show_execute_sql_done_when(web: Callable[[list[Revision]], Web]) -> None:
    site = web(REVISIONS)
    check = "SELECT count() = 1000 FROM web.events"
    plan = site.succeeds("plan", "w1", "--json")
    steps = json.loads(plan.stdout)["revisions"][0]["steps"]
    fill = next(s for s in steps if s["operation"].startswith("execute INSERT"))
    assert f"-- skipped when, and verified after by: {check}" in fill["sql"]
    assert fill["guards"] == [f"verified by: {check}"]
    script = site.succeeds("upgrade", "--sql", "w1").stdout
    shown = re.escape(f"{FILL};") + r"\s*" + re.escape(f"-- skipped when, and verified after by: {check}\n")
    assert re.search(shown, script), script


def test_a_done_when_still_false_after_its_statement_fails_the_step(
    web: Callable[[list[Revision]], Web],
) -> None:
    never = "op.execute_sql(\"INSERT INTO web.events VALUES (now(), 'x', 1)\", done_when='SELECT 0')"
    site = web([REVISIONS[0], ("w2", "w1", never, "pass")])
    site.succeeds("upgrade", "w1")
    failed = site.k2("upgrade", "head")
    assert failed.returncode == 6, failed.stderr[-2000:]
    assert (
        "k2-migrate: error: execute INSERT INTO web.events VALUES (now(), 'x', 1) ran, but its done_when is "
        "still false: SELECT 0; fix the done_when"
    ) in failed.stderr
    assert site.state() == (["w1"], {"revision": "w2", "direction": "up"})
    assert site.query("SELECT count() FROM web.events WHERE page = 'x'") == [[1]]  # ran once


# -- 4. check names the real database --------------------------------------------------------------


def test_check_names_the_real_database_in_drift(web: Callable[[list[Revision]], Web]) -> None:
    site = web(REVISIONS)
    site.succeeds("upgrade", "w2")
    assert "no drift" in site.succeeds("check").stdout
    # By hand: the materialized view now reads another table, and the view's query changed.
    query(
        site.root / "db",
        "CREATE TABLE web.events_copy AS web.events",
        "DROP VIEW web.daily_pages_mv",
        DAILY_MV.replace("FROM web.events", "FROM web.events_copy"),
        "DROP VIEW web.top_pages",
        TOP_PAGES.replace("GROUP BY page", "GROUP BY page HAVING views > 1"),
        "SELECT 1",
    )
    drift = site.k2("check")
    assert drift.returncode == 8, drift.stderr[-2000:]
    assert "home_database" not in drift.stdout + drift.stderr
    lines = drift.stdout.splitlines()
    assert "drift: web.daily_pages_mv view source: expected (web.events), found (web.events_copy)" in lines
    assert "drift: web.events_copy object: expected absent, found present" in lines
    assert any(
        line.startswith(
            "drift: web.top_pages view query: expected 'SELECT page, countMerge(views) AS views FROM web.daily_pages"
        )
        and "found 'SELECT page, countMerge(views) AS views FROM web.daily_pages GROUP BY page HAVING" in line
        for line in lines
    ), lines
