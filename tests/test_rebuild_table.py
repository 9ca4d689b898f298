"""op.rebuild_table on the analytics schema (not K2): under a live writer in the process that holds the
engine, and killed at each of its durable points in real processes. What is asserted is read back from
the engine: ids exactly once, each view's target against its source, the new structure in system.tables.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import SERVER_URL, Project, unique
from tests.support import analytics
from tests.support.engine_query import query, reads
from tests.support.kill_harness import Forker, Outcome, write_project

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

NEW_ORDER = "(site, id)"


def events_ddl(db: str, order_by: str = NEW_ORDER, engine: str = "MergeTree") -> str:
    return f"""CREATE TABLE {db}.events
        (id UInt64, ts DateTime, site LowCardinality(String), country FixedString(2), path String,
         duration_ms UInt32)
        ENGINE = {engine} PARTITION BY toYYYYMM(ts) ORDER BY {order_by}"""


def rebuild_revision(project: Project, db: str) -> None:
    project.write_revision(
        "rb1",
        None,
        f'op.rebuild_table("{db}", "events", """{events_ddl(db)}""")',
        f'op.rebuild_table("{db}", "events")',
    )


def shape(ch: Client, db: str) -> tuple[str, str, str]:
    row = ch.query(
        "SELECT engine, sorting_key, partition_key FROM system.tables WHERE database = {d:String} AND name = 'events'",
        parameters={"d": db},
    ).result_rows[0]
    return str(row[0]), str(row[1]), str(row[2])


def kept_tables(ch: Client, db: str) -> list[str]:
    rows = ch.query(
        "SELECT name FROM system.tables WHERE database = {d:String} AND name LIKE 'events\\_\\_%' ORDER BY name",
        parameters={"d": db},
    ).result_rows
    return [str(r[0]) for r in rows]


def test_rebuild_under_a_live_writer_keeps_every_row_once_and_the_views_agree(
    ch: Client, project: Project
) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=50_000)
    rebuild_revision(project, db)
    env = project.env | {"K2_MIGRATE_CONFIG": str(project.root / "alembic.ini")}
    plan = project.run("plan")
    assert plan.exit_code == 0, plan.output
    assert f"EXCHANGE TABLES {db}.events AND {db}.`events__new_<id>`" in plan.output
    assert f"INSERT INTO {db}.`events__new_<id>` SELECT ... FROM {db}.events" in plan.output
    with analytics.LiveWriter(ch, db, first_id=50_000) as writer:
        time.sleep(0.3)
        code, output = analytics.k2_migrate_in_process("upgrade", "head", env=env)
        time.sleep(0.3)
        assert code == 0, output
        assert shape(ch, db) == ("MergeTree", "site, id", "toYYYYMM(ts)")
        (kept,) = kept_tables(ch, db)
        assert kept.startswith("events__old_") and f"{db}.{kept}" in output
        again = analytics.k2_migrate_in_process("upgrade", "head", env=env)
        assert again[0] == 0 and "rebuild" not in again[1], again[1]
        code, output = analytics.k2_migrate_in_process("downgrade", "base", env=env)
        assert code == 0, output
        assert shape(ch, db) == ("MergeTree", "site, ts", "toYYYYMM(ts)")
        code, output = analytics.k2_migrate_in_process("upgrade", "head", env=env)
        assert code == 0, output
        time.sleep(0.3)
    assert shape(ch, db) == ("MergeTree", "site, id", "toYYYYMM(ts)")
    assert len(writer.confirmed) >= 20, writer.errors
    assert analytics.exactly_once(analytics.ids(ch, db), writer.confirmed, writer.failed, 50_000) == []
    for what, (target, source) in analytics.views_agree(ch, db).items():
        assert target == source, what
    assert len(kept_tables(ch, db)) == 3


pytestmark_kill = pytest.mark.skipif(
    bool(SERVER_URL), reason="each case runs on an embedded engine of its own"
)


def _kill_project(root: Path, db: str) -> None:
    rebuild = f'op.rebuild_table("{db}", "events", """{events_ddl(db)}""", unit_rows=1)'
    back = f'op.rebuild_table("{db}", "events", unit_rows=1)'
    write_project(root, [("a1", None, "pass", "pass"), ("rb1", "a1", rebuild, back)])


def _k2(
    forker: Forker,
    root: Path,
    *args: str,
    env: dict[str, str] | None = None,
    kill_at: tuple[str, int] | None = None,
    delay_s: float = 0.0,
) -> Outcome:
    """One ``k2-migrate`` process on the project at ``root`` and its engine ``root/engine``, with the
    K2_* settings ``env``."""
    ini = ("-c", str(root / "alembic.ini"))
    return forker.run(root / "engine", *ini, *args, env=env or {}, kill_at=kill_at, delay_s=delay_s)


LATE = (
    "INSERT INTO web.events SELECT number + 1000001, toDateTime('2026-11-05 00:00:00'), 'alpha.example',"
    " 'DE', '/late', 1 FROM numbers(7)"
)
#: 12,000 rows into October and November while the first round copies: more than a round leaves for
#: the swap, so a second round copies them, into partitions of the new table that hold rows already.
ROUND_TWO = (
    "INSERT INTO web.events SELECT number + 2000001, toDateTime('2026-10-15 00:00:00') + (number % 2) * 2592000,"
    " 'alpha.example', 'FR', '/again', 1 FROM numbers(12000)"
)
ARRIVING = {
    None: {},
    # 7 rows reach the old table after the last round (landed into the live one after the swap)
    "late": {"K2_MIGRATE_FAILPOINT_SQL_AT": "rebuild-before-exchange", "K2_MIGRATE_FAILPOINT_SQL": LATE},
    "round two": {"K2_MIGRATE_FAILPOINT_SQL_AT": "rebuild-copied:1", "K2_MIGRATE_FAILPOINT_SQL": ROUND_TWO},
}


@pytestmark_kill
@pytest.mark.parametrize(
    ("failpoint", "arriving"),
    [
        ("rebuild-copied:2", None),  # mid-copy: the second partition copied into the new table, not counted
        ("rebuild-staged:1", "round two"),  # a second round's rows staged, not yet counted
        ("rebuild-attached:1", "round two"),  # and attached into the new table's partitions, not recorded
        ("rebuild-before-exchange", None),
        ("rebuild-exchanged", None),
        ("rebuild-attached:1", "late"),  # killed once the late rows are attached into the live table
    ],
)
def test_killed_at_each_point_the_rebuild_resumes_without_loss_or_duplicates(
    forker: Forker, tmp_path: Path, failpoint: str, arriving: str | None
) -> None:
    db = "web"
    rows = 30_000  # 4 monthly partitions
    _kill_project(tmp_path, db)
    engine = tmp_path / "engine"
    query(
        engine,
        *analytics.schema(db),
        f"INSERT INTO {db}.sites VALUES ('alpha.example', 'team-0')",
        f"""INSERT INTO {db}.events SELECT number + 1, toDateTime('2026-10-01 00:00:00') + number * 300,
            'alpha.example', 'DE', '/p', 1 FROM numbers({rows})""",
        "SELECT 1",
    )
    killed = _k2(
        forker, tmp_path, "upgrade", "head", env={"K2_MIGRATE_FAILPOINT": failpoint, **ARRIVING[arriving]}
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = _k2(forker, tmp_path, "upgrade", "head")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    total = rows + {None: 0, "late": 7, "round two": 12_000}[arriving]
    counted, shaped, daily, by_country, kept = reads(
        engine,
        f"SELECT count(), uniqExact(id) FROM {db}.events",
        f"SELECT engine, sorting_key, partition_key FROM system.tables WHERE database = '{db}' AND name = 'events'",
        f"SELECT countMerge(views) FROM {db}.daily",
        f"SELECT sum(views) FROM {db}.by_country_mv",
        f"SELECT name FROM system.tables WHERE database = '{db}' AND name LIKE 'events\\_\\_%'",
    )
    assert counted == [[total, total]]
    assert shaped == [["MergeTree", "site, id", "toYYYYMM(ts)"]]
    # The copy fired no view: each target has every row inserted into events exactly once.
    assert daily == [[total]]
    assert by_country == [[total]]
    assert len(kept) == 1 and kept[0][0].startswith("events__old_") and f"{db}.{kept[0][0]}" in resumed.stderr
    back = _k2(forker, tmp_path, "downgrade", "a1")
    assert back.returncode == 0, back.stderr[-2000:]
    assert reads(
        engine,
        f"SELECT count(), uniqExact(id) FROM {db}.events",
        f"SELECT sorting_key FROM system.tables WHERE database = '{db}' AND name = 'events'",
    ) == [[[total, total]], [["site, ts"]]]


def _web_events(engine: Path, db: str, rows: int) -> None:
    """``db``'s analytics schema on ``engine`` with ``rows`` events over 4 monthly partitions."""
    query(
        engine,
        *analytics.schema(db),
        f"""INSERT INTO {db}.events SELECT number + 1, toDateTime('2026-10-01 00:00:00') + number * 300,
            'alpha.example', 'DE', '/p', 1 FROM numbers({rows})""",
        "SELECT 1",
    )


