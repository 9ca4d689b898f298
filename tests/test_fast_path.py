"""The no-op fast path of ``upgrade head``: nothing to do is found out without Alembic and the lock,
and never said when something is to do.

The pure parts (revision headers read with ast, the heads Alembic would compute, the verdict) are
property-tested, the heads against Alembic's own ``ScriptDirectory`` over generated revision graphs.
The rest runs ``k2-migrate`` on the test engine and reads back what the engine holds; whether a run
took the fast path is what it logs at ``-v`` (``fast path: ...``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k2_migrations.commands.scriptheads import CACHE_FILE, CACHE_FORMAT, read_script
from k2_migrations.decisions.noop import (
    AttemptSummary,
    RevisionHeader,
    StateRead,
    noop_verdict,
    read_header,
    script_heads,
)
from tests.conftest import ROOT, Project, engines_in, unique
from tests.test_keeper_lock import Cluster, cluster, finish, wait_for_first_step  # noqa: F401  (a fixture)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

FAST = "fast path: at "


def header_source(revision: str, down: object, labels: object = None, depends: object = None) -> str:
    return (
        f'"""revision {revision}\n\nmore text"""\n\nfrom alembic import op\n\n'
        f"revision = {revision!r}\ndown_revision = {down!r}\nbranch_labels = {labels!r}\n"
        f"depends_on = {depends!r}\n\n\ndef upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n"
    )


# -- headers ---------------------------------------------------------------------------------------


def test_a_plain_header_is_read_as_alembic_reads_it() -> None:
    header = read_header(header_source("a2", ("a1", "b1"), "feature"))
    assert header == RevisionHeader("a2", ("a1", "b1"), ("feature",), (), "revision a2")
    annotated = header_source("a1", None).replace("revision = 'a1'", "revision: str = 'a1'")
    assert read_header(annotated) == RevisionHeader("a1", (), (), (), "revision a1")


@pytest.mark.parametrize(
    "change",
    [
        ("revision = 'a1'", "revision = 'a' + '1'"),  # computed
        ("revision = 'a1'", "revision = make_id()"),
        ("down_revision = None", "down_revision = PARENT"),
        ("revision = 'a1'", "revision = 'a1'\nrevision = 'a9'"),  # assigned twice
        ("depends_on = None", "depends_on = None\nfor revision in ['a9']:\n    pass"),
        ("depends_on = None", "depends_on = None\nglobals()['revision'] = 'a9'"),
        ("depends_on = None", "depends_on = None\nimport os as revision"),
        ("depends_on = None", "depends_on = None\nx = (revision := 'a9')"),
        ("depends_on = None", "depends_on = None\ndef bump():\n    global revision"),
        ("depends_on = None", "depends_on = None\nif True:\n    revision = 'a9'"),
        ("depends_on = None", "depends_on = None\nfrom somewhere import *"),
        ("def upgrade()", "def upgrade_it()"),  # Alembic's load refuses a file without upgrade()
        ("revision = 'a1'", "revision: str"),  # annotated, never assigned
        ("revision = 'a1'", "revision = ("),  # does not parse
        ("revision = 'a1'", "revision = None"),
        ("down_revision = None", "down_revision = 5"),
    ],
)
def test_a_header_that_needs_running_the_file_is_not_read(change: tuple[str, str]) -> None:
    source = header_source("a1", None)
    assert change[0] in source
    assert read_header(source.replace(*change, 1)) is None


# -- heads, against Alembic's ScriptDirectory ---------------------------------------------------------


def alembic_heads(headers: list[tuple[str, object, object, object]]) -> tuple[str, ...] | None:
    """What Alembic's ScriptDirectory says the heads are for these revision files (None: it refuses)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    with tempfile.TemporaryDirectory() as directory:
        versions = Path(directory) / "versions"
        versions.mkdir()
        for n, (revision, down, labels, depends) in enumerate(headers):
            (versions / f"f{n}.py").write_text(header_source(revision, down, labels, depends))
        config = Config()
        config.set_main_option("script_location", str(ROOT / "k2_migrations" / "alembic_env"))
        config.set_main_option("version_locations", str(versions))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return tuple(sorted(ScriptDirectory.from_config(config).get_heads()))
        except Exception:
            return None


