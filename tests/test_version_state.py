"""The version state: an append-only record, one INSERT per change of heads, read back from the engine.

Every assertion here reads the engine's own tables (the record, system.tables, system.mutations,
system.parts), not k2-migrate's report of itself.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tests.conftest import Project, scalar, unique

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


def three_revisions(project: Project, db: str) -> None:
    project.write_revision("a1", None, f"op.create_database('{db}')", f"op.drop_database('{db}')")
    project.write_revision(
        "a2",
        "a1",
        f"op.create_object('{db}', 't', 'CREATE TABLE {db}.t (id UInt64) ENGINE = MergeTree ORDER BY id')",
        f"op.drop_object('{db}', 't')",
    )
    project.write_revision(
        "a3",
        "a2",
        f"op.add_column_if_missing('{db}', 't', 'note', 'String')",
        f"op.drop_column_if_exists('{db}', 't', 'note')",
    )


def record(ch: Client, database: str) -> list[tuple[int, str, int]]:
    rows = ch.query(
        f"SELECT seq, revision, applied FROM {database}.k2_migrations_versions ORDER BY seq, revision"
    ).result_rows
    return [(int(s), str(r), int(a)) for s, r, a in rows]


def parts(ch: Client, database: str) -> object:
    """Active parts of the record: every INSERT is one part until a merge (merges never lose rows)."""
    return scalar(
        ch,
        f"SELECT count() FROM system.parts WHERE database = '{database}'"
        " AND table = 'k2_migrations_versions' AND active",
    )


def current(project: Project) -> list[str]:
    result = project.run("current", "--json")
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout)["current"])


def test_each_change_of_heads_is_one_insert_and_nothing_is_ever_deleted(project: Project, ch: Client) -> None:
    db = unique("vs")
    three_revisions(project, db)
    state = project.migrations_database
    for args in (("upgrade", "head"), ("downgrade", "-1"), ("downgrade", "base"), ("upgrade", "a2")):
        result = project.run(*args)
        assert result.exit_code == 0, result.output
    assert record(ch, state) == [
        (1, "a1", 1),  # upgrade head: three changes
        (2, "a1", 0),
        (2, "a2", 1),
        (3, "a2", 0),
        (3, "a3", 1),
        (4, "a2", 1),  # downgrade -1
        (4, "a3", 0),
        (5, "a1", 1),  # downgrade base: a2 -> a1, a1 -> base
        (5, "a2", 0),
        (6, "a1", 0),
        (7, "a1", 1),  # upgrade a2
        (8, "a1", 0),
        (8, "a2", 1),
    ]
    assert current(project) == ["a2"]
    # Alembic's own name reads the same truth: a view over the record.
    assert scalar(
        ch, f"SELECT engine FROM system.tables WHERE database = '{state}' AND name = 'alembic_version'"
    ) == ("View")
    assert [r[0] for r in ch.query(f"SELECT version_num FROM {state}.alembic_version").result_rows] == ["a2"]
    assert scalar(ch, f"SELECT count() FROM system.mutations WHERE database = '{state}'") == 0


def test_a_merge_and_a_stamp_change_every_head_in_one_row_set(project: Project, ch: Client) -> None:
    db = unique("vs")
    project.write_revision("b1", None, f"op.create_database('{db}')", f"op.drop_database('{db}')")
    project.write_revision("b2", "b1", "pass", "pass")
    project.write_revision("b3", "b1", "pass", "pass")
    merge = project.versions / "rb4.py"
    merge.write_text(
        '"""merge"""\n\nrevision = "b4"\ndown_revision = ("b2", "b3")\nbranch_labels = None\n'
        "depends_on = None\n\n\ndef upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n"
    )
    state = project.migrations_database
    assert project.run("upgrade", "head").exit_code == 0
    assert current(project) == ["b4"]
    rows = record(ch, state)
    merge_seq = max(s for s, _, _ in rows)
    # The merge step removed both branch heads and added b4 in the same INSERT.
    assert sorted((r, a) for s, r, a in rows if s == merge_seq) == [("b2", 0), ("b3", 0), ("b4", 1)]
    before = parts(ch, state)
    stamped = project.run("stamp", "b2")
    assert stamped.exit_code == 0, stamped.output
    assert current(project) == ["b2"]
    assert parts(ch, state) in {int(str(before)) + 1, 1}  # one INSERT (or everything merged into one part)
    assert project.run("stamp", "head").exit_code == 0
    assert current(project) == ["b4"]


def test_a_previous_releases_version_table_is_adopted_not_lost(project: Project, ch: Client) -> None:
    db = unique("vs")
    three_revisions(project, db)
    state = project.migrations_database
    # What the previous release left: Alembic's MergeTree table with one row per head, and a1/a2 applied.
    ch.command(f"CREATE DATABASE {state}")
    ch.command(
        f"CREATE TABLE {state}.alembic_version (version_num String) ENGINE = MergeTree ORDER BY version_num"
    )
    ch.command(f"INSERT INTO {state}.alembic_version VALUES ('a2')")
    ch.command(f"CREATE DATABASE {db}")
    ch.command(f"CREATE TABLE {db}.t (id UInt64) ENGINE = MergeTree ORDER BY id")
    assert current(project) == ["a2"]  # read-only commands read the old table as it is
    up = project.run("upgrade", "head")
    assert up.exit_code == 0, up.output
    assert "a3 up" in up.stdout and "a1 up" not in up.stdout and "a2 up" not in up.stdout
    assert current(project) == ["a3"]
    rows = ch.query(
        f"SELECT seq, revision, applied, command FROM {state}.k2_migrations_versions ORDER BY seq, revision"
    ).result_rows
    assert [tuple(r[:3]) for r in rows] == [(1, "a2", 1), (2, "a2", 0), (2, "a3", 1)]
    assert "adopted" in rows[0][3]
    # The old table is kept under another name, its rows untouched.
    assert [
        r[0] for r in ch.query(f"SELECT version_num FROM {state}.alembic_version_legacy").result_rows
    ] == ["a2"]
    assert scalar(
        ch, f"SELECT engine FROM system.tables WHERE database = '{state}' AND name = 'alembic_version'"
    ) == ("View")


def test_a_previous_releases_cut_version_change_is_refused_without_a_journal(
    project: Project, ch: Client
) -> None:
    db = unique("vs")
    three_revisions(project, db)
    state = project.migrations_database
    ch.command(f"CREATE DATABASE {state}")
    ch.command(
        f"CREATE TABLE {state}.alembic_version (version_num String) ENGINE = MergeTree ORDER BY version_num"
    )
    ch.command(f"INSERT INTO {state}.alembic_version VALUES ('a1'), ('a2')")  # INSERT done, DELETE not
    up = project.run("upgrade", "head")
    assert up.exit_code == 7
    assert "lists both a1 and its descendant a2" in up.stderr and "stamp" in up.stderr
    # Nothing was adopted and nothing renamed: the operator decides.
    assert scalar(ch, f"SELECT count() FROM {state}.k2_migrations_versions") == 0
    assert scalar(
        ch, f"SELECT engine FROM system.tables WHERE database = '{state}' AND name = 'alembic_version'"
    ) == ("MergeTree")


def test_the_offline_script_creates_the_version_state_itself(project: Project) -> None:
    db = unique("vs")
    three_revisions(project, db)
    script = project.run("upgrade", "head", "--sql")
    assert script.exit_code == 0, script.output
    text = script.stdout
    state = project.migrations_database
    assert text.index(f"CREATE DATABASE IF NOT EXISTS {state}") < text.index("k2_migrations_versions")
    assert text.count("alembic_version") == 1  # only the view: Alembic's own writes are not in the script
    assert text.count(f"INSERT INTO {state}.k2_migrations_versions") == 3
