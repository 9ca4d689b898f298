"""Alembic's commands and options, as k2-migrate runs them: output, exit codes and the state left behind.

The script commands (merge, revision, history, heads, branches, show, edit) are checked on the files
they write and the lines they print; the ones that read or change the database (history -i, current
--verbose, show current, edit current, stamp --purge) against the engine's own tables. The stairway
runs in its own process on its own embedded engine.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import ROOT, SERVER_URL, Project, scalar, table_names, unique
from tests.support.kill_harness import environment

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


def branched(project: Project, db: str) -> None:
    """a creates ``db``; b1 and b2 each add a table on their own branch from a."""
    project.write_revision("a", None, f"op.create_database('{db}')", f"op.drop_database('{db}')")
    for name in ("b1", "b2"):
        project.write_revision(
            name,
            "a",
            f"op.create_object('{db}', '{name}', 'CREATE TABLE {db}.{name} (id UInt64) ENGINE = MergeTree ORDER BY id')",
            f"op.drop_object('{db}', '{name}')",
        )


def declared(path: Path, name: str) -> Any:
    """What a written revision file assigns to ``name`` (down_revision, branch_labels, depends_on)."""
    found = re.search(rf"^{name}\b[^=]*= (.+)$", path.read_text(), re.M)
    assert found is not None, path.read_text()
    return ast.literal_eval(found[1])


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("k2-migrate: error: "), stderr
    return lines[0]


# -- merge and revision ---------------------------------------------------------------------------


def test_merge_joins_the_revisions_named_and_defaults_to_all_heads(project: Project) -> None:
    branched(project, unique("app"))
    project.write_revision("b3", "a", "pass", "pass")
    named = project.run("merge", "-m", "join two", "b1", "b2", "--rev-id", "m12")
    assert named.exit_code == 0, named.output
    (merged,) = project.versions.glob("rm12_*.py")
    assert declared(merged, "down_revision") == ("b1", "b2")
    assert sorted(project.run("heads").stdout.split()) == ["(head)", "(head)", "b3", "m12"]

    every = project.run("merge", "-m", "join all", "--rev-id", "m_all", "--branch-label", "joined")
    assert every.exit_code == 0, every.output
    (all_file,) = project.versions.glob("rm_all_*.py")
    assert sorted(declared(all_file, "down_revision")) == ["b3", "m12"]
    assert project.run("heads").stdout.strip() == "m_all (joined) (head)"

    alone = project.run("merge", "-m", "nothing")
    assert alone.exit_code == 2
    assert "only one head; nothing to merge" in one_error_line(alone.stderr)
    unknown = project.run("merge", "-m", "x", "m_all", "nosuch")
    assert unknown.exit_code == 2
    assert "unknown revision 'nosuch'" in one_error_line(unknown.stderr)


def test_revision_takes_alembics_options(project: Project) -> None:
    branched(project, unique("app"))
    assert project.run("merge", "-m", "m", "--rev-id", "m").exit_code == 0

    not_a_head = project.run("revision", "-m", "off b1", "--head", "b1", "--rev-id", "s1")
    assert not_a_head.exit_code == 2
    assert "--splice" in one_error_line(not_a_head.stderr)
    assert not list(project.versions.glob("rs1_*.py"))

    spliced = project.run(
        "revision", "-m", "off b1", "--head", "b1", "--splice", "--rev-id", "s1",
        "--branch-label", "feature", "--depends-on", "b2",
    )  # fmt: skip
    assert spliced.exit_code == 0, spliced.output
    (written,) = project.versions.glob("rs1_off_b1.py")
    assert declared(written, "down_revision") == "b1"
    assert declared(written, "branch_labels") == ("feature",)
    assert declared(written, "depends_on") == "b2"
    assert "op.take_guards" in written.read_text()  # the ClickHouse template, not Alembic's generic one
    assert sorted(project.run("heads").stdout.strip().splitlines()) == ["m (head)", "s1 (feature) (head)"]

    two_heads = project.run("revision", "-m", "where")
    assert two_heads.exit_code == 2
    assert "2 heads (m, s1)" in one_error_line(two_heads.stderr)
    on_m = project.run("revision", "-m", "on m", "--head", "m", "--rev-id", "n1")
    assert on_m.exit_code == 0, on_m.output
    assert f"Generating {project.versions.resolve() / 'rn1_on_m.py'}" in on_m.stdout

    elsewhere = project.run(
        "revision", "-m", "x", "--head", "n1", "--version-path", str(project.root / "other")
    )
    assert elsewhere.exit_code == 2
    assert "not represented in current version locations" in one_error_line(elsewhere.stderr)
    here = project.run(
        "revision", "-m", "x", "--head", "n1", "--rev-id", "v1", "--version-path", str(project.versions)
    )
    assert here.exit_code == 0, here.output
    assert len(list(project.versions.glob("rv1_x.py"))) == 1


def test_quiet_silences_alembics_generating_lines(project: Project) -> None:
    quiet = project.run("-q", "revision", "-m", "first", "--rev-id", "q1")
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout == "" and quiet.stderr == ""
    assert len(list(project.versions.glob("rq1_first.py"))) == 1
    project.write_revision("q2", None, "pass", "pass")  # a second root: two heads to merge
    merged = project.run("-q", "merge", "-m", "join", "--rev-id", "q3")
    assert merged.exit_code == 0, merged.output
    assert merged.stdout == "" and merged.stderr == ""
    assert sorted(declared(next(project.versions.glob("rq3_join.py")), "down_revision")) == ["q1", "q2"]
    loud = project.run("revision", "-m", "second", "--rev-id", "q4")
    assert loud.exit_code == 0 and "Generating " in loud.stdout and "done" in loud.stdout


# -- history, branches, show, heads ---------------------------------------------------------------


def test_history_ranges_and_verbose_need_no_database(project: Project, ch: Client) -> None:
    branched(project, unique("app"))
    assert project.run("history").stdout.splitlines() == [
        "a -> b1 (head), revision b1",
        "a -> b2 (head), revision b2",
        "<base> -> a (branchpoint), revision a",
    ]
    ranged = project.run("history", "-r", "a:b1")
    assert ranged.stdout.splitlines() == [
        "a -> b1 (head), revision b1",
        "<base> -> a (branchpoint), revision a",
    ]
    verbose = project.run("history", "-r", ":a", "--verbose")
    assert (
        verbose.exit_code == 0 and "Rev: a (branchpoint)\nParent: <base>\nBranches into: b" in verbose.stdout
    )
    assert re.search(r"^Branches into: (b1, b2|b2, b1)$", verbose.stdout, re.M)
    bad = project.run("history", "-r", "a")
    assert bad.exit_code == 2 and "needs [START]:[END]" in one_error_line(bad.stderr)
    unknown = project.run("history", "-r", "zz:")
    assert unknown.exit_code == 2 and "unknown revision 'zz'" in one_error_line(unknown.stderr)
    assert project.migrations_database not in {str(r[0]) for r in ch.query("SHOW DATABASES").result_rows}


def test_history_indicates_the_current_revision_read_through_the_session(
    project: Project, ch: Client
) -> None:
    branched(project, unique("app"))
    fresh = project.run("history", "-i")
    assert fresh.exit_code == 0, fresh.output
    assert "(current)" not in fresh.stdout
    # Reading is all it did: no version record (Alembic's env.py path would have created one).
    assert "k2_migrations_versions" not in table_names(ch, project.migrations_database)

    assert project.run("upgrade", "b1").exit_code == 0
    assert project.run("history", "--indicate-current").stdout.splitlines() == [
        "a -> b1 (head) (current), revision b1",
        "a -> b2 (head), revision b2",
        "<base> -> a (branchpoint), revision a",
    ]
    up_to_current = project.run("history", "-r", ":current", "-i")
    assert up_to_current.stdout.splitlines() == [
        "a -> b1 (head) (current), revision b1",
        "<base> -> a (branchpoint), revision a",
    ]
    from_current = project.run("history", "-r", "current:", "--verbose")
    assert from_current.exit_code == 0 and "Rev: b1 (head)" in from_current.stdout
    assert "b2" not in from_current.stdout


def test_branches_and_heads(project: Project) -> None:
    branched(project, unique("app"))
    lines = project.run("branches").stdout.splitlines()
    assert lines[0] == "a (branchpoint)" and sorted(lines[1:3]) == ["  -> b1 (head)", "  -> b2 (head)"]
    verbose = project.run("branches", "--verbose")
    assert "Rev: a (branchpoint)" in verbose.stdout and "  -> b1 (head), revision b1" in verbose.stdout
    assert sorted(project.run("heads").stdout.splitlines()) == ["b1 (head)", "b2 (head)"]
    assert "Path: " in project.run("heads", "--verbose").stdout


def test_show_takes_ids_head_heads_and_current(project: Project) -> None:
    branched(project, unique("app"))
    assert "Rev: a (branchpoint)" in project.run("show", "a").stdout
    heads = project.run("show", "heads")
    assert heads.exit_code == 0 and "Rev: b1 (head)" in heads.stdout and "Rev: b2 (head)" in heads.stdout
    head = project.run("show", "head")
    assert head.exit_code == 2 and "more than one head" in one_error_line(head.stderr)
    unknown = project.run("show", "zz")
    assert unknown.exit_code == 2 and "unknown revision 'zz'" in one_error_line(unknown.stderr)
    at_base = project.run("show", "current")
    assert at_base.exit_code == 0 and "at base" in at_base.stdout
    assert project.run("upgrade", "b2").exit_code == 0
    current = project.run("show", "current")
    assert current.exit_code == 0 and "Rev: b2 (head)\nParent: a" in current.stdout
    assert "b1" not in current.stdout


def test_current_verbose_and_several_heads(project: Project) -> None:
    branched(project, unique("app"))
    assert project.run("upgrade", "heads").exit_code == 0
    plain = project.run("current")
    assert plain.exit_code == 0 and len(plain.stdout.splitlines()) == 2
    verbose = project.run("current", "--verbose")
    assert verbose.exit_code == 0, verbose.output
    lines = verbose.stdout.splitlines()
    assert lines[0].startswith("Current revision(s) for ") and lines[0].endswith(":")
    assert "Rev: b1 (head)\nParent: a\nPath: " in verbose.stdout
    assert "Rev: b2 (head)\nParent: a\nPath: " in verbose.stdout


# -- edit -----------------------------------------------------------------------------------------


def test_edit_opens_the_revision_files_in_the_editor(project: Project, tmp_path: Path) -> None:
    branched(project, unique("app"))
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\necho "# edited by the test" >> "$1"\n')
    editor.chmod(0o755)
    env = {"EDITOR": str(editor)}
    assert project.run("edit", "b1", env=env).exit_code == 0
    assert (project.versions / "rb1.py").read_text().endswith("# edited by the test\n")
    assert "edited" not in (project.versions / "rb2.py").read_text()

    at_base = project.run("edit", "current", env=env)
    assert at_base.exit_code == 2 and "no current revision" in one_error_line(at_base.stderr)
    assert project.run("upgrade", "b2").exit_code == 0
    assert project.run("edit", "current", env=env).exit_code == 0
    assert (project.versions / "rb2.py").read_text().endswith("# edited by the test\n")
    assert (project.versions / "rb1.py").read_text().count("edited") == 1

    unknown = project.run("edit", "zz", env=env)
    assert unknown.exit_code == 2 and "unknown revision 'zz'" in one_error_line(unknown.stderr)
    failing = project.run("edit", "a", env={"EDITOR": "false"})
    assert failing.exit_code == 2 and "set EDITOR" in one_error_line(failing.stderr)


# -- stamp --purge ----------------------------------------------------------------------------------


def rows(ch: Client, database: str) -> list[tuple[int, str, int]]:
    return [
        (int(seq), str(rev), int(applied))
        for seq, rev, applied in ch.query(
            f"SELECT seq, revision, applied FROM {database}.k2_migrations_versions ORDER BY seq, revision"
        ).result_rows
    ]


def test_stamp_purge_replaces_unknown_heads_in_one_insert(project: Project, ch: Client) -> None:
    db = unique("app")
    branched(project, db)
    project.write_revision("gone", "b1", "pass", "pass")
    assert project.run("upgrade", "heads").exit_code == 0
    (project.versions / "rgone.py").unlink()  # the record now names a revision the project lacks

    refused = project.run("stamp", "b1")
    assert refused.exit_code == 2
    assert "'gone', which this project does not have" in one_error_line(refused.stderr)
    before = rows(ch, project.migrations_database)

    purged = project.run("stamp", "--purge", "a")
    assert purged.exit_code == 0, purged.output
    assert purged.stdout.strip() == "stamped: b2, gone -> a"
    after = rows(ch, project.migrations_database)
    assert after[: len(before)] == before  # nothing rewritten, nothing removed
    added = after[len(before) :]
    newest = max(seq for seq, _, _ in before)
    assert added == [(newest + 1, "a", 1), (newest + 1, "b2", 0), (newest + 1, "gone", 0)]
    assert (
        scalar(ch, f"SELECT count() FROM system.mutations WHERE database = '{project.migrations_database}'")
        == 0
    )
    assert project.run("current").stdout.strip().endswith(": a — revision a")

    to_base = project.run("stamp", "--purge", "base")
    assert to_base.exit_code == 0 and to_base.stdout.strip() == "stamped: a -> base"
    assert rows(ch, project.migrations_database)[len(after) :] == [(newest + 2, "a", 0)]
    assert table_names(ch, db) == {"b1", "b2"}  # stamping runs nothing

    both = project.run("stamp", "b1", "b2")  # several targets, as Alembic's stamp takes them
    assert both.exit_code == 0 and both.stdout.strip() == "stamped: base -> b1, b2"
    journal = ch.query(
        f"SELECT operation FROM {project.migrations_database}.k2_migrations_journal WHERE status = 'stamped'"
        " ORDER BY at"
    ).result_rows
    assert [r[0] for r in journal] == ["stamp --purge a", "stamp --purge base", "stamp b1 b2"]


# -- relative targets and --help ------------------------------------------------------------------


def test_relative_targets_past_the_end_say_how_far_they_can_go(project: Project) -> None:
    db = unique("app")
    project.write_revision("a", None, f"op.create_database('{db}')", f"op.drop_database('{db}')")
    project.write_revision("b", "a", "pass", "pass")
    assert project.run("upgrade", "a").exit_code == 0
    past = project.run("upgrade", "+5")
    assert past.exit_code == 2
    assert one_error_line(past.stderr).startswith(
        "k2-migrate: error: cannot upgrade 5 revision(s) from a: only 1 remain to head"
    )
    below = project.run("downgrade", "-3")
    assert below.exit_code == 2
    assert "cannot downgrade 3 revision(s) from a: only 1 are applied" in one_error_line(below.stderr)
    assert project.run("upgrade", "+1").exit_code == 0
    at_head = project.run("upgrade", "+1")
    assert at_head.exit_code == 2
    assert (
        one_error_line(at_head.stderr)
        == "k2-migrate: error: cannot upgrade 1 revision(s) from b: it is at head"
    )


def test_every_commands_short_help_is_a_whole_sentence(project: Project) -> None:
    done = project.run("--help")
    listed = done.stdout.split("Commands:\n", 1)[1].splitlines()
    assert len(listed) >= 19
    for line in listed:
        name, _, summary = line.strip().partition(" ")
        assert summary.strip().endswith(".") and not summary.endswith("..."), line
    for name in ("merge", "revision", "history", "branches", "show", "edit", "stamp", "current"):
        assert done.exit_code == 0 and any(line.split()[0] == name for line in listed), name


# -- the stairway on branches and merges ------------------------------------------------------------

stairway_only = pytest.mark.skipif(
    bool(SERVER_URL), reason="the stairway runs on a throwaway embedded engine"
)


def stairway_project(tmp_path: Path, downgrades: dict[str, str] | None = None) -> Path:
    """a; b1 and b2 branching from a; m merging them (it adds a table of its own); c after m."""
    (tmp_path / "versions").mkdir()
    (tmp_path / "alembic.ini").write_text((ROOT / "alembic.ini").read_text())

    def table(name: str) -> str:
        return f"op.create_object('shop', '{name}', 'CREATE TABLE shop.{name} (id UInt64) ENGINE = MergeTree ORDER BY id')"

    revisions = {
        "a": (None, "op.create_database('shop')", "op.drop_database('shop')"),
        "b1": ("a", table("t1"), "op.drop_object('shop', 't1')"),
        "b2": ("a", table("t2"), "op.drop_object('shop', 't2')"),
        "m": (("b1", "b2"), table("tm"), "op.drop_object('shop', 'tm')"),
        "c": ("m", table("t3"), "op.drop_object('shop', 't3')"),
    }
    for revision, (down, upgrade, usual_downgrade) in revisions.items():
        downgrade = (downgrades or {}).get(revision, usual_downgrade)
        (tmp_path / "versions" / f"r{revision}.py").write_text(
            f'"""{revision}"""\nfrom alembic import op\n\nrevision = "{revision}"\ndown_revision = {down!r}\n\n\n'
            f"def upgrade() -> None:\n    {upgrade}\n\n\ndef downgrade() -> None:\n    {downgrade}\n"
        )
    return tmp_path


def stairway_run(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k2_migrations", "-q", "test-revisions", "--keep", str(cwd / "db")],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        check=False,
    )


@stairway_only
def test_the_stairway_walks_branches_and_merges_as_alembic_orders_them(tmp_path: Path) -> None:
    done = stairway_run(stairway_project(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    # upgrade heads from base applies them in this order: each after its parents.
    assert done.stdout.splitlines() == [
        f"{r}: up, down, up: schema identical" for r in ("a", "b2", "b1", "m", "c")
    ]


@stairway_only
@pytest.mark.parametrize("revision", ["b1", "m"])
def test_the_stairway_still_fails_a_downgrade_that_forgets_a_table(tmp_path: Path, revision: str) -> None:
    done = stairway_run(stairway_project(tmp_path, {revision: "pass"}))
    assert done.returncode == 8, done.stderr[-3000:]
    table = {"b1": "t1", "m": "tm"}[revision]
    assert f"{revision}: FAILED" in done.stdout
    assert (
        f"down did not restore the schema: shop.{table} object: expected absent, found present" in done.stdout
    )
    assert [line.split(":")[0] for line in done.stdout.splitlines() if "FAILED" in line] == [revision]
    assert f"k2-migrate: error: stairway failed: {revision}:" in done.stderr