def _views_agree(engine: Path, db: str, total: int) -> None:
    """Every id once in ``db.events``, and each view's target holding every row once (the copy fired none)."""
    assert reads(
        engine,
        f"SELECT count(), uniqExact(id) FROM {db}.events",
        f"SELECT countMerge(views) FROM {db}.daily",
        f"SELECT sum(views) FROM {db}.by_country_mv",
        f"SELECT sorting_key FROM system.tables WHERE database = '{db}' AND name = 'events'",
    ) == [[[total, total]], [[total]], [[total]], [["site, id"]]]


@pytestmark_kill
def test_a_run_that_died_inside_its_straight_copy_drops_what_it_half_wrote_and_copies_the_rest(
    forker: Forker, tmp_path: Path
) -> None:
    """The first round copies its one unit (4 partitions, empty in the new table) straight into it.
    A run dying inside that INSERT leaves some partitions whole, some part-written, some empty (killed
    after it, then one partition emptied and one left holding 3 rows of its own: the states on disk of
    a death half-way). The next run drops only the part-written one and copies only the two not whole."""
    db, rows = "web", 30_000
    write_project(
        tmp_path, [("rb1", None, f'op.rebuild_table("{db}", "events", """{events_ddl(db)}""")', "pass")]
    )
    engine = tmp_path / "engine"
    _web_events(engine, db, rows)
    env = {"K2_MIGRATE_FAILPOINT": "rebuild-copied:1", "K2_MIGRATE_VERBOSE": "1"}
    killed = _k2(forker, tmp_path, "upgrade", "head", env=env)
    assert killed.returncode == -9, killed.stderr[-2000:]
    ((new,),) = query(
        engine, f"SELECT name FROM system.tables WHERE database = '{db}' AND name LIKE 'events\\_\\_new\\_%'"
    )
    partitions = [p for (p,) in query(engine, f"SELECT DISTINCT _partition_id FROM {db}.{new} ORDER BY 1")]
    assert len(partitions) == 4 and "ATTACH PARTITION" not in killed.stderr  # one INSERT, no stage
    empty, partial = partitions[1], partitions[2]
    whole = f"SELECT name FROM system.parts WHERE database = '{db}' AND table = '{{}}' AND active" + (
        f" AND partition_id IN ('{partitions[0]}', '{partitions[3]}') ORDER BY name"
    )
    kept = query(engine, whole.format(new))
    query(
        engine,
        f"ALTER TABLE {db}.{new} DROP PARTITION ID '{empty}'",
        f"ALTER TABLE {db}.{new} DROP PARTITION ID '{partial}'",
        f"INSERT INTO {db}.{new} SELECT * FROM {db}.events WHERE _partition_id = '{partial}' LIMIT 3",
        "SELECT 1",
    )
    resumed = _k2(forker, tmp_path, "upgrade", "head", env={"K2_MIGRATE_VERBOSE": "1"})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"DROP PARTITION ID '{partial}'" in resumed.stderr
    assert resumed.stderr.count("DROP PARTITION ID") == 1
    _views_agree(engine, db, rows)
    assert query(engine, whole.format("events")) == kept  # the whole partitions' parts, not copied again


