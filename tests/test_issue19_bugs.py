"""The four bugs of issue 19, each through real ``k2-migrate`` processes on an embedded engine of its own.

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
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SERVER_URL
from tests.support import kill_harness
from tests.support.engine_query import query
from tests.support.kill_harness import ROOT, Revision, environment, write_project

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


def k2(root: Path, *args: str, kill_at: tuple[str, int] | None = None) -> kill_harness.Outcome:
    """One ``k2-migrate`` process on the project at ``root`` and its embedded database ``root/db``;
    killed (SIGKILL) as step ``kill_at = (revision, N)`` starts."""
    # The harness names the K2 project's alembic.ini; a second -c (the last one wins) names this one.
    return kill_harness.k2_migrate(
        root / "db", "-c", str(root / "alembic.ini"), *args, env={}, kill_at=kill_at, timeout_s=120
    )


def killed(root: Path, *args: str, at: tuple[str, int]) -> None:
    outcome = k2(root, *args, kill_at=at)
    assert outcome.killed and outcome.returncode == -signal.SIGKILL, outcome.stderr[-2000:]


def succeeds(root: Path, *args: str) -> kill_harness.Outcome:
    outcome = k2(root, *args)
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    return outcome


def state(root: Path) -> tuple[list[str], dict[str, Any] | None]:
    """The applied revisions and the interrupted attempt (revision, direction), as ``current --json`` says."""
    document = json.loads(succeeds(root, "current", "--json").stdout)
    attempt = document["in_progress"]
    return document["current"], None if attempt is None else {
        "revision": attempt["revision"],
        "direction": attempt["direction"],
    }


def schema(root: Path) -> tuple[dict[str, str], list[list[str]]]:
    """The tables of ``web`` (name: engine) and the columns of web.events, from system tables."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.live_schema", str(root / "db"), "k2_migrations"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=environment(),
    )
    live = json.loads(done.stdout)
    return live["tables"].get("web", {}), live["columns"].get("web.events", [])


def web_analytics(tmp_path: Path) -> Path:
    return write_project(tmp_path, REVISIONS)


# -- 1. revert, then continue ---------------------------------------------------------------------


def test_killed_upgrade_then_downgrade_reverts_it_and_goes_on_through_a_kill_of_its_own(
    tmp_path: Path,
) -> None:
    root = web_analytics(tmp_path)
    succeeds(root, "upgrade", "w2")
    killed(root, "upgrade", "head", at=("w3", 2))  # N = w3: its column added, its view not yet
    assert state(root) == (["w2"], {"revision": "w3", "direction": "up"})

    # The revert of w3, then w2's downgrade in the same run, killed in its turn (N-1 = w2).
    killed(root, "downgrade", "-1", at=("w2", 2))
    assert state(root) == (["w2"], {"revision": "w2", "direction": "down"})
    tables, columns = schema(root)
    assert "referrers" not in tables and "top_pages" not in tables and columns == EVENTS_COLUMNS

    succeeds(root, "downgrade", "-1")
    assert state(root) == (["w1"], None)
    assert schema(root) == (S1, EVENTS_COLUMNS)


def test_killed_downgrade_then_upgrade_reverts_it_and_goes_on_through_a_kill_of_its_own(
    tmp_path: Path,
) -> None:
    root = web_analytics(tmp_path)
    succeeds(root, "upgrade", "head")
    killed(root, "downgrade", "base", at=("w3", 2))  # w4 down done; N = w3: its view dropped, not its column
    assert state(root) == (["w3"], {"revision": "w3", "direction": "down"})

    # The revert of w3's downgrade, then w4's upgrade in the same run, killed in its turn.
    killed(root, "upgrade", "head", at=("w4", 2))
    assert state(root) == (["w3"], {"revision": "w4", "direction": "up"})
    tables, columns = schema(root)
    assert "referrers" in tables and columns == [*EVENTS_COLUMNS, ["referrer", "String"]]

    succeeds(root, "upgrade", "head")
    assert state(root) == (["w4"], None)
    assert schema(root) == (S4, [*EVENTS_COLUMNS, ["referrer", "String"]])


