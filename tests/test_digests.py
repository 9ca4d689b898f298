"""Edited revisions: the source digest of each applied revision is recorded with its change of heads,
and ``upgrade`` and ``check`` refuse (exit 8) once a revision's .py or a .sql file it runs changed.

The comparison is property-tested; the rest runs ``k2-migrate`` on the test engine and reads the
digests back from the version record.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k2_migrations.decisions.digests import (
    applied_revisions,
    edited_revisions,
    source_digest,
    sql_files_run,
)
from k2_migrations.state.digests import revision_digest
from tests.conftest import Project, unique

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

IDS = st.sampled_from(["a", "b", "c", "d", "e"])
DIGESTS = st.sampled_from(["", "x", "y"])


# -- the pure decision -------------------------------------------------------------------------------


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, tuple[str, ...]]:
    """A revision graph: each revision's parents are among the revisions before it."""
    order = draw(st.lists(IDS, unique=True, min_size=1))
    return {
        rev: tuple(draw(st.lists(st.sampled_from(order[:i]), unique=True, max_size=2))) if i else ()
        for i, rev in enumerate(order)
    }


@given(graphs(), st.data())
def test_edited_are_the_applied_revisions_whose_known_digest_differs(
    parents: dict[str, tuple[str, ...]], data: st.DataObject
) -> None:
    revisions = sorted(parents)
    heads = data.draw(st.lists(st.sampled_from([*revisions, "gone"]), unique=True, max_size=2))
    recorded = data.draw(st.dictionaries(st.sampled_from([*revisions, "gone"]), DIGESTS))
    current = data.draw(st.dictionaries(st.sampled_from(revisions), DIGESTS.filter(bool)))
    found = edited_revisions(recorded, current, heads, parents)
    applied = applied_revisions(heads, parents)
    assert list(found) == sorted(found)
    for rev in {*revisions, "gone"}:
        expected = rev in applied and rev in current and recorded.get(rev, "") not in {"", current[rev]}
        assert (rev in found) == expected, rev


@given(graphs(), st.data())
def test_applied_are_the_heads_and_their_ancestors(
    parents: dict[str, tuple[str, ...]], data: st.DataObject
) -> None:
    heads = data.draw(st.lists(st.sampled_from(sorted(parents)), unique=True, max_size=2))
    applied = applied_revisions(heads, parents)
    assert set(heads) <= applied
    assert all(set(parents[rev]) <= applied for rev in applied)
    # Nothing else: every revision found is reached from a head.
    reached = set(heads)
    for _ in parents:
        reached |= {p for rev in reached for p in parents[rev]}
    assert applied == reached


@given(st.binary(max_size=40), st.binary(max_size=40))
def test_line_endings_are_no_edit_but_any_other_byte_is(text: bytes, other: bytes) -> None:
    lf = text.replace(b"\r\n", b"\n")
    assert source_digest(lf, {"f.sql": lf}) == source_digest(
        lf.replace(b"\n", b"\r\n"), {"f.sql": lf.replace(b"\n", b"\r\n")}
    )
    if other.replace(b"\r\n", b"\n") != lf:
        assert source_digest(lf, {}) != source_digest(other, {})
        assert source_digest(b"", {"f.sql": lf}) != source_digest(b"", {"f.sql": other})
    assert source_digest(lf, {"f.sql": None}) != source_digest(lf, {"f.sql": b""})
    assert source_digest(lf, {}) != source_digest(lf, {"f.sql": None})


def test_the_sql_files_a_revision_runs_are_its_literal_run_sql_file_paths() -> None:
    source = "def upgrade():\n    op.run_sql_file('b.sql')\n    op.run_sql_file(path='a.sql')\n    op.run_sql_file(x)\n"
    assert sql_files_run(source) == ("a.sql", "b.sql")
    assert sql_files_run("def upgrade(:\n") == ()


# -- real runs ---------------------------------------------------------------------------------------


def recorded(ch: Client, project: Project) -> dict[str, str]:
    rows = ch.query(
        f"SELECT revision, argMaxIf(digest, seq, digest != '') FROM `{project.migrations_database}`"
        ".k2_migrations_versions GROUP BY revision"
    ).result_rows
    return {str(r): str(d) for r, d in rows}