@pytestmark_kill
def test_killed_for_real_inside_its_straight_copy_the_rebuild_resumes_without_loss_or_duplicates(
    forker: Forker, tmp_path: Path
) -> None:
    """SIGKILL 0.2 s into the rebuild's step, inside the first round's one INSERT of 2M rows over 12
    months (the INSERT writes a part per block and partition as it goes): whatever the engine kept
    of it after the reopen, the next run finishes with every row once and the views untouched."""
    db, rows = "web", 2_000_000
    write_project(
        tmp_path, [("rb1", None, f'op.rebuild_table("{db}", "events", """{events_ddl(db)}""")', "pass")]
    )
    engine = tmp_path / "engine"
    query(
        engine,
        *analytics.schema(db),
        f"""INSERT INTO {db}.events SELECT number + 1, toDateTime('2026-01-01 00:00:00') + intDiv(number * 31536000, {rows}),
            'alpha.example', 'DE', '/p', 1 FROM numbers({rows})""",
        "SELECT 1",
    )
    killed = _k2(forker, tmp_path, "upgrade", "head", kill_at=("rb1", 1), delay_s=0.2)
    assert killed.returncode == -9, killed.stderr[-2000:]
    ((new,),) = query(
        engine, f"SELECT name FROM system.tables WHERE database = '{db}' AND name LIKE 'events\\_\\_new\\_%'"
    )
    by_partition = "SELECT _partition_id, count() FROM {} GROUP BY 1 ORDER BY 1"
    source = dict(query(engine, by_partition.format(f"{db}.events")))
    left = dict(query(engine, by_partition.format(f"{db}.{new}")))
    # The kill came inside the copy: some months whole, the rest empty or part-written (seen: 106,496
    # of March's 169,863 rows), none holding more than the source.
    assert left != source and all(0 < n <= source[p] for p, n in left.items()), left
    resumed = _k2(forker, tmp_path, "upgrade", "head")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _views_agree(engine, db, rows)