def test_the_in_progress_message_names_commands_that_resume_or_only_revert_an_upgrade(tmp_path: Path) -> None:
    root = web_analytics(tmp_path)
    succeeds(root, "upgrade", "w2")
    killed(root, "upgrade", "head", at=("w3", 2))
    outcome = succeeds(root, "current")
    message = outcome.stdout + outcome.stderr
    assert (
        "revision w3 is half-applied (an interrupted upgrade); run k2-migrate upgrade w3 to resume it, or "
        "k2-migrate downgrade w2 to revert it, before anything else"
    ) in message

    succeeds(root, "downgrade", "w2")  # revert only: w2 stays applied
    assert state(root) == (["w2"], None)
    assert schema(root) == (S2, EVENTS_COLUMNS)

    killed(root, "upgrade", "head", at=("w3", 2))
    succeeds(root, "upgrade", "w3")  # resume only: w4 is not applied
    assert state(root) == (["w3"], None)
    assert schema(root) == (S3, [*EVENTS_COLUMNS, ["referrer", "String"]])


def test_the_in_progress_message_names_commands_that_resume_or_only_revert_a_downgrade(
    tmp_path: Path,
) -> None:
    root = web_analytics(tmp_path)
    succeeds(root, "upgrade", "head")
    killed(root, "downgrade", "base", at=("w3", 2))
    outcome = succeeds(root, "current")
    message = outcome.stdout + outcome.stderr
    assert (
        "revision w3 is half-applied (an interrupted downgrade); run k2-migrate downgrade w2 to resume it, "
        "or k2-migrate upgrade w3 to revert it, before anything else"
    ) in message

    succeeds(root, "upgrade", "w3")  # revert only: w4 stays unapplied
    assert state(root) == (["w3"], None)
    assert schema(root) == (S3, [*EVENTS_COLUMNS, ["referrer", "String"]])

    killed(root, "downgrade", "base", at=("w3", 2))
    succeeds(root, "downgrade", "w2")  # resume only: w2 stays applied
    assert state(root) == (["w2"], None)
    assert schema(root) == (S2, EVENTS_COLUMNS)


def test_an_interrupted_revert_names_the_commands_that_finish_it_or_run_the_revision_again(
    tmp_path: Path,
) -> None:
    root = web_analytics(tmp_path)
    succeeds(root, "upgrade", "w2")
    killed(root, "upgrade", "head", at=("w3", 2))
    killed(root, "downgrade", "w2", at=("w3", 2))  # the revert of w3 (its downgrade), killed in turn
    outcome = succeeds(root, "current")
    message = outcome.stdout + outcome.stderr
    assert (
        "revision w3 is half-applied (an interrupted revert of its upgrade); run k2-migrate downgrade w2 to "
        "finish the revert, or k2-migrate upgrade w3 to run its upgrade again from its first step"
    ) in message
    succeeds(root, "downgrade", "w2")
    assert state(root) == (["w2"], None)
    assert schema(root) == (S2, EVENTS_COLUMNS)


def test_for_a_merge_the_message_names_a_parent_whose_downgrade_only_reverts_it(tmp_path: Path) -> None:
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
    root = write_project(tmp_path, merge)
    succeeds(root, "upgrade", "w2a")
    succeeds(root, "upgrade", "w2b")
    killed(root, "upgrade", "head", at=("w3", 2))
    outcome = succeeds(root, "current")
    assert (
        "run k2-migrate upgrade w3 to resume it, or k2-migrate downgrade w2a to revert it" in outcome.stdout
    )

    succeeds(root, "downgrade", "w2a")
    assert state(root) == (["w2a", "w2b"], None)
    assert schema(root)[0] == {**S1, "pages": "View", "sessions": "MergeTree"}


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


