"""Every operation forward, backward, and re-run twice, against the real engine.

"Re-run" means the revision runs again against a database where its effect is already in place
(stamped back, as after a crash just before the version table was written): every operation must
then see the live state and do nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from tests.conftest import Project, engines_in, scalar, table_names, unique

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


def cycle(project: Project, when_up: Callable[[], None], when_down: Callable[[], None]) -> None:
    """upgrade, re-run the upgrade twice, downgrade, re-run the downgrade twice; check each state."""
    result = project.run("upgrade", "head")
    assert result.exit_code == 0, result.output
    when_up()
    for _ in range(2):
        assert project.run("stamp", "base").exit_code == 0
        rerun = project.run("upgrade", "head")
        assert rerun.exit_code == 0, rerun.output
        when_up()
    result = project.run("downgrade", "base")
    assert result.exit_code == 0, result.output
    when_down()
    for _ in range(2):
        assert project.run("stamp", "head").exit_code == 0
        rerun = project.run("downgrade", "base")
        assert rerun.exit_code == 0, rerun.output
        when_down()


def databases(ch: Client) -> set[str]:
    return {str(r[0]) for r in ch.query("SELECT name FROM system.databases").result_rows}


def test_create_and_drop_database(project: Project, ch: Client) -> None:
    db = unique("app")
    project.write_revision("a1", None, f'op.create_database("{db}")', f'op.drop_database("{db}")')
    cycle(project, lambda: _assert(db in databases(ch)), lambda: _assert(db not in databases(ch)))


def test_drop_database_refuses_one_that_holds_tables(project: Project, ch: Client) -> None:
    db = unique("app")
    ch.command(f"CREATE DATABASE {db}")
    ch.command(f"CREATE TABLE {db}.keep (x UInt8) ENGINE = MergeTree ORDER BY x")
    project.write_revision("a1", None, f'op.drop_database("{db}")', f'op.create_database("{db}")')
    result = project.run("upgrade", "head")
    assert result.exit_code == 5
    assert f"refusing to drop database {db}: it still holds 1 table(s) (keep)" in result.stderr
    assert "keep" in table_names(ch, db)


def test_create_and_drop_table_view_and_kafka_table(project: Project, ch: Client) -> None:
    db = unique("app")
    project.write_revision(
        "a1",
        None,
        f"""
        op.create_database("{db}")
        op.create_object("{db}", "src", "CREATE TABLE {db}.src (id UInt64, v String) ENGINE = MergeTree ORDER BY id")
        op.create_object("{db}", "dst", "CREATE TABLE {db}.dst (id UInt64) ENGINE = MergeTree ORDER BY id")
        op.create_object("{db}", "src_mv", "CREATE MATERIALIZED VIEW {db}.src_mv TO {db}.dst AS SELECT id FROM {db}.src")
        op.create_object(
            "{db}",
            "queue",
            "CREATE TABLE {db}.queue (id UInt64) ENGINE = Kafka SETTINGS kafka_broker_list = '127.0.0.1:1',"
            " kafka_topic_list = 't', kafka_group_name = 'g', kafka_format = 'JSONEachRow'",
        )
        """,
        f"""
        op.drop_object("{db}", "queue")
        op.drop_object("{db}", "src_mv")
        op.drop_object("{db}", "dst")
        op.drop_object("{db}", "src")
        op.drop_database("{db}")
        """,
    )

    def up() -> None:
        engines = engines_in(ch, db)
        assert engines == {
            "src": "MergeTree",
            "dst": "MergeTree",
            "src_mv": "MaterializedView",
            "queue": "Kafka",
        }
        ch.command(f"INSERT INTO {db}.src VALUES (1, 'a')")
        assert scalar(ch, f"SELECT count() FROM {db}.dst") == 1
        ch.command(f"TRUNCATE TABLE {db}.src")
        ch.command(f"TRUNCATE TABLE {db}.dst")

    cycle(project, up, lambda: _assert(db not in databases(ch)))


def test_drop_object_refuses_a_table_with_rows(project: Project, ch: Client) -> None:
    db = unique("app")
    ch.command(f"CREATE DATABASE {db}")
    ch.command(f"CREATE TABLE {db}.t (x UInt8) ENGINE = MergeTree ORDER BY x")
    ch.command(f"INSERT INTO {db}.t VALUES (1), (2)")
    project.write_revision("a1", None, f'op.drop_object("{db}", "t")', "")
    result = project.run("upgrade", "head")
    assert result.exit_code == 5
    assert f"refusing to drop {db}.t: it holds 2 rows" in result.stderr
    assert scalar(ch, f"SELECT count() FROM {db}.t") == 2


def test_capture_and_restore_definition_with_databases_rewritten(project: Project, ch: Client) -> None:
    src, dst = unique("src"), unique("dst")
    for db in (src, dst):
        ch.command(f"CREATE DATABASE {db}")
        ch.command(f"CREATE TABLE {db}.a (id UInt64, note String) ENGINE = MergeTree ORDER BY id")
        ch.command(f"CREATE TABLE {db}.b (id UInt64, note String) ENGINE = MergeTree ORDER BY id")
    ch.command(
        f"CREATE MATERIALIZED VIEW {src}.a_mv TO {src}.b AS SELECT id, concat(note, ' {src}.literal') AS note"
        f" FROM {src}.a WHERE id > 0"
    )
    original = str(
        scalar(ch, f"SELECT create_table_query FROM system.tables WHERE database='{src}' AND name='a_mv'")
    )
    project.write_revision(
        "a1",
        None,
        f"""
        op.capture_definition("{src}", "a_mv")
        op.drop_object("{src}", "a_mv")
        op.restore_definition("{src}.a_mv", rewrite={{"{src}": "{dst}"}})
        """,
        f"""
        op.drop_object("{dst}", "a_mv")
        op.restore_definition("{src}.a_mv", captured_in="a1")
        """,
    )

    def definition(db: str) -> str:
        return str(
            scalar(ch, f"SELECT create_table_query FROM system.tables WHERE database='{db}' AND name='a_mv'")
        )

    def up() -> None:
        assert "a_mv" not in table_names(ch, src)
        moved = definition(dst)
        assert moved == original.replace(f"{src}.a_mv", f"{dst}.a_mv").replace(
            f"{src}.b", f"{dst}.b"
        ).replace(f"{src}.a ", f"{dst}.a ")
        assert f"' {src}.literal'" in moved  # string literals are left alone

    cycle(project, up, lambda: _assert(definition(src) == original and "a_mv" not in table_names(ch, dst)))


def test_capture_definition_of_several_objects_is_one_step(project: Project, ch: Client) -> None:
    src, dst = unique("src"), unique("dst")
    ch.command(f"CREATE DATABASE {src}")
    ch.command(f"CREATE TABLE {src}.t (id UInt64) ENGINE = MergeTree ORDER BY id")
    for name in ("v1", "v2"):
        ch.command(
            f"CREATE MATERIALIZED VIEW {src}.{name} TO {src}.t AS SELECT id FROM {src}.t WHERE id > 100"
        )
    project.write_revision(
        "a1",
        None,
        f"""
        op.capture_definition("{src}", "v1", "v2")
        op.drop_objects("{src}", ["v1", "v2"])
        op.create_database("{dst}")
        op.restore_definition("{src}.v1", rewrite={{"{src}": "{dst}"}})
        op.restore_definition("{src}.v2", rewrite={{"{src}": "{dst}"}})
        """,
        "",
    )
    ch.command(f"CREATE DATABASE {dst}")
    ch.command(f"CREATE TABLE {dst}.t (id UInt64) ENGINE = MergeTree ORDER BY id")
    result = project.run("upgrade", "head", "--json")
    assert result.exit_code == 0, result.output
    steps = json.loads(result.stdout)["revisions"][0]["steps"]
    assert steps[0]["operation"] == f"capture the live definition of {src}.v1, {src}.v2"
    assert table_names(ch, src) == {"t"} and table_names(ch, dst) == {"t", "v1", "v2"}
    assert f"TO {dst}.t" in str(
        scalar(ch, f"SELECT create_table_query FROM system.tables WHERE database='{dst}' AND name='v2'")
    )
    ch.command(f"CREATE MATERIALIZED VIEW {src}.v1 TO {src}.t AS SELECT id FROM {src}.t")
    assert project.run("stamp", "base").exit_code == 0
    project.write_revision("a1", None, f'op.capture_definition("{src}", "v1", "gone")', "")
    refused = project.run("upgrade", "head")
    assert refused.exit_code == 2 and f"cannot capture {src}.gone: not found" in refused.stderr


@pytest.mark.parametrize("engine", ["MergeTree", "ReplacingMergeTree"])
def test_move_table_by_rename(project: Project, ch: Client, engine: str) -> None:
    src, dst = unique("src"), unique("dst")
    ch.command(f"CREATE DATABASE {src}")
    ch.command(f"CREATE DATABASE {dst}")
    ch.command(f"CREATE TABLE {src}.t (id UInt64, v UInt8) ENGINE = {engine} ORDER BY id PARTITION BY id % 4")
    for _ in range(3):  # duplicates: a ReplacingMergeTree may merge them away, which is not a loss
        ch.command(f"INSERT INTO {src}.t SELECT number, 1 FROM numbers(1000)")
    project.write_revision(
        "a1",
        None,
        f'op.move_table("{src}", "t", "{dst}")',
        f'op.move_table("{dst}", "t", "{src}")',
    )
    result = project.run("upgrade", "head", "--json")
    assert result.exit_code == 0, result.output
    assert '"note": "3000 rows, by rename"' in result.stdout
    assert project.run("downgrade", "base").exit_code == 0
    assert table_names(ch, src) == {"t"} and table_names(ch, dst) == set()
    cycle(
        project,
        lambda: _assert(table_names(ch, dst) == {"t"} and table_names(ch, src) == set()),
        lambda: _assert(table_names(ch, src) == {"t"} and table_names(ch, dst) == set()),
    )
    final = "FINAL" if engine != "MergeTree" else ""
    assert scalar(ch, f"SELECT count() FROM {src}.t {final}") == (1000 if final else 3000)


def test_move_table_into_default_falls_back_to_partition_moves(project: Project, ch: Client) -> None:
    """chDB's ``default`` is an Overlay database: RENAME into it fails with Code 48."""
    if scalar(ch, "SELECT engine FROM system.databases WHERE name = 'default'") == "Atomic":
        pytest.skip("this server's default database accepts RENAME; the fallback is covered on chDB")
    src, name = unique("src"), unique("t")
    ch.command(f"CREATE DATABASE {src}")
    ch.command(
        f"CREATE TABLE {src}.{name} (id UInt64, at DateTime) ENGINE = MergeTree ORDER BY id"
        " PARTITION BY toYYYYMM(at) SETTINGS index_granularity = 1024"
    )
    ch.command(
        f"INSERT INTO {src}.{name} SELECT number, toDateTime('2026-01-01') + number * 86400 FROM numbers(100)"
    )
    definition = str(
        scalar(ch, f"SELECT create_table_query FROM system.tables WHERE database='{src}' AND name='{name}'")
    )
    project.write_revision(
        "a1",
        None,
        f'op.move_table("{src}", "{name}", "default")',
        f'op.move_table("default", "{name}", "{src}")',
    )
    result = project.run("upgrade", "head", "--json")
    assert result.exit_code == 0, result.output
    assert '"note": "100 rows, by partitions"' in result.stdout
    moved = str(
        scalar(ch, f"SELECT create_table_query FROM system.tables WHERE database='default' AND name='{name}'")
    )
    assert moved == definition.replace(f"{src}.{name}", f"default.{name}")
    assert scalar(ch, f"SELECT count() FROM default.{name}") == 100
    assert name not in table_names(ch, src)
    cycle(
        project,
        lambda: _assert(scalar(ch, f"SELECT count() FROM default.{name}") == 100),
        lambda: _assert(scalar(ch, f"SELECT count() FROM {src}.{name}") == 100),
    )