IDS = st.sampled_from(["a", "b", "c", "d", "e", "f", "x-1", "g"])


@st.composite
def revision_graphs(draw: st.DrawFn, *, mode: str) -> list[tuple[str, object, object, object]]:
    """Revision headers. ``valid``: parents come before their children (branches and merges, unique
    branch labels). ``loose``: the same, but a parent may be any revision, itself or one that is not
    there (cycles, missing parents). ``wild``: anything — a repeated id, an id with a character
    Alembic refuses, a repeated parent, depends_on, branch labels that clash."""
    count = draw(st.integers(1, 6))
    ids = [f"r{n}" for n in range(count)]
    if mode == "wild":
        ids = [draw(IDS) if draw(st.booleans()) else rev for rev in ids]
    graph: list[tuple[str, object, object, object]] = []
    for n, revision in enumerate(ids):
        pool = ids[:n] if mode == "valid" else [*ids, "gone"]
        parents = draw(st.lists(st.sampled_from(pool), max_size=3, unique=mode != "wild")) if pool else []
        down: object = None if not parents else parents[0] if len(parents) == 1 else tuple(parents)
        labels: object = None
        if draw(st.booleans()):
            labels = draw(st.sampled_from([f"label_{n}"] if mode == "valid" else ["blue", "green", "r0"]))
        depends: object = draw(st.sampled_from(pool)) if mode == "wild" and draw(st.booleans()) else None
        graph.append((revision, down, labels, depends))
    return graph


