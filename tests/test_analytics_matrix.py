"""move_table, drop_objects and adopt_objects on the analytics schema (not K2): upgrade, a no-op
rerun, downgrade, upgrade; then a kill at each step up and down, and in the middle of the partition
copy, through real processes. Every result is read back from system tables and row counts.

The revision moves the rollup ``daily`` out of ``web`` into chDB's Overlay ``default`` (the partition
route: ``CREATE ... AS``, ``ATTACH PARTITION ALL FROM``, drop the source) under a guard, re-creating
the views around it: ``daily_mv`` (its ``TO`` target moved) and the plain view ``recent``, dropped
together by ``drop_objects``. ``adopt_objects`` then adopts ``sites`` as it exists and creates
``sessions``. The downgrade undoes each (the move back is a RENAME: out of ``default`` works).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SERVER_URL
from tests.support import analytics
from tests.support.engine_query import query
from tests.support.kill_harness import Forker

pytestmark = pytest.mark.skipif(bool(SERVER_URL), reason="kills embedded-engine processes")

ROWS = 2_000
DAILY_MV = (
    "CREATE MATERIALIZED VIEW web.daily_mv TO default.daily AS SELECT toDate(ts) AS day, site, countState() AS views,"
    " uniqState(id) AS visitors FROM web.events GROUP BY day, site"
)
SITES = "CREATE TABLE web.sites (site String, owner String) ENGINE = MergeTree ORDER BY site"
SESSIONS = "CREATE TABLE web.sessions (id UInt64, started DateTime) ENGINE = MergeTree ORDER BY id"
UP = [
    'op.capture_definition("web", "daily_mv", "recent")',
    'op.drop_objects("web", ["recent", "daily_mv"])',
    'op.take_guards("move", ["web.daily"], relocate={"web": "default"})',
    'op.move_table("web", "daily", "default")',
    'op.check_guards("move")',
    f'op.create_object("web", "daily_mv", "{DAILY_MV}")',
    'op.restore_definition("web.recent")',
    f'op.adopt_objects("web", [("sites", "{SITES}"), ("sessions", "{SESSIONS}")])',
]
DOWN = [
    'op.drop_object("web", "sessions")',
    'op.drop_objects("web", ["recent", "daily_mv"])',
    'op.move_table("default", "daily", "web")',
    'op.restore_definition("web.daily_mv", captured_in="m1")',
    'op.restore_definition("web.recent", captured_in="m1")',
]
#: Every object of both databases with its engine and, for a view, where it writes; the rows of the
#: rollup wherever it is, of the events, and of the views over them; any scratch database left.
STATE = (
    "SELECT (SELECT groupArray((database, name, engine, arrayStringConcat(extractAll(create_table_query,"
    " ' TO [a-z_.]+')))) FROM (SELECT * FROM system.tables WHERE database IN ('web', 'default')"
    " AND NOT startsWith(name, '.inner') ORDER BY database, name)),"
    " (SELECT count() FROM web.events),"
    " (SELECT countMerge(views) FROM merge(REGEXP('^(web|default)$'), '^daily$')),"
    " (SELECT sum(views) FROM web.by_country_mv),"
    " (SELECT count() FROM web.recent),"
    " (SELECT count() FROM system.databases WHERE startsWith(name, 'k2_migrations_scratch'))"
)


def _project(root: Path) -> Path:
    (root / "versions").mkdir(parents=True)
    ini = root / "alembic.ini"
    ini.write_text(
        "[alembic]\nscript_location = k2_migrations:alembic_env\nversion_locations = %(here)s/versions\n"
    )
    (root / "versions" / "m1.py").write_text(
        '"""m1"""\nfrom alembic import op\n\nrevision = "m1"\ndown_revision = None\n'
        "branch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade() -> None:\n" + "".join(f"    {line}\n" for line in UP) + "\n\n"
        "def downgrade() -> None:\n" + "".join(f"    {line}\n" for line in DOWN)
    )
    return ini


def _engine(tmp_path: Path) -> tuple[Path, Path, list[list[Any]]]:
    """A project, its engine holding the analytics schema in ``web``, and that engine's state."""
    ini, path = _project(tmp_path / "project"), tmp_path / "db"
    query(path, *analytics.create_statements("web", ROWS), "SELECT 1")
    return ini, path, query(path, STATE)