def test_move_resumes_an_interrupted_partition_move(project: Project, ch: Client) -> None:
    """A half-attached copy the journal does not vouch for is refused with the source intact; once it is
    dropped as the message says, the copy is redone and no row is lost or doubled."""
    src, name = unique("src"), unique("t")
    ch.command(f"CREATE DATABASE {src}")
    ch.command(f"CREATE TABLE {src}.{name} (id UInt64) ENGINE = MergeTree ORDER BY id PARTITION BY id % 5")
    ch.command(f"INSERT INTO {src}.{name} SELECT number FROM numbers(500)")
    # What a crash leaves: the destination created, one partition of five attached.
    ch.command(f"CREATE TABLE default.{name} AS {src}.{name}")
    ch.command(f"ALTER TABLE default.{name} ATTACH PARTITION 0 FROM {src}.{name}")
    project.write_revision("a1", None, f'op.move_table("{src}", "{name}", "default")', "")

    def per_partition(database: str) -> list[tuple[object, ...]]:
        return [
            tuple(r)
            for r in ch.query(
                f"SELECT id % 5 AS p, count(), uniqExact(id) FROM {database}.{name} GROUP BY p ORDER BY p"
            ).result_rows
        ]

    try:
        # Without a journal entry for the step, a pre-existing destination is refused: it is not ours.
        refused = project.run("upgrade", "head")
        assert refused.exit_code == 5
        assert f"default.{name} already exists and was not created by this run" in refused.stderr
        assert per_partition(src) == [(p, 100, 100) for p in range(5)]
        assert per_partition("default") == [(0, 100, 100)]
        ch.command(f"DROP TABLE default.{name}")
        redone = project.run("upgrade", "head")
        assert redone.exit_code == 0, redone.output
        assert name not in table_names(ch, src)
        assert per_partition("default") == [(p, 100, 100) for p in range(5)]
    finally:
        ch.command(f"DROP TABLE IF EXISTS default.{name}")