def ast_heads(graph: list[tuple[str, object, object, object]]) -> tuple[str, ...] | None:
    headers = [read_header(header_source(*revision)) for revision in graph]
    assert all(h is not None for h in headers)
    return script_heads(h for h in headers if h is not None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(revision_graphs(mode="valid"))
def test_the_heads_of_a_valid_graph_are_alembics(graph: list[tuple[str, object, object, object]]) -> None:
    expected = alembic_heads(graph)
    assert expected is not None
    assert ast_heads(graph) == expected


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(revision_graphs(mode="loose"))
def test_a_graph_alembic_refuses_is_left_to_alembic(graph: list[tuple[str, object, object, object]]) -> None:
    """The same heads as Alembic, or none where Alembic refuses; a cycle is left to Alembic even where
    Alembic does not refuse it (found: r0 down (r1, r2), r2 down r0, and Alembic's heads r3, r4)."""
    ours, theirs = ast_heads(graph), alembic_heads(graph)
    if ours is None and theirs is not None:
        assert in_a_cycle(graph), (graph, theirs)
    else:
        assert ours == theirs


def in_a_cycle(graph: list[tuple[str, object, object, object]]) -> bool:
    """Whether following down revisions from some revision comes back to it."""
    parents = {rev: (down,) if isinstance(down, str) else tuple(down or ()) for rev, down, _, _ in graph}  # type: ignore[arg-type]

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for parent in parents.get(start, ()):
            if parent == goal or (parent not in seen and reaches(parent, goal, seen | {parent})):
                return True
        return False

    return any(reaches(rev, rev, set()) for rev in parents)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(revision_graphs(mode="wild"))
def test_any_graph_gets_alembics_heads_or_none(graph: list[tuple[str, object, object, object]]) -> None:
    ours = ast_heads(graph)
    if ours is not None:
        assert ours == alembic_heads(graph)


# -- the verdict -------------------------------------------------------------------------------------

ENGINES = {
    "alembic_version": "View",
    "k2_migrations_versions": "MergeTree",
    "k2_migrations_journal": "Log",
    "k2_migrations_snapshots": "MergeTree",
}
STATUSES = st.sampled_from(["started", "failed", "migrated", "done", "abandoned", "reverted", "odd"])


@st.composite
def verdict_inputs(draw: st.DrawFn) -> tuple[str, tuple[str, ...] | None, StateRead, tuple[int, int]]:
    """A target, the script's heads, the state read and the watermarks read again: each part right
    (what a no-op at head looks like) or not, so that every single difference gets drawn."""
    wanted = tuple(sorted(draw(st.lists(IDS, min_size=1, max_size=2, unique=True))))
    tables = dict(ENGINES)
    if draw(st.booleans()):
        table = draw(st.sampled_from(sorted(ENGINES)))
        tables[table] = draw(st.sampled_from(["MergeTree", "ReplicatedMergeTree", "SharedMergeTree", "View"]))
    statuses = st.sampled_from(["done", "abandoned", "reverted"]) if draw(st.booleans()) else STATUSES
    attempt = st.builds(
        AttemptSummary, st.text("ab", max_size=2), IDS, st.sampled_from(["up", "down"]), statuses
    )
    seq, rows = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    state = StateRead(
        tables=tables,
        heads=wanted if draw(st.booleans()) else tuple(draw(st.lists(IDS, max_size=2, unique=True))),
        record_seq=seq,
        journal_rows=rows,
        attempts=tuple(draw(st.lists(attempt, max_size=3))),
        schema_recorded=draw(st.booleans()),
    )
    again = (seq, rows) if draw(st.booleans()) else (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    target = draw(st.sampled_from(["head", "heads", "a", "+1"]))
    return target, None if draw(st.integers(0, 9)) == 0 else wanted, state, again


@settings(max_examples=500)
@given(verdict_inputs())
def test_nothing_to_do_only_when_every_condition_holds(
    inputs: tuple[str, tuple[str, ...] | None, StateRead, tuple[int, int]],
) -> None:
    target, wanted, state, again = inputs
    verdict = noop_verdict(target, wanted, state, again)
    every = (
        wanted is not None
        and (target == "heads" or (target == "head" and len(wanted) == 1))
        and state.tables == ENGINES
        and tuple(sorted(state.heads)) == wanted
        and all(a.status in {"done", "abandoned", "reverted"} for a in state.attempts)
        and state.schema_recorded
        and again == (state.record_seq, state.journal_rows)
    )
    assert verdict.noop == every, verdict.reason


# -- real runs ---------------------------------------------------------------------------------------


def ran_fast(caplog: pytest.LogCaptureFixture) -> bool:
    return any(
        record.getMessage().startswith((FAST, "fast path: current: ", "fast path: check: "))
        for record in caplog.records
    )


@pytest.fixture
def at_head(project: Project) -> Project:
    project.write_revision("a1", None, "op.execute_sql('SELECT 1')", "op.execute_sql('SELECT 2')")
    done = project.run("upgrade", "head")
    assert done.exit_code == 0, done.output
    return project


def fast_run(project: Project, caplog: pytest.LogCaptureFixture, *args: str) -> tuple[bool, object]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="k2_migrations.sql"):
        result = project.run("-v", *args)
    return ran_fast(caplog), result


def test_a_noop_prints_what_the_normal_path_prints(
    at_head: Project, caplog: pytest.LogCaptureFixture
) -> None:
    fast = [fast_run(at_head, caplog, "upgrade", "head", *json_flag) for json_flag in ([], ["--json"])]
    # A computed id sends the same no-op down the normal path.
    path = at_head.versions / "ra1.py"
    path.write_text(path.read_text().replace("revision = 'a1'", "revision = 'a' + '1'"))
    assert at_head.run("accept", "a1").exit_code == 0  # an edit of an applied revision: test_digests.py
    normal = [fast_run(at_head, caplog, "upgrade", "head", *json_flag) for json_flag in ([], ["--json"])]
    assert [took for took, _ in fast] == [True, True] and [took for took, _ in normal] == [False, False]
    texts = [result.stdout for _, result in fast + normal]  # type: ignore[attr-defined]
    assert (
        texts[0] == texts[2] and texts[0].startswith("Nothing to do: ") and texts[0].endswith(" is at a1.\n")
    )
    documents = [json.loads(text) for text in (texts[1], texts[3])]
    for document in documents:
        del document["elapsed_s"]
    assert documents[0] == documents[1] and documents[0]["to"] == ["a1"]


def test_current_reads_what_alembic_reads(at_head: Project, caplog: pytest.LogCaptureFixture) -> None:
    def shown() -> list[tuple[bool, str]]:
        runs = [fast_run(at_head, caplog, "current", *flag) for flag in ([], ["--json"])]
        return [(took, result.stdout) for took, result in runs]  # type: ignore[attr-defined]

    at_head.write_revision("a2", "a1", "op.execute_sql('SELECT 1')", "op.execute_sql('SELECT 2')")
    fast = shown()
    path = at_head.versions / "ra2.py"
    path.write_text(path.read_text().replace("revision = 'a2'", "revision = 'a' + '2'"))
    normal = shown()
    assert [took for took, _ in fast] == [True, True] and [took for took, _ in normal] == [False, False]
    assert [text for _, text in fast] == [text for _, text in normal]
    assert fast[0][1].endswith(": a1 — revision a1\n")
    document = json.loads(fast[1][1])
    assert document["current"] == ["a1"] and document["heads"] == ["a2"] and document["up_to_date"] is False


def test_check_reads_what_alembic_reads(
    project: Project, caplog: pytest.LogCaptureFixture, ch: Client
) -> None:
    """``check`` takes its heads from the fast path's read, and prints and exits as the normal path
    does: no drift (0), drift (8), an edited revision (8, named by the normal path)."""
    db = unique("fpc")
    project.write_revision(
        "a1",
        None,
        f"op.create_database('{db}')\nop.execute_sql('CREATE TABLE {db}.t (x UInt8) ENGINE = MergeTree ORDER BY x')",
        f"op.drop_database('{db}')",
    )
    assert project.run("upgrade", "head").exit_code == 0

    def checked() -> list[tuple[bool, int, str]]:
        runs = [fast_run(project, caplog, "check", *flag) for flag in ([], ["--json"])]
        return [(took, result.exit_code, result.stdout) for took, result in runs]  # type: ignore[attr-defined]

    def computed_id() -> None:
        path = project.versions / "ra1.py"
        path.write_text(path.read_text().replace("revision = 'a1'", "revision = 'a' + '1'"))
        assert project.run("accept", "a1").exit_code == 0

    clean = checked()
    ch.command(f"ALTER TABLE {db}.t ADD COLUMN y UInt8")
    drift = checked()
    computed_id()
    normal = checked()
    assert [took for took, _, _ in clean + drift] == [True] * 4 and [took for took, _, _ in normal] == [
        False
    ] * 2
    assert [(code, text) for _, code, text in drift] == [(code, text) for _, code, text in normal]
    assert [code for _, code, _ in clean] == [0, 0] and [code for _, code, _ in drift] == [8, 8]
    assert clean[0][2] == "no drift: the live schema is what revision a1 left\n"
    assert "drift: " in drift[0][2] and ".t" in drift[0][2] and json.loads(drift[1][2])["ok"] is False
    path = project.versions / "ra1.py"
    path.write_text(path.read_text().replace("revision = 'a' + '1'", "revision = 'a1'") + "# edited\n")
    edited = checked()
    assert [(took, code) for took, code, _ in edited] == [(False, 8), (False, 8)]
    assert "edited after they were applied: a1 (versions/ra1.py)" in edited[0][2]


def test_check_imports_neither_alembic_nor_sqlalchemy(project: Project) -> None:
    own_engine(project)
    done = process(project, "check", python=("-X", "importtime"))
    assert done.returncode == 0 and done.stdout.startswith("no drift"), done.stderr[-2000:]
    assert "fast path: check: a1" in done.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert not {m for m in imported if m.split(".")[0] in {"alembic", "sqlalchemy"}}


def test_pending_revisions_are_applied(
    at_head: Project, caplog: pytest.LogCaptureFixture, ch: Client
) -> None:
    db = unique("fp")
    at_head.write_revision("a2", "a1", f"op.create_database('{db}')", f"op.drop_database('{db}')")
    fast, result = fast_run(at_head, caplog, "upgrade", "head")
    assert not fast and result.exit_code == 0 and "a2 up" in result.stdout  # type: ignore[attr-defined]
    assert db in {r[0] for r in ch.query("SELECT name FROM system.databases").result_rows}
    assert fast_run(at_head, caplog, "upgrade", "head")[0]


def own_engine(project: Project) -> Project:
    """The project on an embedded path of its own, for runs in processes of their own (this process
    has the shared test engine open, and chDB allows one path per process)."""
    project.env["K2_MIGRATE_URL"] = f"chdb://{project.root / 'chdb'}"
    project.write_revision("a1", None, "op.execute_sql('SELECT 1')", "op.execute_sql('SELECT 2')")
    assert process(project, "upgrade", "head").returncode == 0
    return project


def process(
    project: Project, *args: str, env: dict[str, str] | None = None, python: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``k2-migrate -v ARGS`` in a process of its own (``python``: the interpreter's own options)."""
    return subprocess.run(
        [sys.executable, *python, "-m", "k2_migrations", "-v", *args],
        cwd=project.root, env={**os.environ, **project.env, **(env or {})},
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def test_an_interrupted_downgrade_of_the_head_is_not_nothing_to_do(project: Project) -> None:
    own_engine(project)
    # Killed just before its version change: the heads still say a1, the journal has the downgrade
    # open ("migrated": its function returned, its version change is not known to be written).
    killed = process(project, "downgrade", "base", env={"K2_MIGRATE_FAILPOINT": "version-before"})
    assert killed.returncode == -9, killed.stderr
    current = json.loads(process(project, "current", "--json").stdout)
    assert current["current"] == ["a1"] and current["in_progress"]["direction"] == "down"
    result = process(project, "upgrade", "head")
    assert FAST not in result.stderr and "(a1 down) is migrated" in result.stderr
    assert result.returncode == 0 and "reverting an interrupted run" in result.stdout, result.stderr
    assert json.loads(process(project, "current", "--json").stdout)["in_progress"] is None
    assert FAST in process(project, "upgrade", "head").stderr


def test_a_previous_releases_version_table_is_adopted_by_the_normal_path(
    at_head: Project, caplog: pytest.LogCaptureFixture, ch: Client
) -> None:
    state = at_head.migrations_database
    ch.command(f"DROP VIEW {state}.alembic_version")
    ch.command(
        f"CREATE TABLE {state}.alembic_version (version_num String) ENGINE = MergeTree ORDER BY version_num"
    )
    ch.command(f"INSERT INTO {state}.alembic_version VALUES ('a1')")
    fast, result = fast_run(at_head, caplog, "upgrade", "head")
    assert not fast and result.exit_code == 0, result  # type: ignore[attr-defined]
    engines = engines_in(ch, state)
    assert engines["alembic_version"] == "View" and engines["alembic_version_legacy"] == "MergeTree"


def test_another_migrations_database_is_read_as_its_own(
    at_head: Project, caplog: pytest.LogCaptureFixture
) -> None:
    other = unique("k2m")
    fast, result = fast_run(at_head, caplog, "--migrations-database", other, "upgrade", "head")
    assert not fast and result.exit_code == 0 and "a1 up" in result.stdout  # type: ignore[attr-defined]


def test_a_stamped_head_gets_its_schema_recorded_by_the_normal_path(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    project.write_revision("a1", None, "op.execute_sql('SELECT 1')", "op.execute_sql('SELECT 2')")
    assert project.run("stamp", "a1").exit_code == 0
    fast, result = fast_run(project, caplog, "upgrade", "head")
    assert not fast and result.exit_code == 0, result  # type: ignore[attr-defined]
    assert project.run("check").exit_code == 0
    assert fast_run(project, caplog, "upgrade", "head")[0]


def test_computed_ids_sql_and_cluster_mode_take_the_normal_path(
    at_head: Project, caplog: pytest.LogCaptureFixture
) -> None:
    path = at_head.versions / "ra1.py"
    path.write_text(path.read_text().replace("revision = 'a1'", "revision = 'a' + '1'"))
    assert at_head.run("accept", "a1").exit_code == 0  # an edit of an applied revision: test_digests.py
    fast, result = fast_run(at_head, caplog, "upgrade", "head")
    assert not fast and result.exit_code == 0 and "Nothing to do" in result.stdout  # type: ignore[attr-defined]
    fast, result = fast_run(at_head, caplog, "upgrade", "head", "--sql")
    assert not fast and "INSERT INTO" in result.stdout  # type: ignore[attr-defined]
    fast, result = fast_run(at_head, caplog, "--cluster", "nowhere", "upgrade", "head")
    assert not fast and result.exit_code != 0  # type: ignore[attr-defined]


def test_several_version_locations_are_all_read(project: Project, caplog: pytest.LogCaptureFixture) -> None:
    second = project.root / "more"
    second.mkdir()
    ini = project.root / "alembic.ini"
    text = ini.read_text()
    ini.write_text(text.replace("%(here)s/versions", f"%(here)s/versions{os.pathsep}%(here)s/more"))
    project.write_revision("a1", None, "op.execute_sql('SELECT 1')", "op.execute_sql('SELECT 2')")
    assert project.run("upgrade", "head").exit_code == 0
    assert fast_run(project, caplog, "upgrade", "head")[0]
    moved = project.write_revision("a2", "a1", "op.execute_sql('SELECT 3')", "op.execute_sql('SELECT 4')")
    moved.rename(second / moved.name)
    fast, result = fast_run(project, caplog, "upgrade", "head")
    assert not fast and "a2 up" in result.stdout  # type: ignore[attr-defined]
    assert fast_run(project, caplog, "upgrade", "head")[0]


def test_the_header_cache_follows_each_file(at_head: Project) -> None:
    ini = at_head.root / "alembic.ini"
    assert read_script(ini)[0] == ("a1",)
    cache = at_head.root / CACHE_FILE
    assert json.loads(cache.read_text())["format"] == CACHE_FORMAT
    # Rewritten in place with the same size and mtime: the inode's ctime still tells.
    path = at_head.versions / "ra1.py"
    before = path.stat()
    path.write_text(path.read_text().replace("revision = 'a1'", "revision = 'b1'"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    assert read_script(ini)[0] == ("b1",)
    cache.write_text("{not json")  # a corrupt cache is ignored, and rewritten
    assert read_script(ini)[0] == ("b1",)
    assert json.loads(cache.read_text())["format"] == CACHE_FORMAT
    (at_head.versions / "rgone.py").symlink_to(at_head.root / "nowhere.py")  # Alembic stops on it
    assert read_script(ini)[0] is None


def test_the_fast_path_imports_neither_alembic_nor_sqlalchemy_nor_sqlglot(project: Project) -> None:
    own_engine(project)
    done = process(project, "upgrade", "head", python=("-X", "importtime"))
    assert done.returncode == 0 and done.stdout.startswith("Nothing to do"), done.stderr[-2000:]
    assert FAST in done.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "clickhouse_connect" in imported
    assert not {m for m in imported if m.split(".")[0] in {"alembic", "sqlalchemy", "sqlglot"}}


# -- hosts sharing a Keeper lock ----------------------------------------------------------------------

#: Long enough that a run waiting for the lock would be seen waiting.
LOCK_TIMEOUT_S = 60


def test_noop_runs_on_other_hosts_never_wait_for_a_held_lock(cluster: Cluster) -> None:  # noqa: F811
    """Four hosts at head run ``upgrade head`` together while a fifth holds the Keeper lock mid-run:
    each exits 0 at once, taking no lock; a host with a revision pending does need the lock."""
    hosts = [f"b{n}" for n in range(1, 5)]
    cluster.gate.touch()
    assert cluster.run(hosts[0], "upgrade", "head").returncode == 0
    for host in hosts[1:]:
        shutil.copytree(cluster.project / hosts[0], cluster.project / host, symlinks=True)
    journal_before = cluster.run(hosts[0], "log", "--json").stdout
    cluster.gate.unlink()
    holder = cluster.start("a", "upgrade", "head")
    try:
        wait_for_first_step(holder)
        started = time.monotonic()
        noops = [
            cluster.start(host, "-v", "--lock-timeout", str(LOCK_TIMEOUT_S), "upgrade", "head")
            for host in hosts
        ]
        outputs = [finish(run) for run in noops]
        elapsed = time.monotonic() - started
        pending = cluster.run("c", "--lock-timeout", "0", "upgrade", "head")
        still_held = holder.poll() is None
    finally:
        cluster.gate.touch()
        held_out, held_err = finish(holder)
    assert still_held, held_err
    for run, (out, err) in zip(noops, outputs, strict=True):
        assert run.returncode == 0, err
        assert out.startswith("Nothing to do: ") and "fast path: at k1, nothing in progress" in err
    assert elapsed < LOCK_TIMEOUT_S / 2, elapsed
    # The holder kept its lock to the end (a run whose lock was broken stops at its next step) ...
    assert holder.returncode == 0 and "k1 up" in held_out, held_err
    # ... the no-op runs wrote nothing to their journals, and a host with k1 pending needs the lock.
    assert cluster.run(hosts[0], "log", "--json").stdout == journal_before
    assert pending.returncode == 4, pending.stderr
    assert "holds the lock" in pending.stderr and f"pid {holder.pid} " in pending.stderr