@pytestmark_kill
def test_a_run_that_died_inside_attach_all_is_finished_partition_by_partition(
    forker: Forker, tmp_path: Path
) -> None:
    """A second round (rows that arrived while the first copied) goes into partitions that hold rows
    already: staged, then one ``ATTACH PARTITION ALL FROM`` the stage. A run dying inside it leaves
    some partitions attached (killed after it, then the part it brought into one partition detached
    again: the state on disk of a death half-way); the next run attaches only that partition."""
    db, rows = "web", 30_000
    write_project(
        tmp_path, [("rb1", None, f'op.rebuild_table("{db}", "events", """{events_ddl(db)}""")', "pass")]
    )
    engine = tmp_path / "engine"
    _web_events(engine, db, rows)
    env = ARRIVING["round two"] | {"K2_MIGRATE_FAILPOINT": "rebuild-attached:1", "K2_MIGRATE_VERBOSE": "1"}
    killed = _k2(forker, tmp_path, "upgrade", "head", env=env)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert "ATTACH PARTITION ALL" in killed.stderr
    ((new,),) = query(
        engine, f"SELECT name FROM system.tables WHERE database = '{db}' AND name LIKE 'events\\_\\_new\\_%'"
    )
    # The part the ATTACH brought into November: the highest block there, holding the second round's rows.
    ((partition, part, part_rows),) = query(
        engine,
        f"SELECT partition_id, name, rows FROM system.parts WHERE database = '{db}' AND table = '{new}'"
        " AND active AND partition_id = '202611' ORDER BY max_block_number DESC LIMIT 1",
    )
    assert part_rows == 6_000
    query(engine, f"ALTER TABLE {db}.{new} DETACH PART '{part}'", "SELECT 1")
    resumed = _k2(forker, tmp_path, "upgrade", "head", env={"K2_MIGRATE_VERBOSE": "1"})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"ATTACH PARTITION ID '{partition}' FROM" in resumed.stderr
    assert "ATTACH PARTITION ALL" not in resumed.stderr
    _views_agree(engine, db, rows + 12_000)


