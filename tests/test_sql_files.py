"""Plain SQL revisions: ``k2-migrate revision --sql``, ``op.run_sql_file``, and lint reading the files.

The schema is not K2's: an analytics schema (raw ``events``, a ``daily`` AggregatingMergeTree fed by a
``TO`` materialized view, a plain view with a backquoted name holding ``;``) kept in .sql files whose
literals, heredoc and comments hold ``;`` and ``--``. Every promise is read back from the engine:
system.tables, row counts, exit codes, the progress lines of real processes killed at each statement.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k2_migrations.authoring.lint import lint_paths
from k2_migrations.errors import UsageError
from k2_migrations.sqltext.sqlfile import read_statements
from k2_migrations.sqltext.tokens import comments, split_statements, statement_spans
from tests.conftest import ROOT, SERVER_URL, Project, scalar, unique
from tests.support.engine_query import run_with_client
from tests.support.kill_harness import Forker

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

CORPUS = ROOT.parent / "shared" / "corpus" / "clickhouse-ddl.jsonl"

UPGRADE = """\
-- The analytics schema: raw events, a daily rollup fed by a materialized view, a view on it.
CREATE DATABASE IF NOT EXISTS {db};

CREATE TABLE IF NOT EXISTS {db}.events (
    ts DateTime,
    user_id UInt64,
    kind LowCardinality(String),
    note String DEFAULT 'a;b -- not a comment'  -- a literal holding ; and --
) ENGINE = MergeTree ORDER BY (kind, ts);

