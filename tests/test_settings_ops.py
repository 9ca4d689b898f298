"""operations/settings.py and the MATERIALIZED/ALIAS kinds of the column operations: each applied, run
again (it finds its work done and says so), and reversed, every state read back from system tables."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k2_migrations.operations.settings import ExtendOrderBy, ShrinkOrderBy
from tests.conftest import Project, scalar, unique

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


def table_row(ch: Client, db: str, *columns: str) -> tuple[object, ...]:
    rows = ch.query(f"SELECT {', '.join(columns)} FROM system.tables WHERE database = '{db}' AND name = 't'")
    return tuple(rows.result_rows[0])


def columns(ch: Client, db: str) -> list[tuple[object, ...]]:
    return [
        tuple(r)
        for r in ch.query(
            "SELECT name, type, default_kind, default_expression FROM system.columns"
            f" WHERE database = '{db}' AND table = 't' ORDER BY position"
        ).result_rows
    ]


def run_twice(project: Project) -> str:
    """upgrade head, then stamp base and upgrade head again: the second run's output."""
    first = project.run("upgrade", "head")
    assert first.exit_code == 0, first.output
    assert project.run("stamp", "base").exit_code == 0
    again = project.run("upgrade", "head")
    assert again.exit_code == 0, again.output
    return again.output


def make(ch: Client, db: str, definition: str) -> None:
    ch.command(f"CREATE DATABASE {db}")
    ch.command(f"CREATE TABLE {db}.t {definition}")
    ch.command(f"INSERT INTO {db}.t (id) SELECT number FROM numbers(50)")


def test_settings_and_comment_set_rerun_and_restored(ch: Client, project: Project) -> None:
    db = unique("sets")
    make(
        ch,
        db,
        "(id UInt64) ENGINE = MergeTree ORDER BY id SETTINGS merge_with_ttl_timeout = 3600 COMMENT 'old'",
    )
    start = table_row(ch, db, "engine_full", "comment")
    project.write_revision(
        "s1",
        None,
        f'op.modify_setting("{db}", "t", {{"merge_with_ttl_timeout": 7200, "ttl_only_drop_parts": True}})\n'
        f'op.modify_comment("{db}", "t", "it\'s new")',
        f'op.restore_comment("{db}", "t")\nop.restore_settings("{db}", "t", ["merge_with_ttl_timeout", "ttl_only_drop_parts"])',
    )
    project.write_revision(
        "s2",
        "s1",
        f'op.reset_setting("{db}", "t", ["ttl_only_drop_parts", "min_bytes_for_wide_part"])',
        f'op.restore_settings("{db}", "t", ["min_bytes_for_wide_part", "ttl_only_drop_parts"])',
    )
    assert project.run("upgrade", "s1").exit_code == 0
    upgraded = table_row(ch, db, "engine_full", "comment")
    assert upgraded == (
        "MergeTree ORDER BY id SETTINGS merge_with_ttl_timeout = 7200, index_granularity = 8192, ttl_only_drop_parts = 1",
        "it's new",
    )
    assert project.run("stamp", "base").exit_code == 0
    again = project.run("upgrade", "s1")
    assert again.output.count("already as wanted") == 2, again.output
    assert table_row(ch, db, "engine_full", "comment") == upgraded
    assert project.run("upgrade", "s2").exit_code == 0
    assert table_row(ch, db, "engine_full") == (
        "MergeTree ORDER BY id SETTINGS merge_with_ttl_timeout = 7200, index_granularity = 8192",
    )
    assert project.run("stamp", "s1").exit_code == 0
    assert "none is set" in project.run("upgrade", "s2").output
    assert project.run("downgrade", "s1").exit_code == 0
    assert table_row(ch, db, "engine_full", "comment") == upgraded
    assert project.run("downgrade", "base").exit_code == 0
    assert table_row(ch, db, "engine_full", "comment") == start
    assert scalar(ch, f"SELECT count() FROM {db}.t") == 50