@pytest.mark.parametrize(("what", "call"), SEVERAL, ids=[w for w, _ in SEVERAL])
def test_several_statements_in_one_request_are_refused_on_the_embedded_engine_too(
    tmp_path: Path, what: str, call: str
) -> None:
    root = write_project(tmp_path, [REVISIONS[0], ("w2", "w1", call, "pass")])
    succeeds(root, "upgrade", "w1")

    for command in (("plan", "head"), ("upgrade", "head")):
        refused = k2(root, *command)
        assert refused.returncode == 2, refused.stderr[-2000:]
        errors = [line for line in refused.stderr.splitlines() if line.startswith("k2-migrate: error:")]
        assert len(errors) == 1 and f"{what} holds 2 statements" in errors[0], refused.stderr[-2000:]
        assert "op.run_sql_file" in errors[0] and "Traceback" not in refused.stderr
    assert state(root)[0] == ["w1"]
    assert query(root / "db", "SELECT count() FROM web.events") == [[1000]]  # nothing ran


def test_a_semicolon_inside_a_literal_or_a_comment_is_one_statement(tmp_path: Path) -> None:
    insert = "INSERT INTO web.events SELECT now(), 'a;b', 1 -- one; row"
    call = f"op.execute_sql({insert!r}, done_when=\"SELECT count() = 1 FROM web.events WHERE page = 'a;b'\")"
    root = write_project(tmp_path, [REVISIONS[0], ("w2", "w1", call, "pass")])
    succeeds(root, "upgrade", "head")
    assert query(root / "db", "SELECT count() FROM web.events WHERE page = 'a;b'") == [[1]]


# -- 3. execute_sql's done_when: shown, and checked after --------------------------------------


def test_plan_and_sql_show_execute_sql_done_when(tmp_path: Path) -> None:
    root = web_analytics(tmp_path)
    check = "SELECT count() = 1000 FROM web.events"
    plan = succeeds(root, "plan", "w1", "--json")
    steps = json.loads(plan.stdout)["revisions"][0]["steps"]
    fill = next(s for s in steps if s["operation"].startswith("execute INSERT"))
    assert f"-- skipped when, and verified after by: {check}" in fill["sql"]
    assert fill["guards"] == [f"verified by: {check}"]
    script = succeeds(root, "upgrade", "--sql", "w1").stdout
    shown = re.escape(f"{FILL};") + r"\s*" + re.escape(f"-- skipped when, and verified after by: {check}\n")
    assert re.search(shown, script), script


def test_a_done_when_still_false_after_its_statement_fails_the_step(tmp_path: Path) -> None:
    never = "op.execute_sql(\"INSERT INTO web.events VALUES (now(), 'x', 1)\", done_when='SELECT 0')"
    root = write_project(tmp_path, [REVISIONS[0], ("w2", "w1", never, "pass")])
    succeeds(root, "upgrade", "w1")
    failed = k2(root, "upgrade", "head")
    assert failed.returncode == 6, failed.stderr[-2000:]
    assert (
        "k2-migrate: error: execute INSERT INTO web.events VALUES (now(), 'x', 1) ran, but its done_when is "
        "still false: SELECT 0; fix the done_when"
    ) in failed.stderr
    assert state(root) == (["w1"], {"revision": "w2", "direction": "up"})
    assert query(root / "db", "SELECT count() FROM web.events WHERE page = 'x'") == [[1]]  # ran once


# -- 4. check names the real database --------------------------------------------------------------


def test_check_names_the_real_database_in_drift(tmp_path: Path) -> None:
    root = web_analytics(tmp_path)
    succeeds(root, "upgrade", "w2")
    assert "no drift" in succeeds(root, "check").stdout
    # By hand: the materialized view now reads another table, and the view's query changed.
    query(
        root / "db",
        "CREATE TABLE web.events_copy AS web.events",
        "DROP VIEW web.daily_pages_mv",
        DAILY_MV.replace("FROM web.events", "FROM web.events_copy"),
        "DROP VIEW web.top_pages",
        TOP_PAGES.replace("GROUP BY page", "GROUP BY page HAVING views > 1"),
        "SELECT 1",
    )
    drift = k2(root, "check")
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