/* the rollup, one row per day and kind; a ";" in here ends nothing */
CREATE TABLE IF NOT EXISTS {db}.daily (
    day Date,
    kind LowCardinality(String),
    users AggregateFunction(uniq, UInt64),
    events SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree ORDER BY (day, kind);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.daily_mv TO {db}.daily AS
SELECT toDate(ts) AS day, kind, uniqState(user_id) AS users, toUInt64(count()) AS events
FROM {db}.events GROUP BY day, kind;

# the backfill; the heredoc below holds ; and -- too
-- done_when: SELECT count() > 0 FROM {db}.events
INSERT INTO {db}.events (ts, user_id, kind, note)
SELECT toDateTime('2026-01-01 00:00:00') + number * 3600, number % 7, ['click', 'view'][number % 2 + 1], $$x; -- y$$
FROM numbers(100);

CREATE VIEW IF NOT EXISTS {db}.`kinds;seen` AS SELECT kind, sum(events) AS n FROM {db}.daily GROUP BY kind;
"""

DOWNGRADE = """\
DROP VIEW IF EXISTS {db}.`kinds;seen`;
DROP VIEW IF EXISTS {db}.daily_mv;
-- k2-lint: allow drop-without-guard, unchecked-dependents -- the upgrade's own table, its views dropped above
DROP TABLE IF EXISTS {db}.daily;
-- k2-lint: allow drop-without-guard, unchecked-dependents -- the upgrade's own table, its views dropped above
DROP TABLE IF EXISTS {db}.events;
DROP DATABASE IF EXISTS {db};
"""

ENGINES = {
    "events": "MergeTree",
    "daily": "AggregatingMergeTree",
    "daily_mv": "MaterializedView",
    "kinds;seen": "View",
}
#: What the schema holds once upgraded: 100 events of 7 users, each counted once in the rollup.
FILLED = {"events": 100, "daily_events": 100, "daily_users": 7, "notes": 100}

REVISION = """\
\"\"\"analytics schema\"\"\"

from alembic import op

revision = "a1"
down_revision = None


def upgrade() -> None:
    op.run_sql_file("a1.upgrade.sql")


def downgrade() -> None:
    op.run_sql_file("a1.downgrade.sql")
"""


def sql_project(root: Path, db: str, env: dict[str, str] | None = None) -> Project:
    """A project whose one revision ``a1`` runs the analytics .sql files for database ``db``."""
    (root / "versions").mkdir(parents=True)
    (root / "alembic.ini").write_text((ROOT / "alembic.ini").read_text())
    (root / "versions" / "a1.py").write_text(REVISION)
    (root / "versions" / "a1.upgrade.sql").write_text(UPGRADE.format(db=db))
    (root / "versions" / "a1.downgrade.sql").write_text(DOWNGRADE.format(db=db))
    return Project(root, env or {})


def state_in(query: Callable[[str], Sequence[Sequence[Any]]], db: str) -> dict[str, object]:
    """Engines by table and the counts of FILLED, read with ``query`` (SQL in, rows out)."""
    engines = {
        str(n): str(e) for n, e in query(f"SELECT name, engine FROM system.tables WHERE database = '{db}'")
    }
    counts: dict[str, int] = {}
    if "events" in engines and "daily" in engines:
        counts = {
            "events": int(query(f"SELECT count() FROM {db}.events")[0][0]),
            "daily_events": int(query(f"SELECT sum(events) FROM {db}.daily")[0][0]),
            "daily_users": int(query(f"SELECT uniqMerge(users) FROM {db}.daily")[0][0]),
            "notes": int(query(f"SELECT countIf(note = 'x; -- y') FROM {db}.events")[0][0]),
        }
    return {"engines": engines, "counts": counts}


def embedded_state(path: Path, db: str) -> dict[str, object]:
    """:func:`state_in` of an embedded database, read by another process (one data path per process)."""
    code = (
        "from tests.test_sql_files import state_in\n"
        "print(json.dumps(state_in(lambda q: c.query(q).result_rows, sys.argv[2])))\n"
    )
    state: dict[str, object] = run_with_client(path, code, db, timeout=120)
    return state


# -- splitting -----------------------------------------------------------------------------------


def test_split_keeps_semicolons_and_dashes_inside_literals_names_heredocs_and_comments() -> None:
    text = UPGRADE.format(db="a")
    parts = split_statements(text)
    assert [p.split()[0:2] for p in parts] == [
        ["CREATE", "DATABASE"],
        ["CREATE", "TABLE"],
        ["CREATE", "TABLE"],
        ["CREATE", "MATERIALIZED"],
        ["INSERT", "INTO"],
        ["CREATE", "VIEW"],
    ]
    assert "'a;b -- not a comment'  -- a literal holding ; and --\n)" in parts[1]
    assert parts[4].endswith("$$x; -- y$$\nFROM numbers(100)")
    assert parts[5].endswith("GROUP BY kind")
    assert split_statements("SELECT /* a /* nested ; */ still; */ 1 ;; -- ;\n# ;\n") == [
        "SELECT /* a /* nested ; */ still; */ 1"
    ]
    assert split_statements("SELECT 'it''s;', 'x\\';y', \"a;b\", $t$;$$;$t$") == [
        "SELECT 'it''s;', 'x\\';y', \"a;b\", $t$;$$;$t$"
    ]
    assert split_statements("-- only a comment; really\n/* ; */") == []


def test_done_when_annotations_belong_to_the_statement_below_them() -> None:
    found = read_statements(UPGRADE.format(db="a"), "up.sql")
    assert [(s.line, s.done_when) for s in found] == [
        (2, None),
        (4, None),
        (12, None),
        (19, None),
        (25, "SELECT count() > 0 FROM a.events"),
        (29, None),
    ]
    assert found[4].last_line == 27
    bad = {
        "SELECT 1;\n-- done_when: SELECT 1\n": "line 2: the done_when annotation annotates no statement",
        "SELECT 1 -- done_when: SELECT 1\n, 2;": "line 1: the done_when annotation annotates no statement",
        "SELECT 1; -- done_when: SELECT 1\nSELECT 2": "line 1: the done_when annotation must be a comment on a line of its own",
        "-- done_when: SELECT 1\n-- done_when: SELECT 2\nSELECT 3": "line 2: the done_when annotation is the second",
        "-- done_when:\nSELECT 3": "line 1: the done_when annotation has no query",
        "SELECT 'open": "cannot read this SQL",
    }
    for text, message in bad.items():
        with pytest.raises(UsageError, match=message):
            read_statements(text, "f.sql")


def _corpus() -> list[str]:
    if not CORPUS.is_file():
        pytest.skip(f"the shared SQL corpus is not here ({CORPUS}): it is test data outside the project")
    return [json.loads(line)["sql"] for line in CORPUS.read_text().splitlines() if line.strip()]


SEPARATORS = [
    ";",
    ";\n",
    " ;\n-- k2probe; 'x\n",
    ";/* k2probe ; /* -- */ */",
    ";\n# k2probe ;\n",
    "\n;\n\n;",
    ";-- k2probe\n",
]


PROBES = {"-- k2probe; 'x", "/* k2probe ; /* -- */ */", "# k2probe ;", "-- k2probe"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corpus_statements_joined_with_semicolons_and_comments_split_back_into_them(
    data: st.DataObject,
) -> None:
    corpus = _corpus()
    picked = data.draw(st.lists(st.sampled_from(corpus), min_size=1, max_size=6))
    separators = data.draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(picked), max_size=len(picked)))
    # A statement ending in a -- comment (one corpus statement does) would swallow a ; on its line.
    glued = [s + "\n" if s[statement_spans(s)[-1].end :].strip() else s for s in picked]
    text = "".join(s + sep for s, sep in zip(glued, separators, strict=True))
    # Each statement as it splits alone: a corpus variant's leading comment is not part of it.
    expected = [split_statements(s)[0] for s in picked]
    assert split_statements(text) == expected
    assert [text[s.start : s.end] for s in statement_spans(text)] == expected
    probes = [text[c.start : c.end] for c in comments(text) if "k2probe" in text[c.start : c.end]]
    assert len(probes) == sum(sep.count("k2probe") for sep in separators)
    assert set(probes) <= PROBES  # each comment whole, a nested one to its last */


# -- revision --sql, upgrade, plan, --sql, downgrade (in process, on the shared engine) ------------


def test_revision_sql_writes_a_revision_that_runs_its_two_files(project: Project, ch: Client) -> None:
    db = unique("analytics")
    made = project.run("revision", "--sql", "-m", "analytics schema")
    assert made.exit_code == 0, made.output
    files = sorted(p.name for p in project.versions.iterdir())
    assert len(files) == 3
    rev = files[0].split(".")[0]
    assert files == [f"{rev}.downgrade.sql", f"{rev}.upgrade.sql", f"r{rev}_analytics_schema.py"]
    source = (project.versions / files[2]).read_text()
    assert f"op.run_sql_file('{rev}.upgrade.sql')" in source
    assert f"op.run_sql_file('{rev}.downgrade.sql')" in source
    history = project.run("history")
    assert history.exit_code == 0 and history.stdout.count(rev) == 1  # the .sql files are no revisions

    unwritten = project.run("lint")
    assert unwritten.exit_code == 5
    assert [line.split(": ")[1].split()[0] for line in unwritten.stdout.splitlines()] == [
        "empty-sql-file"
    ] * 2

    (project.versions / f"{rev}.upgrade.sql").write_text(UPGRADE.format(db=db))
    (project.versions / f"{rev}.downgrade.sql").write_text(DOWNGRADE.format(db=db))
    linted = project.run("lint")
    assert linted.exit_code == 0, linted.output

    up = project.run("upgrade", "head")
    assert up.exit_code == 0, up.output
    assert "6 step(s)" in up.stdout
    assert state_in(lambda q: ch.query(q).result_rows, db) == {"engines": ENGINES, "counts": FILLED}

    again = project.run("upgrade", "head")
    assert again.exit_code == 0 and "Nothing to do" in again.stdout

    down = project.run("downgrade", "base")
    assert down.exit_code == 0, down.output
    assert scalar(ch, f"SELECT count() FROM system.databases WHERE name = '{db}'") == 0
    up = project.run("upgrade", "head")
    assert up.exit_code == 0, up.output
    assert state_in(lambda q: ch.query(q).result_rows, db) == {"engines": ENGINES, "counts": FILLED}


def test_plan_and_offline_sql_show_each_statement_with_its_done_when(tmp_path: Path, target_url: str) -> None:
    db = unique("analytics")
    project = sql_project(
        tmp_path,
        db,
        {"K2_MIGRATE_URL": target_url, "K2_MIGRATE_DATABASE": unique("k2m"), "K2_MIGRATE_PASSWORD": ""},
    )
    plan = project.run("plan", "head")
    assert plan.exit_code == 0, plan.output
    for number in range(1, 7):
        assert f"  {number}. a1.upgrade.sql statement {number} [" in plan.stdout
    assert "-- a1.upgrade.sql, line 25" in plan.stdout
    assert f"guard: verified by: SELECT count() > 0 FROM {db}.events" in plan.stdout
    assert "$$x; -- y$$" in plan.stdout

    script = project.run("upgrade", "head", "--sql")
    assert script.exit_code == 0, script.output
    body = script.stdout[script.stdout.index("Running upgrade") :]
    for statement in read_statements(UPGRADE.format(db=db), "up"):
        assert body.count(statement.text + ";\n") == 1, statement.text  # once, as written
    assert f"-- skipped when, and verified after by: SELECT count() > 0 FROM {db}.events" in body

    cluster = project.run("--cluster", "c1", "upgrade", "head", "--sql")
    assert cluster.exit_code == 0, cluster.output
    assert f"CREATE TABLE IF NOT EXISTS {db}.events ON CLUSTER c1 (" in cluster.stdout
    assert f"CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER c1;" in cluster.stdout
    assert f"INSERT INTO {db}.events (ts" in cluster.stdout  # an INSERT takes no ON CLUSTER


def test_done_when_still_false_after_the_statement_fails_the_step_and_a_fix_resumes_it(
    project: Project, ch: Client
) -> None:
    db = unique("analytics")
    project.write_revision(
        "b1", None, 'op.run_sql_file("b1.upgrade.sql")', 'op.run_sql_file("b1.downgrade.sql")'
    )
    up_file = project.versions / "b1.upgrade.sql"
    (project.versions / "b1.downgrade.sql").write_text(f"DROP DATABASE IF EXISTS {db};")
    first = f"CREATE DATABASE IF NOT EXISTS {db};\n"
    table = f"CREATE TABLE IF NOT EXISTS {db}.t (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
    up_file.write_text(
        first + table + f"-- done_when: SELECT count() = 2 FROM {db}.t\nINSERT INTO {db}.t VALUES (1);\n"
    )

    failed = project.run("upgrade", "head")
    assert failed.exit_code == 6, failed.output
    assert failed.stderr.strip().splitlines()[-1] == (
        "k2-migrate: error: b1.upgrade.sql, line 4: statement 3 ran, but its done_when is still false: "
        f"SELECT count() = 2 FROM {db}.t; fix the statement or its annotation and run the same command again: "
        "the revision resumes at this statement"
    )
    assert scalar(ch, f"SELECT count() FROM {db}.t") == 1

    # A statement that already ran may not change under the interrupted run: it is not run again.
    up_file.write_text(first.replace("IF NOT EXISTS ", "IF NOT EXISTS  ") + table + "SELECT 1;\n")
    changed = project.run("upgrade", "head")
    assert changed.exit_code == 7, changed.output
    assert "changed since its interrupted run: step 1 was 'b1.upgrade.sql statement 1 [" in changed.stderr

    # The statement that failed may: the run resumes at it, the two before skipped.
    up_file.write_text(
        first + table + f"-- done_when: SELECT count() = 2 FROM {db}.t\nINSERT INTO {db}.t VALUES (2);\n"
    )
    fixed = project.run("upgrade", "head")
    assert fixed.exit_code == 0, fixed.output
    assert fixed.stderr.count("already done") == 2
    assert scalar(ch, f"SELECT count() FROM {db}.t") == 2


def test_a_missing_file_is_one_line_naming_where_it_was_looked_for(project: Project) -> None:
    project.write_revision("c1", None, 'op.run_sql_file("nowhere.sql")', "pass")
    result = project.run("upgrade", "head")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"k2-migrate: error: op.run_sql_file: cannot read {project.versions.resolve() / 'nowhere.sql'}: "
        "No such file or directory; a relative path is read from the revision file's directory"
    )


# -- lint ----------------------------------------------------------------------------------------


def test_lint_reads_the_files_a_revision_runs_with_their_own_lines(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "r1.py").write_text(
        'from alembic import op\nrevision = "r1"\ndown_revision = None\n\n\n'
        'def upgrade() -> None:\n    op.run_sql_file("sql/up.sql")\n    op.run_sql_file("gone.sql")\n\n\n'
        'def downgrade() -> None:\n    op.run_sql_file(f"{revision}.down.sql")\n'
    )
    (versions / "sql").mkdir()
    (versions / "sql" / "up.sql").write_text(
        "CREATE TABLE IF NOT EXISTS a.t (x UInt8) ENGINE = MergeTree ORDER BY x;\n"  # 1: fine
        "CREATE TABLE a.u (x UInt8)\n  ENGINE = MergeTree ORDER BY x;\n"  # 2-3: not idempotent
        "-- done_when: SELECT count() > 0 FROM a.t\n"
        "INSERT INTO a.t VALUES (1);\n"  # 5: annotated
        "INSERT INTO a.t VALUES (2);\n"  # 6: not idempotent
        "-- k2-lint: allow not-idempotent -- a scratch table, refilled by hand\n"
        "INSERT INTO a.t VALUES (3);\n"  # 8: waived
        "CREATE MATERIALIZED VIEW IF NOT EXISTS a.v TO a.t POPULATE AS SELECT 1 AS x;\n"  # 9
        "DROP TABLE IF EXISTS a.u SYNC;\n"  # 10
        "SELECT '-- ; DROP TABLE a.t SYNC';\n"  # 11: only a literal
    )
    (versions / "r1.down.sql").write_text("-- nothing yet\n")
    (versions / "loose.sql").write_text("SELECT 'open;\n")

    findings = lint_paths([versions])
    got = [(f.path.name, f.line, f.rule, f.waived) for f in findings]
    assert got == [
        ("r1.py", 8, "sql-file-missing", False),
        ("r1.py", 12, "empty-sql-file", False),
        ("loose.sql", 1, "syntax", False),
        ("up.sql", 2, "not-idempotent", False),
        ("up.sql", 6, "not-idempotent", False),
        ("up.sql", 8, "not-idempotent", True),
        ("up.sql", 9, "populate", False),
        ("up.sql", 10, "drop-sync", False),
        ("up.sql", 10, "drop-without-guard", False),
        ("up.sql", 10, "unchecked-dependents", False),
    ], [f.describe() for f in findings]
    assert (
        findings[3]
        .describe()
        .startswith(
            f"{versions / 'sql' / 'up.sql'}:2: not-idempotent CREATE without IF NOT EXISTS fails when a resumed run "
            "executes it again — fix: make it safe to run again: IF [NOT] EXISTS"
        )
    )
    assert "-- done_when: SELECT ..." in findings[3].fix
    assert "gone.sql, which is not there" in findings[0].message
    assert findings[5].waived_reason == "a scratch table, refilled by hand"

    # Named alone, a .sql file is linted as SQL.
    assert [(f.line, f.rule) for f in lint_paths([versions / "sql" / "up.sql"])] == [
        (2, "not-idempotent"),
        (6, "not-idempotent"),
        (8, "not-idempotent"),
        (9, "populate"),
        (10, "drop-sync"),
        (10, "drop-without-guard"),
        (10, "unchecked-dependents"),
    ]


# -- killed at each statement, in real processes ------------------------------------------------


def _resumed_from(stderr: str) -> tuple[set[int], int | None]:
    """(the steps a run skipped as done, the first step it started) from its progress lines."""
    skipped: set[int] = set()
    started: int | None = None
    for line in stderr.splitlines():
        if line.startswith("  [") and "]" in line:
            index = int(line[3 : line.index("]")])
            if line.rstrip().endswith("already done"):
                skipped.add(index)
            elif started is None:
                started = index
    return skipped, started


def _kill_chain(
    forker: Forker,
    path: Path,
    config: tuple[str, ...],
    command: tuple[str, str],
    point: str,
    steps: int,
    annotated: frozenset[int] = frozenset(),
) -> None:
    """Kill the k-th run at failpoint ``point`` of statement k, for every k (a signal from outside
    lands a few fast statements late); each run must resume at the statement the last one died in."""
    for k in range(1, steps + 1):
        # The run re-runs statement k-1, the one the last run died in (the point's 1st time here),
        # then dies in k (its 2nd) — unless k-1 was sent and its done_when now skips it (``annotated``).
        skipped = point == "sql-statement-sent" and k - 1 in annotated
        env = {"K2_MIGRATE_FAILPOINT": f"{point}:{1 if k == 1 or skipped else 2}"}
        outcome = forker.run(path, *config, *command, env=env)
        assert outcome.returncode == -signal.SIGKILL, (k, outcome.stderr[-2000:])
        assert _resumed_from(outcome.stderr) == (set(range(1, k - 1)), max(k - 1, 1)), outcome.stderr
        assert ("nothing to do: done_when is true" in outcome.stderr) == skipped, outcome.stderr
    final = forker.run(path, *config, *command, env={})
    assert final.returncode == 0, final.stderr[-3000:]
    assert _resumed_from(final.stderr) == (set(range(1, steps)), steps), final.stderr
    current = forker.run(path, *config, "current", "--json", env={})
    assert json.loads(current.stdout)["in_progress"] is None


@pytest.mark.skipif(bool(SERVER_URL), reason="kills embedded-engine processes")
def test_killed_at_each_statement_up_and_down_resumes_at_that_statement(
    forker: Forker, tmp_path: Path
) -> None:
    project = sql_project(tmp_path / "project", "analytics")
    path = tmp_path / "db"
    # The harness names the K2 project's alembic.ini; a second -c (the last one wins) names this one.
    config = ("-c", str(project.root / "alembic.ini"))
    # Killed just after each statement was sent, before its step is journaled done: the resumed
    # run sends it again (IF NOT EXISTS), or skips it (the INSERT's done_when: no row twice).
    _kill_chain(forker, path, config, ("upgrade", "head"), "sql-statement-sent", 6, frozenset({5}))
    assert embedded_state(path, "analytics") == {"engines": ENGINES, "counts": FILLED}
    assert "Nothing to do" in forker.run(path, *config, "upgrade", "head", env={}).stdout
    # Killed just before each statement is sent.
    _kill_chain(forker, path, config, ("downgrade", "base"), "sql-statement", 5)
    assert embedded_state(path, "analytics") == {"engines": {}, "counts": {}}
    up = forker.run(path, *config, "upgrade", "head", env={})
    assert up.returncode == 0, up.stderr[-3000:]
    assert embedded_state(path, "analytics") == {"engines": ENGINES, "counts": FILLED}


def test_revision_sql_refuses_to_overwrite_a_sql_file_and_leaves_no_revision_behind(project: Project) -> None:
    (project.versions / "abc.downgrade.sql").write_text("DROP TABLE IF EXISTS x.t;\n")
    refused = project.run("revision", "--sql", "-m", "again", "--rev-id", "abc")
    assert refused.exit_code == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        f"k2-migrate: error: {project.versions.resolve() / 'abc.downgrade.sql'} exists; the revision was not "
        "written: remove the file or give another --rev-id"
    )
    assert sorted(p.name for p in project.versions.iterdir()) == ["abc.downgrade.sql"]
    assert (project.versions / "abc.downgrade.sql").read_text() == "DROP TABLE IF EXISTS x.t;\n"