def test_a_sorting_key_extended_rerun_and_shrunk_back(ch: Client, project: Project) -> None:
    db = unique("keys")
    make(ch, db, "(id UInt64, name String) ENGINE = MergeTree ORDER BY id")
    extend = ExtendOrderBy(db, "t", "id, c, toDate(d)", [("c", "UInt8"), ("d", "DateTime")])
    assert extend.reverse().__dict__ == ShrinkOrderBy(db, "t", "id", ["c", "d"]).__dict__
    project.write_revision(
        "k1",
        None,
        f'op.extend_order_by("{db}", "t", "id, c, toDate(d)", [("c", "UInt8"), ("d", "DateTime")])',
        f'op.shrink_order_by("{db}", "t", "id", ["c", "d"])',
    )
    output = run_twice(project)
    assert "already as wanted" in output
    assert table_row(ch, db, "sorting_key", "primary_key") == ("id, c, toDate(d)", "id")
    assert [c[:2] for c in columns(ch, db)] == [
        ("id", "UInt64"),
        ("name", "String"),
        ("c", "UInt8"),
        ("d", "DateTime"),
    ]
    assert project.run("downgrade", "base").exit_code == 0
    assert table_row(ch, db, "sorting_key", "primary_key") == ("id", "id")
    assert [c[0] for c in columns(ch, db)] == ["id", "name"]
    assert scalar(ch, f"SELECT count() FROM {db}.t") == 50


def test_extending_a_key_with_an_existing_column_is_drift(ch: Client, project: Project) -> None:
    db = unique("keys")
    make(ch, db, "(id UInt64, c UInt8) ENGINE = MergeTree ORDER BY id")
    project.write_revision("k1", None, f'op.extend_order_by("{db}", "t", "id, c", [("c", "UInt8")])', "")
    result = project.run("upgrade", "head")
    assert result.exit_code == 8, result.output
    assert "column c exists already and the sorting key is 'id'" in result.stderr
    assert table_row(ch, db, "sorting_key") == ("id",)


def test_materialized_and_alias_columns_added_changed_and_restored(ch: Client, project: Project) -> None:
    db = unique("kinds")
    make(ch, db, "(id UInt64) ENGINE = MergeTree ORDER BY id")
    project.write_revision(
        "m1",
        None,
        f'op.add_column_if_missing("{db}", "t", "m", "UInt64", default="id * 2", default_kind="materialized")\n'
        f'op.add_column_if_missing("{db}", "t", "a", "UInt64", default="id + 1", default_kind="ALIAS")',
        f'op.drop_column_if_exists("{db}", "t", "a")\nop.drop_column_if_exists("{db}", "t", "m")',
    )
    project.write_revision(
        "m2",
        "m1",
        f'op.modify_column("{db}", "t", "m", default="id * 3", default_kind="MATERIALIZED")\n'
        f'op.modify_column("{db}", "t", "a", default=None)',
        f'op.restore_column("{db}", "t", "a")\nop.restore_column("{db}", "t", "m")',
    )
    output = run_twice(project)
    assert output.count("already as wanted") == 2 and output.count("exists, kept") == 2, output
    assert columns(ch, db) == [
        ("id", "UInt64", "", ""),
        ("m", "UInt64", "MATERIALIZED", "id * 3"),
        ("a", "UInt64", "", ""),
    ]
    assert scalar(ch, f"SELECT sum(m) FROM {db}.t") == 3 * sum(range(50))
    assert project.run("downgrade", "m1").exit_code == 0
    assert columns(ch, db) == [
        ("id", "UInt64", "", ""),
        ("m", "UInt64", "MATERIALIZED", "id * 2"),
        ("a", "UInt64", "ALIAS", "id + 1"),
    ]
    assert project.run("downgrade", "base").exit_code == 0
    assert columns(ch, db) == [("id", "UInt64", "", "")]