def _upgraded(state: list[list[Any]]) -> None:
    """What the upgrade leaves: daily in default (all its rows), the views re-created writing there,
    sessions created, sites adopted as it was, nothing else; no scratch database."""
    objects, events, daily, by_country, recent, scratch = state[0]
    assert [tuple(o) for o in objects] == [
        ("default", "daily", "AggregatingMergeTree", ""),
        ("web", "by_country_mv", "MaterializedView", ""),
        ("web", "daily_mv", "MaterializedView", " TO default.daily"),
        ("web", "events", "MergeTree", ""),
        ("web", "recent", "View", ""),
        ("web", "sessions", "MergeTree", ""),
        ("web", "sites", "MergeTree", ""),
        ("web", "sites_dict", "Dictionary", ""),
    ], objects
    assert (int(str(events)), int(str(daily)), int(str(by_country)), int(str(scratch))) == (
        ROWS,
        ROWS,
        ROWS,
        0,
    )
    assert int(str(recent)) == 0  # rows from 2026-10: a day old long ago


def _run(forker: Forker, path: Path, ini: Path, *args: str, **env: str) -> str:
    done = forker.run(path, "-c", str(ini), *args, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def _current(forker: Forker, path: Path, ini: Path) -> tuple[list[str], object]:
    found = json.loads(forker.run(path, "-c", str(ini), "current", "--json", env={}).stdout)
    return found["current"], found["in_progress"]


def test_upgrade_rerun_downgrade_upgrade(forker: Forker, tmp_path: Path) -> None:
    ini, path, original = _engine(tmp_path)
    up = _run(forker, path, ini, "upgrade", "head")
    assert "by partitions" in up and "2 created" not in up and "1 adopted, 1 created" in up, up
    _upgraded(query(path, STATE))
    # The re-created view writes to the moved rollup: rows inserted now reach it.
    after = query(path, analytics.create_statements("web", 0)[-1].replace("numbers(0)", "numbers(7)"), STATE)
    assert after[0][1:4] == [ROWS + 7, ROWS + 7, ROWS + 7], after
    again = _run(forker, path, ini, "upgrade", "head")
    assert "Nothing to do" in again or "already" in again, again
    assert query(path, STATE) == after
    _run(forker, path, ini, "downgrade", "base")
    back = query(path, STATE)
    assert back[0][0] == original[0][0] and back[0][1:4] == [ROWS + 7] * 3, back
    _run(forker, path, ini, "upgrade", "head")
    assert query(path, STATE)[0][1:] == after[0][1:] and _current(forker, path, ini) == (["m1"], None)


@pytest.mark.slow  # 35-55 s of real processes: with the rest the file passes a minute on this machine
def test_killed_at_each_step_up_and_down_and_mid_copy_converges(forker: Forker, tmp_path: Path) -> None:
    ini, path, original = _engine(tmp_path)
    for command, steps in ((("upgrade", "head"), len(UP)), (("downgrade", "base"), len(DOWN))):
        # Each run is killed as step k starts; the next resumes at k (done) and dies at k + 1.
        for step in range(1, steps + 1):
            outcome = forker.run(path, "-c", str(ini), *command, env={}, kill_at=("m1", step))
            assert outcome.killed and outcome.returncode == -signal.SIGKILL, (
                step,
                outcome.stderr[-2000:],
            )
        _run(forker, path, ini, *command)
        if command[0] == "upgrade":
            _upgraded(query(path, STATE))
            assert _current(forker, path, ini) == (["m1"], None)
    assert query(path, STATE) == original and _current(forker, path, ini) == ([], None)
    # Mid-copy: the copy created and its partitions attached, the source not yet dropped.
    copy = forker.run(path, "-c", str(ini), "upgrade", "head", env={"K2_MIGRATE_FAILPOINT": "move-attached"})
    assert copy.returncode == -signal.SIGKILL, copy.stderr[-2000:]
    both = query(path, "SELECT groupArray(database) FROM system.tables WHERE name = 'daily'")
    assert sorted(both[0][0]) == ["default", "web"]
    assert "by partitions" in _run(forker, path, ini, "upgrade", "head")
    _upgraded(query(path, STATE))
    assert _current(forker, path, ini) == (["m1"], None)