def test_add_and_drop_column_and_mutation(project: Project, ch: Client) -> None:
    db = unique("app")
    ch.command(f"CREATE DATABASE {db}")
    ch.command(f"CREATE TABLE {db}.t (id UInt64, start DateTime, v UInt8) ENGINE = MergeTree ORDER BY id")
    ch.command(
        f"INSERT INTO {db}.t SELECT number, toDateTime('2026-01-01 00:00:00') + number * 60, 1 FROM numbers(5000)"
    )
    project.write_revision(
        "a1",
        None,
        f"""
        op.add_column_if_missing("{db}", "t", "finish", "DateTime", after="start")
        op.run_mutation(
            "{db}",
            "t",
            "UPDATE finish = start + 60 WHERE finish != start + 60",
            done_when="SELECT countIf(finish != start + 60) = 0 FROM {db}.t",
        )
        op.verify("finish is start + 1 minute", "SELECT countIf(finish - start != 60) FROM {db}.t")
        """,
        f'op.drop_column_if_exists("{db}", "t", "finish")',
    )

    def columns() -> list[str]:
        return [
            str(r[0])
            for r in ch.query(
                "SELECT name FROM system.columns WHERE database={d:String} AND table='t' ORDER BY position",
                parameters={"d": db},
            ).result_rows
        ]

    def up() -> None:
        assert columns() == ["id", "start", "finish", "v"]
        assert scalar(ch, f"SELECT countIf(finish - start != 60) FROM {db}.t") == 0
        assert scalar(ch, f"SELECT count() FROM {db}.t") == 5000

    cycle(project, up, lambda: _assert(columns() == ["id", "start", "v"]))
    mutations = scalar(
        ch, f"SELECT count() FROM system.mutations WHERE database = '{db}' AND command LIKE '%UPDATE finish%'"
    )
    assert mutations == 1  # the re-runs found nothing to do and issued no mutation


