"""A column's type is compared as the engine names it, not as the revision spelt it.

``op.add_column_if_missing(..., "INT")`` creates an ``Int32`` column; the same revision run again
(stamped back, as after a crash before the version table was written) must find that column and
keep it, whatever alias, case or spacing the revision used. A column that exists with another type
is drift (exit 8), named with its table, column and both types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.conftest import Project, scalar, unique

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

#: Spellings a revision may use, and what system.columns shows for each.
SPELLINGS = {
    "i": ("INT", "Int32"),
    "big": ("bigint", "Int64"),
    "price": ("Decimal(10,2)", "Decimal(10, 2)"),
    "tag": ("LowCardinality(TEXT)", "LowCardinality(String)"),
    "maybe": ("Nullable(INT)", "Nullable(Int32)"),
    "pair": ("Tuple(a INT, b TEXT)", "Tuple(a Int32, b String)"),
    "flag": ("BOOLEAN", "Bool"),
}


def live_types(ch: Client, db: str) -> dict[str, str]:
    rows = ch.query(
        "SELECT name, type FROM system.columns WHERE database = {d:String} AND table = 't'",
        parameters={"d": db},
    ).result_rows
    return {str(name): " ".join(str(type_).split()) for name, type_ in rows}


def test_a_column_added_under_an_alias_is_kept_when_the_revision_runs_again(
    project: Project, ch: Client
) -> None:
    db = unique("app")
    # The table in a revision of its own: run again over its columns, a create_object of the bare
    # table would be drift (the table is no longer what its DDL says); the columns' revision is not.
    project.write_revision(
        "a0",
        None,
        f'op.create_database("{db}")\n'
        f'op.create_object("{db}", "t", "CREATE TABLE {db}.t (id UInt64) ENGINE = MergeTree ORDER BY id")',
        f'op.drop_object("{db}", "t")\nop.drop_database("{db}")',
    )
    lines = [
        f'op.add_column_if_missing("{db}", "t", "{column}", "{spelt}")'
        for column, (spelt, _) in SPELLINGS.items()
    ]
    project.write_revision("a1", "a0", "\n".join(lines), "")
    first = project.run("upgrade", "head")
    assert first.exit_code == 0, first.output
    expected = {"id": "UInt64"} | {column: live for column, (_, live) in SPELLINGS.items()}
    assert live_types(ch, db) == expected

    assert project.run("stamp", "a0").exit_code == 0
    again = project.run("upgrade", "head")

    assert again.exit_code == 0, again.output
    assert again.stderr.count("exists, kept") == len(SPELLINGS)  # every column
    assert live_types(ch, db) == expected


def test_an_existing_column_of_another_type_is_drift(project: Project, ch: Client) -> None:
    db = unique("app")
    ch.command(f"CREATE DATABASE {db}")
    ch.command(f"CREATE TABLE {db}.t (id UInt64, n Int64) ENGINE = MergeTree ORDER BY id")
    ch.command(f"INSERT INTO {db}.t VALUES (1, 5000000000)")
    project.write_revision("a1", None, f'op.add_column_if_missing("{db}", "t", "n", "INT")', "")

    result = project.run("upgrade", "head")

    assert result.exit_code == 8
    assert (
        f"k2-migrate: error: column n of {db}.t exists with type Int64, but the revision adds it as Int32 "
        "(written INT); the schema has drifted: change the column or the revision"
    ) in result.stderr
    assert live_types(ch, db) == {"id": "UInt64", "n": "Int64"}
    assert scalar(ch, f"SELECT n FROM {db}.t") == 5000000000


def test_a_type_the_engine_does_not_know_is_a_usage_error(project: Project, ch: Client) -> None:
    db = unique("app")
    ch.command(f"CREATE DATABASE {db}")
    ch.command(f"CREATE TABLE {db}.t (id UInt64, n Int32) ENGINE = MergeTree ORDER BY id")
    project.write_revision("a1", None, f'op.add_column_if_missing("{db}", "t", "n", "Int33")', "")

    result = project.run("upgrade", "head")

    assert result.exit_code == 2
    assert (
        f"add_column_if_missing({db}.t.n): 'Int33' is not a type this ClickHouse knows; fix the type in the revision"
    ) in result.stderr
    # The failure was journaled on the same connection: the run's log shows the step as failed.
    log = project.run("log", "--json")
    assert log.exit_code == 0 and "is not a type this ClickHouse knows" in log.stdout