@pytest.fixture
def applied(project: Project) -> tuple[Project, str]:
    """Two revisions applied on a small schema of their own; the second runs a .sql file."""
    db = unique("dg")
    project.write_revision(
        "d1",
        None,
        f"op.execute_sql('CREATE DATABASE IF NOT EXISTS {db}')",
        f"op.execute_sql('DROP DATABASE IF EXISTS {db}')",
    )
    (project.versions / "d2.upgrade.sql").write_text(
        f"CREATE TABLE IF NOT EXISTS {db}.t (id UInt64) ENGINE = MergeTree ORDER BY id;\n"
    )
    project.write_revision(
        "d2", "d1", "op.run_sql_file('d2.upgrade.sql')", f"op.execute_sql('DROP TABLE IF EXISTS {db}.t')"
    )
    result = project.run("upgrade", "head")
    assert result.exit_code == 0, result.output
    return project, db


def test_upgrade_records_each_revisions_digest(applied: tuple[Project, str], ch: Client) -> None:
    project, _ = applied
    assert recorded(ch, project) == {
        "d1": revision_digest(project.versions / "rd1.py"),
        "d2": revision_digest(project.versions / "rd2.py"),
    }
    assert len(set(recorded(ch, project).values())) == 2


@pytest.mark.parametrize("edit", ["py", "sql"])
def test_an_edited_revision_stops_upgrade_and_check_until_accepted(
    applied: tuple[Project, str], ch: Client, edit: str, caplog: pytest.LogCaptureFixture
) -> None:
    project, db = applied
    if edit == "py":
        edited = project.versions / "rd1.py"
        edited.write_text(edited.read_text().replace("def upgrade", "# reviewed\ndef upgrade"))
        name, file = "d1", "rd1.py"
    else:
        edited = project.versions / "d2.upgrade.sql"
        edited.write_text(edited.read_text() + "-- changed\n")
        name, file = "d2", "rd2.py"
    before = recorded(ch, project)
    with caplog.at_level(logging.INFO, logger="k2_migrations.sql"):
        up = project.run("-v", "upgrade", "head")
    assert up.exit_code == 8, up.output
    assert "edited after they were applied" in up.stderr and f"{name} (" in up.stderr and file in up.stderr
    assert "k2-migrate accept" in up.stderr and "Nothing to do" not in up.stdout
    assert any("fast path: edited after applied" in r.getMessage() for r in caplog.records)
    check = project.run("check")
    assert check.exit_code == 8 and f"{name} (" in check.output, check.output
    as_json = project.run("check", "--json")
    assert as_json.exit_code == 8 and "edited after they were applied" in as_json.stdout
    assert recorded(ch, project) == before  # refusing wrote nothing

    other = "d2" if name == "d1" else "d1"
    refused = project.run("accept", other)
    assert refused.exit_code == 2 and other in refused.stderr, refused.output
    accepted = project.run("accept", name)
    assert accepted.exit_code == 0 and f"accepted: {name}" in accepted.output, accepted.output
    assert recorded(ch, project)[name] == revision_digest(project.versions / f"r{name}.py")
    assert recorded(ch, project)[other] == before[other]
    heads = ch.query(f"SELECT version_num FROM `{project.migrations_database}`.alembic_version").result_rows
    assert [r[0] for r in heads] == ["d2"]  # the heads are as they were
    assert project.run("check").exit_code == 0
    again = project.run("upgrade", "head")
    assert again.exit_code == 0 and "Nothing to do" in again.output, again.output
    assert ch.command(f"EXISTS TABLE {db}.t") == 1


def test_line_endings_alone_are_no_edit(applied: tuple[Project, str]) -> None:
    project, _ = applied
    for file in (project.versions / "rd1.py", project.versions / "d2.upgrade.sql"):
        file.write_bytes(file.read_bytes().replace(b"\n", b"\r\n"))
    assert project.run("check").exit_code == 0
    result = project.run("upgrade", "head")
    assert result.exit_code == 0 and "Nothing to do" in result.output, result.output