def test_add_column_refuses_a_different_type(project: Project, ch: Client) -> None:
    db = unique("app")
    ch.command(f"CREATE DATABASE {db}")
    ch.command(f"CREATE TABLE {db}.t (id UInt64, extra String) ENGINE = MergeTree ORDER BY id")
    project.write_revision("a1", None, f'op.add_column_if_missing("{db}", "t", "extra", "UInt32")', "")
    result = project.run("upgrade", "head")
    assert result.exit_code == 8
    assert (
        f"column extra of {db}.t exists with type String, but the revision adds it as UInt32;"
        in result.stderr
    )


def test_failing_mutation_reports_latest_fail_reason(project: Project, ch: Client) -> None:
    """The mutation is accepted, then fails on the engine row by row: the run stops with the engine's
    ``latest_fail_reason`` and says how to clear the stuck mutation."""
    db = unique("app")
    ch.command(f"CREATE DATABASE {db}")
    ch.command(f"CREATE TABLE {db}.t (id UInt64, s String) ENGINE = MergeTree ORDER BY id")
    ch.command(f"INSERT INTO {db}.t SELECT number, 'x' FROM numbers(10)")
    project.write_revision(
        "a1",
        None,
        f"""op.run_mutation("{db}", "t", "UPDATE s = toString(throwIf(id > 5, 'id above 5')) WHERE 1")""",
        "",
    )
    try:
        result = project.run("upgrade", "head")
        assert result.exit_code == 6
        ((mutation_id, is_done, reason),) = ch.query(
            f"SELECT mutation_id, is_done, latest_fail_reason FROM system.mutations WHERE database = '{db}'"
        ).result_rows
        assert is_done == 0 and str(reason).startswith("Code: 395. DB::Exception: id above 5:")
        errors = [line for line in result.stderr.splitlines() if line.startswith("k2-migrate: error:")]
        assert len(errors) == 1 and "Traceback" not in result.output
        assert errors[0].startswith(
            f"k2-migrate: error: mutation {mutation_id} on {db}.t failed: Code: 395. DB::Exception: id above 5:"
        )
        assert errors[0].endswith(
            f"fix the cause, then KILL MUTATION WHERE mutation_id = '{mutation_id}' and run the same command again"
        )
        assert scalar(ch, f"SELECT countIf(s != 'x') FROM {db}.t") == 0
    finally:
        ch.command(
            f"KILL MUTATION WHERE database = '{db}'"
        )  # it would be retried for the rest of the session