def test_a_table_already_in_the_wanted_shape_is_left_alone(ch: Client, project: Project) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=1_000)
    project.write_revision(
        "rb1", None, f'op.rebuild_table("{db}", "events", """{events_ddl(db, "(site, ts)")}""")', ""
    )
    result = project.run("upgrade", "head")
    assert result.exit_code == 0, result.output
    assert "already in this shape: nothing to do" in result.output
    assert kept_tables(ch, db) == []
    assert shape(ch, db) == ("MergeTree", "site, ts", "toYYYYMM(ts)")


def test_a_database_without_exchange_and_a_ddl_for_another_table_are_refused_in_one_line(
    ch: Client, project: Project
) -> None:
    db = unique("mem")
    ch.command(f"CREATE DATABASE {db} ENGINE = Memory")
    ch.command(
        f"CREATE TABLE {db}.events (id UInt64, ts DateTime, site String) ENGINE = MergeTree ORDER BY ts"
    )
    ddl = f"CREATE TABLE {db}.events (id UInt64, ts DateTime, site String) ENGINE = MergeTree ORDER BY id"
    project.write_revision("rb1", None, f'op.rebuild_table("{db}", "events", """{ddl}""")', "")
    refused = project.run("upgrade", "head")
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.strip().splitlines()[-1] == (
        f"k2-migrate: error: cannot rebuild {db}.events: its database has the Memory engine, which has no "
        "EXCHANGE TABLES; move the table into an Atomic database first (op.move_table)"
    )
    other = ddl.replace(f"{db}.events", f"{db}.other")
    project.write_revision("rb1", None, f'op.rebuild_table("{db}", "events", """{other}""")', "")
    wrong = project.run("upgrade", "head")
    assert wrong.exit_code == 2, wrong.output
    assert f"needs DDL creating {db}.events (fully qualified), got one creating {db}.other" in wrong.stderr


def test_engine_partition_key_and_a_column_type_change_together_keep_every_row(
    ch: Client, project: Project
) -> None:
    db = unique("web")
    analytics.create(ch, db, rows=20_000)
    ddl = f"""CREATE TABLE {db}.events
        (id UInt64, ts DateTime, site LowCardinality(String), country FixedString(2), path String,
         duration_ms UInt64)
        ENGINE = ReplacingMergeTree PARTITION BY toMonday(ts) ORDER BY (site, id)"""
    project.write_revision(
        "rb1", None, f'op.rebuild_table("{db}", "events", """{ddl}""", unit_rows=3000)', ""
    )
    result = project.run("upgrade", "head")
    assert result.exit_code == 0, result.output
    assert shape(ch, db) == ("ReplacingMergeTree", "site, id", "toMonday(ts)")
    assert ch.query(
        f"SELECT type FROM system.columns WHERE database = '{db}' AND table = 'events' AND name = 'duration_ms'"
    ).result_rows == [("UInt64",)]
    assert analytics.exactly_once(analytics.ids(ch, db), [], [], 20_000) == []
    assert (
        ch.query(f"SELECT sum(duration_ms) FROM {db}.events").result_rows
        == ch.query(f"SELECT sum(duration_ms) FROM {db}.{kept_tables(ch, db)[0]}").result_rows
    )
    for what, (target, source) in analytics.views_agree(ch, db).items():
        assert target == source, what