def test_a_downgraded_revision_may_be_edited_and_a_stamp_records_digests(
    applied: tuple[Project, str], ch: Client
) -> None:
    project, _ = applied
    assert project.run("downgrade", "d1").exit_code == 0
    edited = project.versions / "rd2.py"
    edited.write_text(edited.read_text().replace("def upgrade", "# fixed\ndef upgrade"))
    result = project.run("upgrade", "head")
    assert result.exit_code == 0, result.output
    assert recorded(ch, project)["d2"] == revision_digest(edited)
    # A stamp says the database is as the files are now: it records their digests.
    first = project.versions / "rd1.py"
    first.write_text(first.read_text() + "# edited, then stamped\n")
    assert project.run("stamp", "--purge", "d1").exit_code == 0
    edited.write_text(edited.read_text() + "# edited, then stamped\n")
    assert project.run("stamp", "d2").exit_code == 0
    assert recorded(ch, project) == {"d1": revision_digest(first), "d2": revision_digest(edited)}
    assert project.run("upgrade", "head").exit_code == 0
    first.write_text(first.read_text() + "# edited again\n")
    assert project.run("upgrade", "head").exit_code == 8


def test_offline_scripts_record_digests(applied: tuple[Project, str]) -> None:
    project, _ = applied
    script = project.run("upgrade", "--sql", "base:head")
    assert script.exit_code == 0, script.output
    assert revision_digest(project.versions / "rd2.py") in script.stdout
    assert "ADD COLUMN IF NOT EXISTS digest" in script.stdout


def test_a_record_without_the_column_gains_it_and_its_rows_are_unknown(project: Project, ch: Client) -> None:
    database = project.migrations_database
    ch.command(f"CREATE DATABASE {database}")
    # The record as the release before digests created it.
    ch.command(
        f"CREATE TABLE {database}.k2_migrations_versions (seq UInt64, revision String, applied UInt8,"
        " attempt_id String, os_user String, db_user String, host String, pid UInt32, command String,"
        " at DateTime64(6, 'UTC')) ENGINE = MergeTree ORDER BY (revision, seq)"
    )
    ch.command(
        f"CREATE VIEW {database}.alembic_version AS SELECT revision AS version_num FROM"
        f" {database}.k2_migrations_versions GROUP BY revision HAVING argMax(applied, seq) = 1"
    )
    ch.command(
        f"INSERT INTO {database}.k2_migrations_versions VALUES (1, 'o1', 1, '', '', '', '', 0, 'old', now64(6))"
    )
    project.write_revision("o1", None, "op.execute_sql('SELECT 1')", "pass")
    (project.versions / "ro1.py").write_text((project.versions / "ro1.py").read_text() + "# edited since\n")
    project.write_revision("o2", "o1", "op.execute_sql('SELECT 2')", "pass")
    result = project.run("upgrade", "head")
    assert result.exit_code == 0, result.output
    assert recorded(ch, project) == {"o1": "", "o2": revision_digest(project.versions / "ro2.py")}
    assert project.run("check").exit_code == 0
    assert project.run("upgrade", "head").exit_code == 0


def test_the_digest_covers_the_sql_files_read_beside_the_revision(tmp_path: Path) -> None:
    revision = tmp_path / "r.py"
    revision.write_text("def upgrade():\n    op.run_sql_file('u.sql')\n")
    missing = revision_digest(revision)
    (tmp_path / "u.sql").write_text("SELECT 1;\n")
    present = revision_digest(revision)
    (tmp_path / "u.sql").write_text("SELECT 2;\n")
    assert len({missing, present, revision_digest(revision)}) == 3


def test_a_downgrade_does_not_take_an_edit_of_the_revision_it_returns_to(
    applied: tuple[Project, str],
) -> None:
    project, _ = applied
    edited = project.versions / "rd1.py"
    edited.write_text(edited.read_text() + "# edited while applied\n")
    assert project.run("downgrade", "d1").exit_code == 0
    result = project.run("upgrade", "head")
    assert result.exit_code == 8 and "d1 (" in result.stderr, result.output