def test_execute_sql_is_skipped_when_done(project: Project, ch: Client) -> None:
    db = unique("app")
    ch.command(f"CREATE DATABASE {db}")
    ch.command(f"CREATE TABLE {db}.t (id UInt64) ENGINE = MergeTree ORDER BY id")
    project.write_revision(
        "a1",
        None,
        f'op.execute_sql("INSERT INTO {db}.t SELECT number FROM numbers(7)", done_when="SELECT count() > 0 FROM {db}.t")',
        f'op.execute_sql("TRUNCATE TABLE {db}.t")',
    )
    cycle(
        project,
        lambda: _assert(scalar(ch, f"SELECT count() FROM {db}.t") == 7),
        lambda: _assert(scalar(ch, f"SELECT count() FROM {db}.t") == 0),
    )


def test_stop_and_start_merges(project: Project, ch: Client) -> None:
    db = unique("app")
    ch.command(f"CREATE DATABASE {db}")
    ch.command(f"CREATE TABLE {db}.t (id UInt64) ENGINE = ReplacingMergeTree ORDER BY id")
    project.write_revision("a1", None, f'op.stop_merges("{db}", "t")', f'op.start_merges("{db}", "t")')
    assert project.run("upgrade", "head").exit_code == 0
    ch.command(f"INSERT INTO {db}.t VALUES (1)")
    ch.command(f"INSERT INTO {db}.t VALUES (1)")
    # The run restarts merges it stopped itself only for guards; an explicit stop_merges step stays.
    with pytest.raises(Exception, match=r"Cancelled merging parts|ABORTED"):
        ch.command(f"OPTIMIZE TABLE {db}.t FINAL")
    assert project.run("downgrade", "base").exit_code == 0
    ch.command(f"OPTIMIZE TABLE {db}.t FINAL")
    assert scalar(ch, f"SELECT count() FROM {db}.t") == 1


def _assert(condition: bool) -> None:
    assert condition


