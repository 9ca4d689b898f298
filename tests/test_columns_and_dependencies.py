"""Column, TTL, index and projection operations, and the views that depend on what they change, on the
analytics schema (not K2): upgrade, a no-op rerun, downgrade, upgrade, every result read back from
system tables; a kill at each step and while a MATERIALIZE runs, through real processes."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k2_migrations.decisions.columns import (
    Change,
    ColumnDefinition,
    Materialized,
    MutationRow,
    column_change,
    materialized,
    mutation_number,
)
from tests.conftest import SERVER_URL, Project, scalar, unique
from tests.support import analytics
from tests.support.engine_query import query
from tests.support.kill_harness import Forker

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


def column(ch: Client, db: str, name: str) -> tuple[str, ...]:
    rows = ch.query(
        "SELECT type, default_expression, compression_codec, comment FROM system.columns"
        " WHERE database = {d:String} AND table = 'events' AND name = {n:String}",
        parameters={"d": db, "n": name},
    ).result_rows
    return tuple(str(v) for v in rows[0]) if rows else ()


def mutations(ch: Client, db: str, command: str) -> int:
    """How many mutations on ``db`` whose command starts with ``command``."""
    rows = ch.query(
        "SELECT count() FROM system.mutations WHERE database = {d:String} AND startsWith(command, {c:String})",
        parameters={"d": db, "c": command},
    ).result_rows
    return int(rows[0][0])


def test_modify_column_changes_type_codec_comment_reruns_as_a_no_op_and_restores_them(
    ch: Client, project: Project
) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=2_000)
    change = f'op.modify_column("{db}", "events", "duration_ms", "UInt64", codec="Delta, ZSTD", comment="ms")'
    project.write_revision("c1", None, change, f'op.restore_column("{db}", "events", "duration_ms")')
    project.write_revision("c2", "c1", change, "")
    up = project.run("upgrade", "head")
    assert up.exit_code == 0, up.output
    assert column(ch, db, "duration_ms") == ("UInt64", "", "CODEC(Delta(8), ZSTD(1))", "ms")
    assert mutations(ch, db, "(MODIFY COLUMN `duration_ms` UInt64") == 1
    # c2 wants what c1 made: nothing sent, no second mutation.
    assert "already as wanted" in up.output
    sent = ch.query(
        f"SELECT sql FROM {project.migrations_database}.k2_migrations_journal"
        " WHERE revision = 'c2' AND kind = 'step' AND status = 'done'"
    ).result_rows
    assert sent == [("",)], sent
    assert project.run("downgrade", "base").exit_code == 0
    assert column(ch, db, "duration_ms") == ("UInt32", "", "", "")
    assert project.run("upgrade", "head").exit_code == 0
    assert column(ch, db, "duration_ms") == ("UInt64", "", "CODEC(Delta(8), ZSTD(1))", "ms")
    for what, (target, source) in analytics.views_agree(ch, db).items():
        assert target == source, what


def test_a_type_change_and_an_index_while_rows_keep_arriving_lose_and_double_none(
    ch: Client, project: Project
) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=20_000)
    project.write_revision(
        "l1",
        None,
        f'op.modify_column("{db}", "events", "duration_ms", "UInt64")\n'
        f'op.add_index("{db}", "events", "path_ix", "path", "bloom_filter(0.01)", 4)',
        "",
    )
    env = project.env | {"K2_MIGRATE_CONFIG": str(project.root / "alembic.ini")}
    with analytics.LiveWriter(ch, db, first_id=20_000) as writer:
        code, output = analytics.k2_migrate_in_process("upgrade", "head", env=env)
    assert code == 0, output
    assert writer.confirmed and not writer.errors, writer.errors
    assert analytics.exactly_once(analytics.ids(ch, db), writer.confirmed, writer.failed, 20_000) == []
    for what, (target, source) in analytics.views_agree(ch, db).items():
        assert target == source, what
    assert column(ch, db, "duration_ms")[0] == "UInt64"


def test_a_default_is_compared_as_the_engine_renders_it(ch: Client, project: Project) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=100)
    project.write_revision(
        "d1", None, f'op.modify_column("{db}", "events", "path", default="concat(\'/\', \'x\')")', ""
    )
    project.write_revision(
        "d2", "d1", f'op.modify_column("{db}", "events", "path", default="concat(\'/\',\'x\')")', ""
    )
    up = project.run("upgrade", "head")
    assert up.exit_code == 0, up.output
    assert column(ch, db, "path")[1] == "concat('/', 'x')"
    assert up.output.count("already as wanted") == 1


def test_rename_column_is_idempotent_reversible_and_refused_while_a_view_reads_the_column(
    ch: Client, project: Project
) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=100)
    project.write_revision(
        "r1",
        None,
        f'op.rename_column("{db}", "events", "path", "page")',
        f'op.rename_column("{db}", "events", "page", "path")',
    )
    project.write_revision("r2", "r1", f'op.rename_column("{db}", "events", "path", "page")', "")
    up = project.run("upgrade", "head")
    assert up.exit_code == 0, up.output
    assert "already renamed" in up.output
    assert column(ch, db, "page") and not column(ch, db, "path")
    assert project.run("downgrade", "base").exit_code == 0
    assert column(ch, db, "path") and not column(ch, db, "page")
    assert project.run("upgrade", "head").exit_code == 0
    project.write_revision("r3", "r2", f'op.rename_column("{db}", "events", "ts", "at")', "")
    refused = project.run("upgrade", "head")
    assert refused.exit_code == 5, refused.output
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith("k2-migrate: error: refusing to rename column ts of")
    assert f"{db}.daily_mv" in line and f"{db}.recent" in line and f"{db}.by_country_mv" not in line
    assert column(ch, db, "ts") == ("DateTime", "", "", "")


def test_dropping_a_table_views_read_is_refused_naming_them_until_the_views_are_dropped(
    ch: Client, project: Project
) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=100)
    project.write_revision("x1", None, f'op.drop_object("{db}", "events", allow_rows=True)', "")
    refused = project.run("upgrade", "head")
    assert refused.exit_code == 5, refused.output
    line = refused.stderr.strip().splitlines()[-1]
    for view in ("daily_mv", "by_country_mv", "recent"):
        assert f"{db}.{view}" in line, line
    assert scalar(ch, f"EXISTS {db}.events") == 1
    drops = "\n".join(f'op.drop_object("{db}", "{v}")' for v in ("recent", "daily_mv", "by_country_mv"))
    project.write_revision("x1", None, drops + f'\nop.drop_object("{db}", "events", allow_rows=True)', "")
    assert project.run("downgrade", "base").exit_code == 0  # revert the refused attempt
    done = project.run("upgrade", "head")
    assert done.exit_code == 0, done.output
    assert scalar(ch, f"EXISTS {db}.events") == 0


def test_moving_a_table_or_dropping_a_column_views_read_is_refused_naming_them(
    ch: Client, project: Project
) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=100)
    project.write_revision(
        "m1", None, f'op.create_database("{db}_new")\nop.move_table("{db}", "events", "{db}_new")', ""
    )
    moved = project.run("upgrade", "head")
    assert moved.exit_code == 5, moved.output
    line = moved.stderr.strip().splitlines()[-1]
    assert f"refusing to move {db}.events" in line and f"{db}.daily_mv" in line and f"{db}.recent" in line
    assert scalar(ch, f"EXISTS {db}.events") == 1
    project.write_revision("m1", None, f'op.drop_column_if_exists("{db}", "events", "duration_ms")', "")
    assert project.run("downgrade", "base").exit_code == 0
    dropped = project.run("upgrade", "head")
    assert dropped.exit_code == 5, dropped.output
    line = dropped.stderr.strip().splitlines()[-1]
    assert f"refusing to drop column duration_ms of {db}.events: view(s) {db}.by_country_mv depend" in line
    assert column(ch, db, "duration_ms")


def test_dropping_a_view_target_is_refused_and_handled_dependents_are_let_through(
    ch: Client, project: Project
) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=100)
    project.write_revision("t1", None, f'op.drop_object("{db}", "daily", allow_rows=True)', "")
    refused = project.run("upgrade", "head")
    assert refused.exit_code == 5 and f"{db}.daily_mv" in refused.output, refused.output
    project.write_revision(
        "t1",
        None,
        f'op.drop_object("{db}", "daily", allow_rows=True, dependents="handled")\n'
        f'op.create_object("{db}", "daily", "CREATE TABLE {db}.daily (day Date, site LowCardinality(String),'
        " views AggregateFunction(count), visitors AggregateFunction(uniq, UInt64))"
        ' ENGINE = AggregatingMergeTree ORDER BY (site, day)")',
        "",
    )
    assert project.run("downgrade", "base").exit_code == 0
    done = project.run("upgrade", "head")
    assert done.exit_code == 0, done.output


def test_a_revision_that_breaks_a_view_stops_the_run_naming_it(ch: Client, project: Project) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=100)

    def has(column: str) -> str:
        return (
            f"SELECT count() FROM system.columns WHERE database = '{db}' AND table = 'events' "
            f"AND name = '{column}'"
        )

    project.write_revision(
        "b1",
        None,
        f'op.execute_sql("ALTER TABLE {db}.events RENAME COLUMN id TO uid", done_when="{has("uid")}")',
        f'op.execute_sql("ALTER TABLE {db}.events RENAME COLUMN uid TO id", done_when="{has("id")}")',
    )
    broken = project.run("upgrade", "head")
    assert broken.exit_code == 8, broken.output
    line = broken.stderr.strip().splitlines()[-1]
    assert "after revision b1, view(s) no longer compile" in line
    assert f"{db}.daily_mv" in line and f"{db}.recent" in line
    current = json.loads(project.run("current", "--json").stdout)
    assert current["current"] == [] and current["in_progress"]["revision"] == "b1"


def test_check_reports_a_view_broken_behind_k2_migrates_back(ch: Client, project: Project) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=100)
    project.write_revision("k1", None, f'op.modify_column("{db}", "events", "path", comment="page path")', "")
    assert project.run("upgrade", "head").exit_code == 0
    assert project.run("check").exit_code == 0
    ch.command(f"ALTER TABLE {db}.events RENAME COLUMN id TO uid")  # raw SQL: daily_mv and recent read id
    checked = project.run("check")
    assert checked.exit_code == 8, checked.output
    assert f"{db}.recent view does not compile" in checked.output
    assert f"{db}.daily_mv view does not compile" in checked.output
    assert f"{db}.by_country_mv view" not in checked.output


def test_ttl_index_and_projection_upgrade_rerun_downgrade_upgrade(ch: Client, project: Project) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=5_000)
    up = "\n".join(
        [
            f'op.modify_ttl("{db}", "events", "ts + INTERVAL 730 DAY")',
            f'op.add_index("{db}", "events", "path_ix", "path", "bloom_filter(0.01)", 4)',
            f'op.add_projection("{db}", "events", "by_path", "SELECT path, count() GROUP BY path")',
        ]
    )
    down = "\n".join(
        [
            f'op.drop_projection("{db}", "events", "by_path")',
            f'op.drop_index("{db}", "events", "path_ix")',
            f'op.restore_ttl("{db}", "events")',
        ]
    )
    project.write_revision("s1", None, up, down)
    project.write_revision("s2", "s1", up.replace("INTERVAL 730 DAY", "toIntervalDay(730)"), "")

    def state() -> tuple[object, ...]:
        return (
            scalar(ch, f"SELECT engine_full FROM system.tables WHERE database = '{db}' AND name = 'events'"),
            ch.query(
                f"SELECT name, type_full, expr, granularity FROM system.data_skipping_indices WHERE database = '{db}'"
            ).result_rows,
            ch.query(f"SELECT name, query FROM system.projections WHERE database = '{db}'").result_rows,
            scalar(
                ch,
                f"SELECT count() FROM system.projection_parts WHERE database = '{db}' AND active AND name = 'by_path'",
            ),
        )

    first = project.run("upgrade", "head")
    assert first.exit_code == 0, first.output
    engine_full, indexes, projections, projection_parts = state()
    assert "TTL ts + toIntervalDay(730)" in str(engine_full)
    assert indexes == [("path_ix", "bloom_filter(0.01)", "path", 4)]
    assert projections == [("by_path", "SELECT path, count() GROUP BY path")]
    parts = scalar(
        ch, f"SELECT count() FROM system.parts WHERE database = '{db}' AND table = 'events' AND active"
    )
    assert projection_parts == parts  # materialized for every part, not only those inserted after
    assert mutations(ch, db, "(MATERIALIZE INDEX path_ix)") == 1
    assert mutations(ch, db, "(MATERIALIZE PROJECTION by_path)") == 1
    assert "already as wanted" in first.output and "materialized earlier" in first.output  # s2: nothing to do
    assert project.run("downgrade", "base").exit_code == 0
    engine_full, indexes, projections, _ = state()
    assert " TTL " not in str(engine_full) and indexes == [] and projections == []
    assert project.run("upgrade", "head").exit_code == 0
    assert state()[1:3] == (indexes_after := state()[1:3]) and indexes_after[0]
    assert mutations(ch, db, "(MATERIALIZE INDEX path_ix)") == 2  # re-added after a drop: built again


def test_plan_and_sql_show_the_statements(ch: Client, project: Project) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=10)
    project.write_revision(
        "p1",
        None,
        f'op.modify_column("{db}", "events", "duration_ms", "UInt64")\n'
        f'op.add_index("{db}", "events", "path_ix", "path", "bloom_filter", 4)\n'
        f'op.drop_object("{db}", "recent")',
        "",
    )
    plan = project.run("plan", "head")
    assert plan.exit_code == 0, plan.output
    assert (
        f"ALTER TABLE {db}.events MODIFY COLUMN duration_ms UInt64 SETTINGS mutations_sync = 0" in plan.output
    )
    assert "refuses while views depend on it" in plan.output
    sql = project.run("upgrade", "head", "--sql")
    assert (
        f"ALTER TABLE {db}.events ADD INDEX IF NOT EXISTS path_ix path TYPE bloom_filter GRANULARITY 4;"
        in sql.stdout
    )
    assert f"ALTER TABLE {db}.events MATERIALIZE INDEX path_ix SETTINGS mutations_sync = 0;" in sql.stdout


@pytest.mark.parametrize(
    ("live", "arguments", "named"),
    [
        (
            "INDEX path_ix path TYPE minmax GRANULARITY 1",
            '"path_ix", "path", "bloom_filter(0.01)", 4',
            "index path_ix of {db}.events exists as path TYPE minmax GRANULARITY 1",
        ),
        (
            "PROJECTION by_path (SELECT path, count() GROUP BY path)",
            '"by_path", "SELECT country, count() GROUP BY country"',
            "projection by_path of {db}.events exists as",
        ),
    ],
)
def test_an_index_or_projection_that_exists_otherwise_is_drift_and_is_left_as_it_is(
    ch: Client, project: Project, live: str, arguments: str, named: str
) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=10)
    ch.command(f"ALTER TABLE {db}.events ADD {live}")
    kind = live.split(maxsplit=1)[0].lower()
    project.write_revision("d1", None, f'op.add_{kind}("{db}", "events", {arguments})', "")
    done = project.run("upgrade", "head")
    assert done.exit_code == 8, done.output
    line = done.stderr.strip().splitlines()[-1]
    assert named.format(db=db) in line and f"drop_{kind} it first" in line, line
    assert scalar(ch, f"SELECT count() FROM system.mutations WHERE database = '{db}'") == 0


# -- the pure decisions -------------------------------------------------------------------------------

VERBS = ("MATERIALIZE", "DROP", "CLEAR")


@given(
    st.lists(
        st.tuples(
            st.sampled_from([*VERBS, "OTHER"]), st.sampled_from(["ix", "`i x`", "other"]), st.booleans()
        ),
        max_size=12,
    ),
    st.permutations(range(12)),
)
def test_the_newest_materialize_or_drop_of_that_index_decides(
    history: list[tuple[str, str, bool]], order: list[int]
) -> None:
    rows = [
        MutationRow(n, f"({verb} INDEX {name})" if verb != "OTHER" else f"(UPDATE {name} = 1 WHERE 1)", done)
        for n, (verb, name, done) in enumerate(history)
    ]
    shuffled = [rows[i] for i in order if i < len(rows)]  # the engine's order is not the decision's
    ours = [(verb, done) for verb, name, done in history if name == "ix" and verb in VERBS]
    expected = (
        Materialized.MISSING
        if not ours or ours[-1][0] != "MATERIALIZE"
        else (Materialized.DONE if ours[-1][1] else Materialized.RUNNING)
    )
    assert materialized(shuffled, "INDEX", "ix") == expected


def test_a_drop_if_exists_counts_as_a_drop_and_mutation_ids_order_numerically() -> None:
    rows = [MutationRow(1, "(MATERIALIZE INDEX ix)", True), MutationRow(2, "(DROP INDEX IF EXISTS ix)", True)]
    assert materialized(rows, "INDEX", "ix") is Materialized.MISSING
    assert mutation_number("mutation_12.txt") > mutation_number("mutation_9.txt")
    assert mutation_number("0000000012") == 12


@given(
    st.sampled_from(["UInt32", "UInt64", "String"]),
    st.sampled_from(["", "1 + 2", "now()"]),
    st.sampled_from(["", "CODEC(ZSTD(1))"]),
    st.sampled_from(["", "ms"]),
    st.sampled_from(["UInt32", "UInt64", "String"]),
    st.sampled_from(["", "1 + 2", "now()"]),
    st.sampled_from(["", "CODEC(ZSTD(1))"]),
    st.sampled_from(["", "ms"]),
)
def test_only_a_type_change_rewrites_and_only_a_difference_changes_anything(
    t1: str, d1: str, c1: str, m1: str, t2: str, d2: str, c2: str, m2: str
) -> None:
    live = ColumnDefinition(t1, "DEFAULT" if d1 else "", d1, c1, m1)
    wanted = ColumnDefinition(
        t2, "DEFAULT" if d2 else "", d2.replace(" ", "  "), c2, m2
    )  # spacing is no change
    change = column_change(live, wanted)
    if t1 != t2:
        assert change is Change.REWRITE
    elif (d1, c1, m1) != (d2, c2, m2):
        assert change is Change.METADATA
    else:
        assert change is Change.NONE


# -- real processes, killed --------------------------------------------------------------------------

KILL_DB = "web"


def _project(root: Path, up: str, down: str) -> Path:
    (root / "versions").mkdir(parents=True)
    ini = root / "alembic.ini"
    ini.write_text(
        "[alembic]\nscript_location = k2_migrations:alembic_env\nversion_locations = %(here)s/versions\n"
    )
    (root / "versions" / "w1.py").write_text(
        '"""w1"""\nfrom alembic import op\n\nrevision = "w1"\ndown_revision = None\n'
        "branch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade() -> None:\n{up}\n\n\ndef downgrade() -> None:\n{down}\n"
    )
    return ini


UP = "\n".join(
    "    " + line
    for line in [
        f'op.modify_column("{KILL_DB}", "events", "duration_ms", "UInt64", comment="ms")',
        f'op.rename_column("{KILL_DB}", "events", "path", "page")',
        f'op.modify_ttl("{KILL_DB}", "events", "ts + INTERVAL 730 DAY")',
        f'op.add_index("{KILL_DB}", "events", "page_ix", "page", "bloom_filter(0.01)", 4)',
        f'op.add_projection("{KILL_DB}", "events", "by_page", "SELECT page, count() GROUP BY page")',
    ]
)
DOWN = "\n".join(
    "    " + line
    for line in [
        f'op.drop_projection("{KILL_DB}", "events", "by_page")',
        f'op.drop_index("{KILL_DB}", "events", "page_ix")',
        f'op.restore_ttl("{KILL_DB}", "events")',
        f'op.rename_column("{KILL_DB}", "events", "page", "path")',
        f'op.restore_column("{KILL_DB}", "events", "duration_ms")',
    ]
)

STATE = (
    "SELECT (SELECT groupArray((name, type, comment)) FROM (SELECT name, type, comment FROM system.columns"
    f" WHERE database = '{KILL_DB}' AND table = 'events' ORDER BY position)),"
    f" (SELECT engine_full FROM system.tables WHERE database = '{KILL_DB}' AND name = 'events'),"
    f" (SELECT groupArray(name) FROM system.data_skipping_indices WHERE database = '{KILL_DB}'),"
    f" (SELECT groupArray(name) FROM system.projections WHERE database = '{KILL_DB}'),"
    f" (SELECT count() FROM {KILL_DB}.events)"
)


def _runs(root: Path, ini: Path, *args: str) -> list[str]:
    return ["-c", str(ini), *args]


@pytest.mark.skipif(bool(SERVER_URL), reason="kills embedded-engine processes")
def test_killed_at_every_step_up_and_down_converges(forker: Forker, tmp_path: Path) -> None:
    ini = _project(tmp_path, UP, DOWN)
    path = tmp_path / "db"
    query(path, *analytics.create_statements(KILL_DB, 20_000), "SELECT 1")
    original = query(path, STATE)
    for command, final in ((("upgrade", "head"), "w1"), (("downgrade", "base"), None)):
        for step in range(1, 6):
            outcome = forker.run(path, "-c", str(ini), *command, env={}, kill_at=("w1", step))
            assert outcome.killed and outcome.returncode == -signal.SIGKILL, (step, outcome.stderr[-2000:])
        done = forker.run(path, "-c", str(ini), *command, env={})
        assert done.returncode == 0, done.stderr[-3000:]
        current = json.loads(forker.run(path, "-c", str(ini), "current", "--json", env={}).stdout)
        assert current["current"] == ([final] if final else []) and current["in_progress"] is None
        if final:
            upgraded = query(path, STATE)
            assert "TTL ts + toIntervalDay(730)" in str(upgraded) and "page_ix" in str(upgraded), upgraded
            commands = query(
                path,
                f"SELECT command, count() FROM system.mutations WHERE database = '{KILL_DB}' GROUP BY command",
            )
            assert all(n == 1 for _, n in commands), commands  # each mutation issued once, kills or not
    assert query(path, STATE) == original
    again = forker.run(path, "-c", str(ini), "upgrade", "head", env={})
    assert again.returncode == 0, again.stderr[-3000:]


@pytest.mark.skipif(bool(SERVER_URL), reason="kills embedded-engine processes")
def test_killed_right_after_a_materialize_was_issued_the_resumed_run_waits_and_never_reissues(
    forker: Forker, tmp_path: Path
) -> None:
    ini = _project(tmp_path, UP, DOWN)
    path = tmp_path / "db"
    query(path, *analytics.create_statements(KILL_DB, 20_000), "SELECT 1")
    for _ in ("the type change", "the TTL", "the index", "the projection"):
        # Each run dies the moment its first mutation is accepted: the next resumes past it.
        killed = forker.run(
            path, "-c", str(ini), "upgrade", "head", env={"K2_MIGRATE_FAILPOINT": "mutation-issued"}
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = forker.run(path, "-c", str(ini), "upgrade", "head", env={})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    commands = dict(
        (str(c), int(n))
        for c, n in query(
            path,
            f"SELECT command, count() FROM system.mutations WHERE database = '{KILL_DB}' GROUP BY command",
        )
    )
    assert commands == {
        "(MODIFY COLUMN `duration_ms` UInt64 COMMENT 'ms')": 1,
        "(RENAME COLUMN path TO page)": 1,  # a mutation on chDB, metadata only: never waited
        "(MATERIALIZE TTL)": 1,
        "(MATERIALIZE INDEX page_ix)": 1,
        "(MATERIALIZE PROJECTION by_page)": 1,
    }, commands


@pytest.mark.parametrize(
    ("query", "selects_all"),
    [
        ("SELECT * FROM web.events", True),
        ("SELECT DISTINCT * FROM web.events", True),
        ("SELECT site, * FROM web.events", True),
        ("SELECT e.* FROM web.events AS e", True),
        ("SELECT site, COUNT(*) AS n FROM web.events GROUP BY site", False),
        ("SELECT count( * ) FROM web.events", False),
        ("SELECT duration_ms * 2 AS d FROM web.events", False),
    ],
)
def test_a_star_counts_as_every_column_only_where_it_selects_them(query: str, selects_all: bool) -> None:
    """count(*) reads no column by name: a view counting rows must not block dropping a column it never reads."""
    from k2_migrations.introspection.dependencies import View

    view = View("web", "v", "", query, frozenset({"web.events"}), "")
    assert ("*" in view.names()) is selects_all


def test_a_first_column_is_added_first_and_first_with_after_is_refused(ch: Client, project: Project) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=10)
    add = f'op.add_column_if_missing("{db}", "events", "tenant", "UInt16", first=True)'
    project.write_revision("f1", None, add, f'op.drop_column_if_exists("{db}", "events", "tenant")')
    assert project.run("upgrade", "head").exit_code == 0
    names = [
        r[0]
        for r in ch.query(
            f"SELECT name FROM system.columns WHERE database = '{db}' AND table = 'events' ORDER BY position"
        ).result_rows
    ]
    assert names[0] == "tenant" and names[1:] == [c for c in names[1:] if c != "tenant"]
    both = f'op.add_column_if_missing("{db}", "events", "region", "UInt8", first=True, after="id")'
    project.write_revision("f2", "f1", both, "")
    refused = project.run("upgrade", "head")
    assert refused.exit_code == 2, refused.output
    assert "first=True and after='id' contradict each other" in refused.output
    assert "region" not in [r[0] for r in ch.query(f"DESCRIBE TABLE {db}.events").result_rows]