def test_rows_arriving_during_a_round_below_the_threshold_are_landed_after_the_swap_not_copied_again(
    ch: Client, project: Project
) -> None:
    """One round: what arrived while it copied (nothing here) goes through the swap's landing."""
    db = unique("web")
    analytics.create(ch, db, rows=20_000)
    rebuild_revision(project, db)
    result = project.run("upgrade", "head")
    assert result.exit_code == 0, result.output
    saved = ch.query(
        f"SELECT definition FROM {project.migrations_database}.k2_migrations_snapshots"
        " WHERE object = {o:String}",
        parameters={"o": f"{db}.events#rebuild"},
    ).result_rows
    final = next(json.loads(str(d)) for (d,) in reversed(saved) if "exchanged" in json.loads(str(d)))
    assert [r["rows"] for r in final["rounds"]] == [20_000]
    assert ch.query(f"SELECT count() FROM {db}.events").result_rows[0][0] == 20_000


@pytestmark_kill
@pytest.mark.parametrize(
    "failpoint", ["rebuild-before-exchange", "rebuild-exchanged", "rebuild-attached:1", "after the rebuild"]
)
def test_a_guard_taken_before_a_rebuild_killed_at_the_swap_checks_the_copy_on_resume(
    forker: Forker, tmp_path: Path, failpoint: str
) -> None:
    """The carried baseline comes back from the rebuild's progress (killed inside the step) or from
    its journaled payload (killed after it): the resumed run's guard finds every baseline row in the
    copy, and the 7 late rows inserted meanwhile."""
    db, rows = "web", 30_000
    guarded = (
        f'op.take_guards("rows", ["{db}.events"])\n    '
        f'op.rebuild_table("{db}", "events", """{events_ddl(db)}""", unit_rows=1)\n    '
        'op.begin_interval("after")\n    '  # a step journaled at once: the rebuild's done row with it
        'op.execute_sql("SELECT sum(sleepEachRow(0.1)) FROM numbers(10)")\n    '
        'op.check_guards("rows")'
    )
    write_project(tmp_path, [("rb1", None, guarded, "pass")])
    engine = tmp_path / "engine"
    # Three INSERTs: parts the copy does not reproduce one for one (it writes one per partition).
    inserts = [
        f"""INSERT INTO {db}.events SELECT number + 1, toDateTime('2026-10-01 00:00:00') + number * 300,
            'alpha.example', 'DE', '/p', 1 FROM numbers({rows}) WHERE number % 3 = {k}"""
        for k in range(3)
    ]
    query(engine, *analytics.schema(db), *inserts, "SELECT 1")
    late = {"K2_MIGRATE_FAILPOINT_SQL_AT": "rebuild-before-exchange", "K2_MIGRATE_FAILPOINT_SQL": LATE}
    if failpoint == "after the rebuild":  # as the pause after it starts: the rebuild's step is done
        killed = _k2(
            forker,
            tmp_path,
            "upgrade",
            "head",
            env=late | {"K2_MIGRATE_FAILPOINT": "none"},
            kill_at=("rb1", 4),
        )
    else:
        killed = _k2(forker, tmp_path, "upgrade", "head", env=late | {"K2_MIGRATE_FAILPOINT": failpoint})
    assert killed.returncode == -9, killed.stderr[-2000:]
    done = _k2(forker, tmp_path, "upgrade", "head", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    guard = json.loads(done.stdout)["guards"][0]
    assert (guard["before"], guard["after"], guard["inserted"], guard["lost"]) == (rows, rows + 7, 7, 0)