def test_tables_and_types_described_with_clickhouse_sqlalchemy(project: Project, ch: Client) -> None:
    db = unique("app")
    project.write_revision(
        "a1",
        None,
        f"""
        from sqlalchemy import Column, MetaData, Table, func, text
        from clickhouse_sqlalchemy import engines, types

        candles = Table(
            "candles",
            MetaData(),
            Column("symbol", types.LowCardinality(types.String), primary_key=True),
            Column("window_start", types.DateTime64(3, "UTC")),
            Column("volume", types.SimpleAggregateFunction("sum", types.Decimal(38, 8))),
            engines.AggregatingMergeTree(
                order_by=("symbol", "window_start"), partition_by=func.toYYYYMM(text("window_start"))
            ),
            schema="{db}",
        )
        op.create_database("{db}")
        op.create_object("{db}", "candles", candles)
        op.add_column_if_missing("{db}", "candles", "window_end", types.DateTime64(3, "UTC"), after="window_start")
        """,
        f"""
        op.drop_object("{db}", "candles")
        op.drop_database("{db}")
        """,
    )
    plan = project.run("plan")
    assert "CREATE TABLE app_" in plan.stdout and "ENGINE = AggregatingMergeTree()" in plan.stdout

    def up() -> None:
        columns = ch.query(
            f"SELECT name, type FROM system.columns WHERE database = '{db}' AND table = 'candles' ORDER BY position"
        ).result_rows
        assert [tuple(c) for c in columns] == [
            ("symbol", "LowCardinality(String)"),
            ("window_start", "DateTime64(3, 'UTC')"),
            ("window_end", "DateTime64(3, 'UTC')"),
            ("volume", "SimpleAggregateFunction(sum, Decimal(38, 8))"),
        ]
        assert engines_in(ch, db) == {"candles": "AggregatingMergeTree"}

    assert project.run("upgrade", "head").exit_code == 0
    up()
    # Run again over its own result, the table is no longer what its create_object describes: that
    # is drift (the revision's later step added window_end), not an object to keep in silence.
    assert project.run("stamp", "base").exit_code == 0
    rerun = project.run("upgrade", "head")
    assert rerun.exit_code == 8, rerun.output
    assert f"{db}.candles exists with another definition" in rerun.stderr and "window_end" in rerun.stderr
    reverted = project.run("downgrade", "base")
    assert reverted.exit_code == 0, reverted.output
    assert db not in databases(ch)
    again = project.run("upgrade", "head")
    assert again.exit_code == 0, again.output
    up()


def test_drop_objects_together(project: Project, ch: Client) -> None:
    db = unique("app")
    ch.command(f"CREATE DATABASE {db}")
    ch.command(f"CREATE TABLE {db}.t (id UInt64) ENGINE = MergeTree ORDER BY id")
    for i in range(2):
        ch.command(
            f"CREATE TABLE {db}.q{i} (id UInt64) ENGINE = Kafka SETTINGS kafka_broker_list = '127.0.0.1:9',"
            f" kafka_topic_list = 't{i}', kafka_group_name = 'g{i}', kafka_format = 'JSONEachRow'"
        )
        ch.command(f"CREATE MATERIALIZED VIEW {db}.v{i} TO {db}.t AS SELECT id FROM {db}.q{i}")
    project.write_revision("a1", None, f'op.drop_objects("{db}", ["q0", "q1", "v0", "v1"])', "")
    result = project.run("upgrade", "head", "--json")
    assert result.exit_code == 0, result.output
    assert table_names(ch, db) == {"t"}
    assert project.run("stamp", "base").exit_code == 0
    again = json.loads(project.run("upgrade", "head", "--json").stdout)
    assert again["revisions"][0]["steps"][0]["note"] == "already gone"
    ch.command(f"INSERT INTO {db}.t VALUES (1)")
    project.write_revision("a1", None, f'op.drop_objects("{db}", ["t"])', "")
    assert project.run("stamp", "base").exit_code == 0
    refused = project.run("upgrade", "head")
    assert refused.exit_code == 5 and f"refusing to drop {db}.t: it holds rows" in refused.stderr
