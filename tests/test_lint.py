"""The revision linter: each rule fires on a minimal bad revision and not on its fixed form.

The real K2 revisions are the reference of correct use: a rule that fires on them is too loose, so
the last tests lint ``versions/`` and expect nothing. Every revision here is written to ``tmp_path``
and only read by the linter, never imported.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from k2_migrations.authoring.lint import ALL_RULES, RULES, Finding, lint_paths, lint_source
from k2_migrations.errors import UsageError
from k2_migrations.sqltext.tokens import Kind, Token, tokenize

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ROOT / "versions"
CORPUS = ROOT.parent / "shared" / "corpus" / "clickhouse-ddl.jsonl"

HEADER = '''\
"""A test revision.

Mentions POPULATE and DROP TABLE x SYNC in documentation, which is never SQL.
"""

from __future__ import annotations

from alembic import op

revision: str = "r1"
down_revision: str | None = None

'''

KAFKA_DDL = (
    "CREATE TABLE IF NOT EXISTS db.trades_queue (payload String) ENGINE = Kafka "
    "SETTINGS kafka_broker_list = 'broker:9092', kafka_topic_list = 'trades', "
    "kafka_group_name = '{group}', kafka_format = 'JSONEachRow'"
)


def revision(body: str) -> str:
    return HEADER + textwrap.dedent(body).strip() + "\n"


def write(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(revision(body))
    return path


def failing(findings: list[Finding]) -> list[str]:
    """The rules of the findings that fail the lint (not waived), in order."""
    return [f.rule for f in findings if f.waived_reason is None]


def lint(tmp_path: Path, body: str) -> list[Finding]:
    return lint_paths([write(tmp_path, "r1.py", body)])


# Each case: (rule, bad revision, its fixed form). The bad one must produce exactly that rule.
CASES: list[tuple[str, str, str, str]] = [
    (
        "no-downgrade-missing",
        "no-downgrade",
        """
        def upgrade() -> None:
            op.create_database("k2")
        """,
        """
        def upgrade() -> None:
            op.create_database("k2")


        def downgrade() -> None:
            op.drop_database("k2")
        """,
    ),
    (
        "no-downgrade-pass",
        "no-downgrade",
        """
        def upgrade() -> None:
            op.create_database("k2")


        def downgrade() -> None:
            pass
        """,
        """
        def upgrade() -> None:
            op.create_database("k2")


        def downgrade() -> None:
            \"\"\"Nothing to undo: the database is shared with the platform and kept.\"\"\"
        """,
    ),
    (
        "no-downgrade-ellipsis",
        "no-downgrade",
        """
        def upgrade() -> None:
            op.create_database("k2")


        def downgrade() -> None: ...
        """,
        """
        def upgrade() -> None:
            op.create_database("k2")


        def downgrade() -> None:
            \"\"\"Nothing to undo: the database is shared with the platform and kept.\"\"\"
            pass
        """,
    ),
    (
        "empty-upgrade",
        "empty-revision",
        """
        def upgrade() -> None:
            # op.create_database("k2")
            pass


        def downgrade() -> None:
            op.drop_database("k2")
        """,
        """
        def upgrade() -> None:
            op.create_database("k2")


        def downgrade() -> None:
            op.drop_database("k2")
        """,
    ),
    (
        "op-execute-ddl",
        "not-idempotent",
        """
        def upgrade() -> None:
            op.execute("CREATE TABLE IF NOT EXISTS db.t (x UInt8) ENGINE = MergeTree ORDER BY x")


        def downgrade() -> None:
            op.drop_object("db", "t")
        """,
        """
        def upgrade() -> None:
            op.create_object("db", "t", "CREATE TABLE db.t (x UInt8) ENGINE = MergeTree ORDER BY x")
            op.execute("SELECT 1")


        def downgrade() -> None:
            op.drop_object("db", "t")
        """,
    ),
    (
        "create-without-if-not-exists",
        "not-idempotent",
        """
        def upgrade() -> None:
            db = "k2"
            op.execute_sql(f"CREATE TABLE {db}.t (x UInt8) ENGINE = MergeTree ORDER BY x")


        def downgrade() -> None:
            op.drop_object("k2", "t")
        """,
        """
        def upgrade() -> None:
            db = "k2"
            op.execute_sql(f"CREATE TABLE IF NOT EXISTS {db}.t (x UInt8) ENGINE = MergeTree ORDER BY x")


        def downgrade() -> None:
            op.drop_object("k2", "t")
        """,
    ),
    (
        "drop-without-if-exists",
        "not-idempotent",
        """
        def upgrade() -> None:
            op.execute_sql("DROP VIEW db.v")


        def downgrade() -> None:
            \"\"\"Nothing to undo: the view was unused.\"\"\"
        """,
        """
        def upgrade() -> None:
            op.execute_sql("DROP VIEW IF EXISTS db.v")


        def downgrade() -> None:
            \"\"\"Nothing to undo: the view was unused.\"\"\"
        """,
    ),
    (
        "insert-from-module-constant",
        "not-idempotent",
        """
        BACKFILL = "INSERT INTO db.t SELECT * FROM db.s"


        def upgrade() -> None:
            op.execute_sql(BACKFILL)


        def downgrade() -> None:
            \"\"\"Nothing to undo: the rows are a copy.\"\"\"
        """,
        """
        BACKFILL = "INSERT INTO db.t SELECT * FROM db.s"


        def upgrade() -> None:
            op.execute_sql(BACKFILL, done_when="SELECT count() > 0 FROM db.t")


        def downgrade() -> None:
            \"\"\"Nothing to undo: the rows are a copy.\"\"\"
        """,
    ),
    (
        "add-column-without-if-not-exists",
        "not-idempotent",
        """
        def upgrade() -> None:
            op.execute_sql("ALTER TABLE db.t ADD COLUMN y UInt8")


        def downgrade() -> None:
            op.drop_column_if_exists("db", "t", "y")
        """,
        """
        def upgrade() -> None:
            op.execute_sql("ALTER TABLE db.t ADD COLUMN IF NOT EXISTS y UInt8")


        def downgrade() -> None:
            op.drop_column_if_exists("db", "t", "y")
        """,
    ),
    (
        "drop-column-without-if-exists",
        "not-idempotent",
        """
        def upgrade() -> None:
            op.add_column_if_missing("db", "t", "y", "UInt8")


        def downgrade() -> None:
            # k2-lint: allow unchecked-dependents -- y is new in this revision: nothing reads it yet
            op.execute_sql(
                "ALTER TABLE db.t "  # a comment between the parts of the string
                "DROP COLUMN y"
            )
        """,
        """
        def upgrade() -> None:
            op.add_column_if_missing("db", "t", "y", "UInt8")


        def downgrade() -> None:
            op.drop_column_if_exists("db", "t", "y")
        """,
    ),
    (
        "alter-update-mutation",
        "not-idempotent",
        """
        def upgrade() -> None:
            op.execute_sql("ALTER TABLE db.t UPDATE y = y + 1 WHERE 1")


        def downgrade() -> None:
            \"\"\"Nothing to undo: y is derived and recomputed by the next load.\"\"\"
        """,
        """
        def upgrade() -> None:
            op.run_mutation("db", "t", "UPDATE y = x + 1 WHERE y != x + 1", done_when="SELECT countIf(y != x + 1) = 0 FROM db.t")


        def downgrade() -> None:
            \"\"\"Nothing to undo: y is derived and recomputed by the next load.\"\"\"
        """,
    ),
    (
        "drop-object-allow-rows",
        "drop-without-guard",
        """
        def upgrade() -> None:
            op.drop_object("db", "scratch", allow_rows=True)
            op.take_guards("rows", ["db.t"])  # too late: after the drop


        def downgrade() -> None:
            \"\"\"Nothing to undo: scratch is rebuilt by the nightly load.\"\"\"
        """,
        """
        def upgrade() -> None:
            op.take_guards("rows", ["db.t"])
            op.drop_object("db", "scratch", allow_rows=True)
            op.check_guards("rows")


        def downgrade() -> None:
            \"\"\"Nothing to undo: scratch is rebuilt by the nightly load.\"\"\"
        """,
    ),
    (
        "raw-drop-table",
        "drop-without-guard",
        """
        def upgrade() -> None:
            op.execute_sql("DROP TABLE IF EXISTS db.scratch")  # k2-lint: allow unchecked-dependents -- no view reads scratch


        def downgrade() -> None:
            \"\"\"Nothing to undo: scratch is rebuilt by the nightly load.\"\"\"
        """,
        """
        def _guard() -> None:
            op.take_guards("rows", ["db.t"])


        def _drop_scratch() -> None:
            op.execute_sql("DROP TABLE IF EXISTS db.scratch")  # k2-lint: allow unchecked-dependents -- no view reads scratch


        def upgrade() -> None:
            _guard()
            _drop_scratch()
            op.check_guards("rows")


        def downgrade() -> None:
            \"\"\"Nothing to undo: scratch is rebuilt by the nightly load.\"\"\"
        """,
    ),
    (
        "populate",
        "populate",
        """
        VIEW = "CREATE MATERIALIZED VIEW db.v TO db.t POPULATE AS SELECT x FROM db.s"


        def upgrade() -> None:
            op.create_object("db", "v", VIEW)


        def downgrade() -> None:
            op.drop_object("db", "v")
        """,
        """
        VIEW = "CREATE MATERIALIZED VIEW db.v TO db.t AS SELECT x FROM db.s"


        def upgrade() -> None:
            op.create_object("db", "v", VIEW)
            op.execute_sql("INSERT INTO db.t SELECT x FROM db.s", done_when="SELECT count() > 0 FROM db.t")


        def downgrade() -> None:
            op.drop_object("db", "v")
        """,
    ),
    (
        "drop-sync",
        "drop-sync",
        """
        def upgrade() -> None:
            op.execute_sql("DROP VIEW IF EXISTS db.v SYNC")


        def downgrade() -> None:
            \"\"\"Nothing to undo: the view was unused.\"\"\"
        """,
        """
        def upgrade() -> None:
            op.execute_sql("DROP VIEW IF EXISTS db.v")
            op.verify("no drop waits", "SELECT count() FROM system.query_log WHERE query LIKE 'DROP TABLE % SYNC'")


        def downgrade() -> None:
            \"\"\"Nothing to undo: the view was unused.\"\"\"
        """,
    ),
    (
        "move-table-without-views",
        "rename-view-target",
        """
        def upgrade() -> None:
            op.drop_object("default", "t_mv")
            op.move_table("default", "t", "k2")


        def downgrade() -> None:
            op.move_table("k2", "t", "default")
            op.restore_definition("default.t_mv")
        """,
        """
        def upgrade() -> None:
            op.capture_definition("default", "t_mv")
            op.drop_object("default", "t_mv")
            op.move_table("default", "t", "k2")
            op.restore_definition("default.t_mv", rewrite={"default": "k2"})


        def downgrade() -> None:
            op.drop_object("k2", "t_mv")
            op.move_table("k2", "t", "default")
            op.create_object("default", "t_mv", "CREATE MATERIALIZED VIEW default.t_mv TO default.t AS SELECT 1 AS x")
        """,
    ),
    (
        "raw-rename-table",
        "rename-view-target",
        """
        def upgrade() -> None:
            # k2-lint: allow unchecked-dependents -- its one view is re-created on t_old
            op.execute_sql("RENAME TABLE db.t TO db.t_old", done_when="SELECT exists(SELECT 1 FROM system.tables WHERE name = 't_old')")


        def downgrade() -> None:
            \"\"\"Nothing to undo: t_old is kept for audit.\"\"\"
        """,
        """
        def upgrade() -> None:
            # k2-lint: allow unchecked-dependents -- its one view is re-created on t_old
            op.execute_sql("RENAME TABLE db.t TO db.t_old", done_when="SELECT exists(SELECT 1 FROM system.tables WHERE name = 't_old')")
            op.create_object("db", "t_mv", "CREATE MATERIALIZED VIEW db.t_mv TO db.t_old AS SELECT x FROM db.s")


        def downgrade() -> None:
            \"\"\"Nothing to undo: t_old is kept for audit.\"\"\"
        """,
    ),
    (
        "alter-kafka-raw",
        "alter-kafka",
        f"""
        QUEUE = "{KAFKA_DDL.format(group="g1")}"


        def upgrade() -> None:
            op.create_object("db", "trades_queue", QUEUE)
            op.execute_sql("ALTER TABLE db.trades_queue MODIFY SETTING kafka_num_consumers = 2", done_when="SELECT 0")


        def downgrade() -> None:
            op.drop_object("db", "trades_queue")
        """,
        f"""
        QUEUE = "{KAFKA_DDL.format(group="g1")}"


        def upgrade() -> None:
            op.create_object("db", "trades_queue", QUEUE)
            op.execute_sql("ALTER TABLE db.trades MODIFY SETTING index_granularity = 4096", done_when="SELECT 0")


        def downgrade() -> None:
            op.drop_object("db", "trades_queue")
        """,
    ),
    (
        "alter-kafka-operation",
        "alter-kafka",
        f"""
        QUEUE = "{KAFKA_DDL.format(group="g1")}"


        def upgrade() -> None:
            op.create_object("db", "trades_queue", QUEUE)
            op.add_column_if_missing("db", "trades_queue", "extra", "String")


        def downgrade() -> None:
            op.drop_object("db", "trades_queue")
        """,
        f"""
        QUEUE = "{KAFKA_DDL.format(group="g1")}"
        QUEUE_WITH_EXTRA = "{KAFKA_DDL.format(group="g1").replace("payload String", "payload String, extra String")}"


        def upgrade() -> None:
            op.create_object("db", "trades_queue", QUEUE)
            op.drop_object("db", "trades_queue")
            op.create_object("db", "trades_queue", QUEUE_WITH_EXTRA)


        def downgrade() -> None:
            op.drop_object("db", "trades_queue")
        """,
    ),
    (
        "kafka-group-changed-in-one-file",
        "kafka-group-changed",
        f"""
        def upgrade() -> None:
            op.drop_object("db", "trades_queue")
            op.create_object("db", "trades_queue", "{KAFKA_DDL.format(group="g2")}")


        def downgrade() -> None:
            op.drop_object("db", "trades_queue")
            op.create_object("db", "trades_queue", "{KAFKA_DDL.format(group="g1")}")
        """,
        f"""
        def upgrade() -> None:
            op.drop_object("db", "trades_queue")
            op.create_object("db", "trades_queue", "{KAFKA_DDL.format(group="g1")}")


        def downgrade() -> None:
            op.drop_object("db", "trades_queue")
            op.create_object("db", "trades_queue", "{KAFKA_DDL.format(group="g1")}")
        """,
    ),
    (
        "recreate-view",
        "recreate-view",
        """
        def upgrade() -> None:
            op.drop_object("db", "t_mv")
            op.create_object("db", "t_mv", "CREATE MATERIALIZED VIEW db.t_mv TO db.t AS SELECT x + 1 AS x FROM db.s")


        def downgrade() -> None:
            op.replace_view("db", "t_mv", "CREATE MATERIALIZED VIEW db.t_mv TO db.t AS SELECT x FROM db.s")
        """,
        """
        def upgrade() -> None:
            op.replace_view("db", "t_mv", "CREATE MATERIALIZED VIEW db.t_mv TO db.t AS SELECT x + 1 AS x FROM db.s")


        def downgrade() -> None:
            op.replace_view("db", "t_mv", "CREATE MATERIALIZED VIEW db.t_mv TO db.t AS SELECT x FROM db.s")
        """,
    ),
    (
        "raw-rename-column",
        "unchecked-dependents",
        """
        def upgrade() -> None:
            op.execute_sql("ALTER TABLE db.t RENAME COLUMN IF EXISTS a TO b")


        def downgrade() -> None:
            \"\"\"Nothing to undo: test.\"\"\"
        """,
        """
        def upgrade() -> None:
            op.rename_column("db", "t", "a", "b")


        def downgrade() -> None:
            \"\"\"Nothing to undo: test.\"\"\"
        """,
    ),
    (
        "raw-drop-column",
        "unchecked-dependents",
        """
        def upgrade() -> None:
            op.execute_sql("ALTER TABLE db.t ADD COLUMN IF NOT EXISTS c UInt8, DROP COLUMN IF EXISTS a")


        def downgrade() -> None:
            \"\"\"Nothing to undo: test.\"\"\"
        """,
        """
        def upgrade() -> None:
            op.drop_column_if_exists("db", "t", "a")


        def downgrade() -> None:
            \"\"\"Nothing to undo: test.\"\"\"
        """,
    ),
    (
        "raw-drop-table-dependents",
        "unchecked-dependents",
        """
        def upgrade() -> None:
            op.take_guards("rows", ["db.t"])
            op.execute_sql("DROP TABLE IF EXISTS db.t")
            op.check_guards("rows")


        def downgrade() -> None:
            \"\"\"Nothing to undo: test.\"\"\"
        """,
        """
        def upgrade() -> None:
            op.take_guards("rows", ["db.t"])
            op.drop_object("db", "t", allow_rows=True)
            op.check_guards("rows")


        def downgrade() -> None:
            \"\"\"Nothing to undo: test.\"\"\"
        """,
    ),
    (
        "raw-rename-table-dependents",
        "unchecked-dependents",
        """
        def upgrade() -> None:
            op.execute_sql("RENAME TABLE db.t TO db.t_old", done_when="SELECT 1")
            op.create_object("db", "t_mv", "CREATE MATERIALIZED VIEW db.t_mv TO db.t_old AS SELECT x FROM db.s")


        def downgrade() -> None:
            \"\"\"Nothing to undo: test.\"\"\"
        """,
        """
        def upgrade() -> None:
            op.move_table("db", "t", "old")
            op.create_object("old", "t_mv", "CREATE MATERIALIZED VIEW old.t_mv TO old.t AS SELECT x FROM db.s")


        def downgrade() -> None:
            \"\"\"Nothing to undo: test.\"\"\"
        """,
    ),
]


@pytest.mark.parametrize(("rule", "bad", "good"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_fires_on_bad_revision_and_not_on_its_fix(
    tmp_path: Path, rule: str, bad: str, good: str
) -> None:
    assert rule in RULES
    findings = lint(tmp_path, bad)
    assert failing(findings) == [rule], [f.describe() for f in findings]
    fixed = lint(tmp_path, good)
    assert failing(fixed) == [] and rule not in [f.rule for f in fixed], [f.describe() for f in fixed]


def test_every_rule_has_a_case() -> None:
    tested = {c[1] for c in CASES} | {"syntax", "waiver-without-reason", "waiver-unknown-rule"}
    tested |= {
        "sql-file-missing",
        "empty-sql-file",
    }  # tests/test_sql_files.py: they need files beside the revision
    assert tested == set(RULES)


def test_finding_names_file_line_rule_and_fix(tmp_path: Path) -> None:
    path = write(
        tmp_path, "r1.py", 'def upgrade() -> None:\n    op.execute_sql("INSERT INTO db.t VALUES (1)")\n'
    )
    findings = lint_paths([path])
    assert [(f.rule, f.line) for f in findings] == [("no-downgrade", 13), ("not-idempotent", 14)]
    insert = findings[1]
    assert insert.path == path and insert.waived_reason is None and not insert.waived
    text = insert.describe()
    assert text.startswith(f"{path}:14: not-idempotent INSERT inserts its rows a second time")
    assert " — fix: give op.execute_sql done_when=" in text
    assert "\n" not in text


def test_op_execute_with_alembic_text_and_multiline_sql(tmp_path: Path) -> None:
    findings = lint(
        tmp_path,
        '''
        import sqlalchemy as sa


        def upgrade() -> None:
            op.execute(sa.text("""
                -- the backfill
                ALTER TABLE db.t DELETE WHERE x = 0
            """))


        def downgrade() -> None:
            """Nothing to undo: the deleted rows were invalid."""
        ''',
    )
    assert failing(findings) == ["not-idempotent"]
    assert "op.execute runs ALTER" in findings[0].message
    assert "op.run_mutation" in findings[0].fix


def test_unreadable_sql_gives_no_finding(tmp_path: Path) -> None:
    """SQL built by a function call cannot be read: the linter says nothing rather than guess."""
    findings = lint(
        tmp_path,
        """
        from k2_migrations.k2 import baseline_schema as schema


        def upgrade() -> None:
            op.execute_sql(build_statement())
            op.create_object("db", "q", schema.kafka_table_ddl("bronze_trades_binance_queue", "db", "b:9092"))
            op.move_table("default", "t", "k2")
            op.create_object("k2", "t_mv", schema.view_ddl("t_mv", "k2"))


        def downgrade() -> None:
            \"\"\"Nothing to undo: test.\"\"\"
        """,
    )
    assert findings == []


def test_sql_words_in_literals_comments_and_prose_are_not_sql(tmp_path: Path) -> None:
    findings = lint(
        tmp_path,
        """
        def upgrade() -> None:
            op.verify("no populate left", "SELECT count() FROM system.tables WHERE create_table_query LIKE '%POPULATE%'")
            op.execute_sql("SELECT 1 -- DROP TABLE db.t SYNC", done_when="SELECT 1")
            message = "please populate the table by hand"
            print(message)


        def downgrade() -> None:
            \"\"\"Nothing to undo: read-only checks.\"\"\"
        """,
    )
    assert findings == []


def test_helper_reached_without_guard_from_one_entry_is_a_finding(tmp_path: Path) -> None:
    findings = lint(
        tmp_path,
        """
        def _drop() -> None:
            op.drop_object("db", "scratch", allow_rows=True)


        def upgrade() -> None:
            op.take_guards("rows", ["db.t"])
            _drop()


        def downgrade() -> None:
            _drop()
        """,
    )
    assert failing(findings) == ["drop-without-guard"]
    assert findings[0].line == 14 and "in downgrade()" in findings[0].message


def test_kafka_group_changed_across_files(tmp_path: Path) -> None:
    ddl_g1, ddl_g2 = KAFKA_DDL.format(group="g1"), KAFKA_DDL.format(group="g2")
    first = write(
        tmp_path,
        "a_001.py",
        f"""
        def upgrade() -> None:
            op.create_object("db", "trades_queue", "{ddl_g1}")


        def downgrade() -> None:
            op.drop_object("db", "trades_queue")
        """,
    )
    second = write(
        tmp_path,
        "a_002.py",
        f"""
        QUEUE = "{ddl_g2}"


        def upgrade() -> None:
            op.drop_object("db", "trades_queue")
            op.create_object("db", "trades_queue", QUEUE)


        def downgrade() -> None:
            op.drop_object("db", "trades_queue")
            op.create_object("db", "trades_queue", "{ddl_g1}")
        """,
    )
    assert lint_paths([first]) == [] and lint_paths([second]) != []
    findings = lint_paths([tmp_path])
    assert [(f.path.name, f.line, f.rule) for f in findings] == [("a_002.py", 13, "kafka-group-changed")]
    assert "'g2'" in findings[0].message and f"{first}:14" in findings[0].message
    assert "kafka_group_name = 'g1'" in findings[0].fix


def test_kafka_group_from_code_cannot_be_checked(tmp_path: Path) -> None:
    findings = lint(
        tmp_path,
        f"""
        def upgrade() -> None:
            group = group_for("trades")
            op.create_object("db", "trades_queue", "{KAFKA_DDL.format(group="g1")}")
            op.create_object("db", "trades_queue2", f"{KAFKA_DDL.format(group="{group}")}")


        def downgrade() -> None:
            op.drop_object("db", "trades_queue2")
            op.drop_object("db", "trades_queue")
        """,
    )
    assert findings == []


def test_kafka_positional_engine_arguments(tmp_path: Path) -> None:
    findings = lint(
        tmp_path,
        """
        OLD = "CREATE TABLE db.q (p String) ENGINE = Kafka('b:9092', 'trades', 'g1', 'JSONEachRow')"
        NEW = "CREATE TABLE db.q (p String) ENGINE = Kafka('b:9092', 'trades', 'g2', 'JSONEachRow')"


        def upgrade() -> None:
            op.create_object("db", "q", OLD)
            op.drop_object("db", "q")
            op.create_object("db", "q", NEW)


        def downgrade() -> None:
            op.drop_object("db", "q")
        """,
    )
    assert failing(findings) == ["kafka-group-changed"]
    assert findings[0].line == 14


# -- SQL read as tokens: keywords only where ClickHouse reads them -------------------------------

GUARDED = """
def upgrade() -> None:
    op.take_guards("rows", ["db.t"])
    op.execute_sql({sql!r}, done_when="SELECT 1")  # k2-lint: allow unchecked-dependents -- keywords tested here
    op.check_guards("rows")


def downgrade() -> None:
    \"\"\"Nothing to undo: test.\"\"\"
"""


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE IF EXISTS k2.sync",
        "DROP TABLE IF EXISTS sync",
        "DROP TABLE IF EXISTS db.a, db.sync",
        "DROP TABLE IF EXISTS `db`.`t` -- no SYNC here",
        "DROP VIEW IF EXISTS db.v /* SYNC */",
        "CREATE TABLE IF NOT EXISTS db.t (populate UInt8, sync UInt8) ENGINE = MergeTree ORDER BY populate",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS db.v TO db.populate AS SELECT populate, sync FROM db.s",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS db.v TO db.t AS SELECT x FROM db.s WHERE y = 'POPULATE'",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS db.v TO db.t # no POPULATE\nAS SELECT x FROM db.s",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS db.v TO db.t /* POPULATE */ AS SELECT x FROM db.s",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS db.v TO db.t AS SELECT `POPULATE` FROM db.s",
        "INSERT INTO db.log VALUES ('DROP TABLE x SYNC', 'POPULATE')",
        "ALTER TABLE db.t ADD COLUMN IF NOT EXISTS populate UInt8",
    ],
)
def test_keywords_as_names_comments_and_literals_are_no_findings(tmp_path: Path, sql: str) -> None:
    findings = lint(tmp_path, GUARDED.format(sql=sql))
    assert failing(findings) == [], [f.describe() for f in findings]  # a raw DROP TABLE: waived


@pytest.mark.parametrize(
    ("sql", "rule", "said"),
    [
        ("DROP TABLE IF EXISTS db.sync SYNC", "drop-sync", "DROP ... SYNC hangs"),
        ("drop database if exists scratch sync", "drop-sync", "DROP ... SYNC hangs"),
        ("DROP DICTIONARY IF EXISTS db.d NO DELAY", "drop-sync", "NO DELAY is the old spelling of SYNC"),
        ("DROP VIEW IF EXISTS db.v ON CLUSTER c SYNC -- SYNC waits", "drop-sync", "DROP ... SYNC hangs"),
        (
            "CREATE MATERIALIZED VIEW IF NOT EXISTS db.v ENGINE = SummingMergeTree ORDER BY (a, b)\n"
            "POPULATE AS SELECT a, b, count() AS populate FROM db.s GROUP BY a, b",
            "populate",
            "POPULATE fills",
        ),
        ("/* leading */ CREATE MATERIALIZED VIEW db.v TO db.t POPULATE AS SELECT 1", "populate", "POPULATE"),
    ],
)
def test_keywords_in_keyword_position_are_findings(tmp_path: Path, sql: str, rule: str, said: str) -> None:
    findings = lint(tmp_path, GUARDED.format(sql=sql))
    assert failing(findings) == [rule], [f.describe() for f in findings]
    assert said in findings[0].message and findings[0].line == 15


@pytest.mark.parametrize(
    ("command", "clause"),
    [
        ("MATERIALIZE COLUMN notional", "MATERIALIZE COLUMN"),
        ("MATERIALIZE INDEX IF EXISTS idx SETTINGS mutations_sync = 2", "MATERIALIZE INDEX"),
        ("MATERIALIZE PROJECTION p IN PARTITION 202401", "MATERIALIZE PROJECTION"),
        ("MATERIALIZE TTL", "MATERIALIZE TTL"),
        ("UPDATE y = y + 1 WHERE 1", "UPDATE/DELETE"),
        ("DELETE WHERE x = 0", "UPDATE/DELETE"),
        ("DELETE IN PARTITION 202401 WHERE x = 0", "UPDATE/DELETE"),
        ("ADD COLUMN IF NOT EXISTS y UInt8, MATERIALIZE COLUMN y", "MATERIALIZE COLUMN"),
        ("(ADD INDEX IF NOT EXISTS i x TYPE minmax GRANULARITY 1, MATERIALIZE INDEX i)", "MATERIALIZE INDEX"),
    ],
)
def test_raw_mutations_without_done_when_are_findings(tmp_path: Path, command: str, clause: str) -> None:
    body = """
    def upgrade() -> None:
        op.execute_sql("ALTER TABLE db.t ON CLUSTER c {command}")
        op.execute_sql("ALTER TABLE db.t {command}", done_when="SELECT 1")


    def downgrade() -> None:
        \"\"\"Nothing to undo: test.\"\"\"
    """
    findings = lint(tmp_path, body.format(command=command))
    assert [(f.rule, f.line) for f in findings] == [("not-idempotent", 14)], [f.describe() for f in findings]
    assert findings[0].message.startswith(f"ALTER ... {clause} is a mutation: a resumed run issues it again")
    assert "op.run_mutation" in findings[0].fix


@pytest.mark.parametrize(
    "command",
    [
        "MODIFY TTL d + INTERVAL 1 DAY DELETE",
        "MODIFY COLUMN x UInt8 MATERIALIZED y + 1",
        "ADD COLUMN IF NOT EXISTS materialize UInt8",
        "MODIFY SETTING index_granularity = 4096 -- then MATERIALIZE INDEX i",
        "COMMENT COLUMN x 'UPDATE x = 1 WHERE 1'",
    ],
)
def test_alters_that_are_no_mutation_are_no_findings(tmp_path: Path, command: str) -> None:
    findings = lint(tmp_path, GUARDED.format(sql=f"ALTER TABLE db.t {command}"))
    assert findings == [], [f.describe() for f in findings]
    findings = lint(
        tmp_path, GUARDED.format(sql=f"ALTER TABLE db.t {command}").replace(', done_when="SELECT 1"', "")
    )
    assert all("mutation" not in f.message for f in findings), [f.describe() for f in findings]


# -- revisions that do nothing -------------------------------------------------------------------


def _from_template(path: Path, down_revision: str | tuple[str, ...] | None) -> None:
    """Write a revision as ``k2-migrate revision``/``merge`` does: the project's own template, rendered by Alembic."""
    from alembic.util import format_as_comma, template_to_file

    template_to_file(
        ROOT / "k2_migrations" / "alembic_env" / "script.py.mako",
        path,
        "utf-8",
        up_revision="r1",
        down_revision=down_revision,
        branch_labels=None,
        depends_on=None,
        create_date="2026-01-01",
        message="a test",
        comma=format_as_comma,
        upgrades=None,
        downgrades=None,
    )


def test_a_new_revision_from_the_template_is_flagged_until_written(tmp_path: Path) -> None:
    path = tmp_path / "r1_a_test.py"
    _from_template(path, "k2_004")
    findings = lint_paths([path])
    line = next(
        i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("def upgrade")
    )
    assert [f.describe() for f in findings] == [
        f"{path}:{line}: empty-revision upgrade() and downgrade() do nothing yet: the revision is still the "
        "template k2-migrate revision wrote — fix: write upgrade() with the operations on op "
        "(docs/authoring.md) and downgrade() undoing them in reverse order; give an upgrade() meant to do "
        "nothing a docstring saying why, or delete the file"
    ]
    written = path.read_text().replace("    pass\n", '    op.create_database("k2")\n', 1)
    assert failing(lint_source(path, written)) == ["no-downgrade"]
    written = written.replace("    pass\n", '    op.drop_database("k2")\n', 1)
    assert lint_source(path, written) == []


def test_a_merge_revision_with_empty_bodies_is_no_finding(tmp_path: Path) -> None:
    path = tmp_path / "r1_merge.py"
    _from_template(path, ("a1", "b2"))
    assert lint_paths([path]) == []
    bare = revision(
        """
        down_revision = ("a1", "b2")


        def upgrade() -> None:
            pass


        def downgrade() -> None:
            pass
        """
    )
    assert lint_source(path, bare) == []
    doing = bare.replace(
        "def upgrade() -> None:\n    pass", 'def upgrade() -> None:\n    op.create_database("k2")'
    )
    assert failing(lint_source(path, doing)) == ["no-downgrade"]


# -- the corpus: real-world ClickHouse SQL --------------------------------------------------------


def _top_words(tokens: list[Token]) -> list[str]:
    """The unquoted words outside parentheses: where a ClickHouse keyword can stand."""
    words: list[str] = []
    depth = 0
    for token in tokens:
        if token.kind is Kind.PUNCT and token.value in "()":
            depth += 1 if token.value == "(" else -1
        elif depth == 0 and token.kind is Kind.WORD:
            words.append(token.value.upper())
    return words


def _expected(sql: str) -> set[str]:
    """What the statement really says, from sqltext's tokens: POPULATE in a materialized view's DDL,
    SYNC ending a DROP, a mutation command in an ALTER."""
    expected: set[str] = set()
    statements: list[list[Token]] = [[]]
    for token in tokenize(sql):
        if token.kind is Kind.PUNCT and token.value == ";":
            statements.append([])
        else:
            statements[-1].append(token)
    for statement in statements:
        words = _top_words(statement)
        if words[:1] == ["CREATE"] and "MATERIALIZED" in words[:4] and "POPULATE" in words:
            expected.add("populate")
        if words[:1] == ["DROP"] and words[-1:] == ["SYNC"]:
            expected.add("drop-sync")
        if words[:1] == ["ALTER"] and {"UPDATE", "DELETE", "MATERIALIZE"} & set(words):
            expected.add("mutation")
    return expected


def test_corpus_statements_give_sync_populate_and_mutation_findings_only_where_the_sql_says_so() -> None:
    if not CORPUS.is_file():
        pytest.skip(f"the shared SQL corpus is not here ({CORPUS}): it is test data outside the project")
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    statements: list[tuple[str, str]] = []
    for row in rows:
        sql: str = row["sql"]
        statements.append((row["id"], sql))
        # The same statement under comments that name every keyword: nothing may change.
        noisy = f"/* POPULATE; DROP TABLE x SYNC; MATERIALIZE INDEX i */\n# no POPULATE\n{sql}\n-- DROP TABLE t SYNC"
        statements.append((row["id"] + "~comments", noisy))
    calls = "\n".join(f"    op.execute_sql({sql!r})" for _, sql in statements)
    source = f'from alembic import op\n\n\ndef upgrade() -> None:\n{calls}\n\n\ndef downgrade() -> None:\n    """Test."""\n'
    reported: dict[int, set[str]] = {}
    for finding in lint_source(Path("corpus.py"), source):
        if finding.rule in ("populate", "drop-sync"):
            reported.setdefault(finding.line, set()).add(finding.rule)
        elif finding.rule == "not-idempotent" and " is a mutation: " in finding.message:
            reported.setdefault(finding.line, set()).add("mutation")
    wrong = {}
    counts = {"populate": 0, "drop-sync": 0, "mutation": 0}
    for index, (name, sql) in enumerate(statements):
        expected = _expected(sql)
        for kind in expected:
            counts[kind] += 1
        if reported.get(5 + index, set()) != expected:
            wrong[name] = (sorted(expected), sorted(reported.get(5 + index, set())))
    assert wrong == {}
    assert (
        counts["populate"] >= 4 and counts["mutation"] >= 22
    )  # the corpus's POPULATE views and MATERIALIZE INDEXes


# -- waivers -------------------------------------------------------------------------------------

DROP_SCRATCH = """
def upgrade() -> None:
    {above}
    op.drop_object("db", "scratch", allow_rows=True){inline}


def downgrade() -> None:
    \"\"\"Nothing to undo: scratch is rebuilt by the nightly load.\"\"\"
"""


@pytest.mark.parametrize(
    ("above", "inline"),
    [
        ("# k2-lint: allow drop-without-guard -- scratch is rebuilt nightly", ""),
        ("pass", "  # k2-lint: allow drop-without-guard -- scratch is rebuilt nightly"),
        ("# k2-lint: allow populate, drop-without-guard -- scratch is rebuilt nightly", ""),
    ],
    ids=["line-above", "same-line", "several-rules"],
)
def test_waiver_with_reason_waives(tmp_path: Path, above: str, inline: str) -> None:
    findings = lint(tmp_path, DROP_SCRATCH.format(above=above, inline=inline))
    assert failing(findings) == []
    assert [(f.rule, f.waived_reason) for f in findings] == [
        ("drop-without-guard", "scratch is rebuilt nightly")
    ]
    assert findings[0].waived
    assert findings[0].describe().endswith("(waived: scratch is rebuilt nightly)")


def test_waiver_without_reason_waives_nothing_and_is_a_finding(tmp_path: Path) -> None:
    findings = lint(tmp_path, DROP_SCRATCH.format(above="# k2-lint: allow drop-without-guard", inline=""))
    assert failing(findings) == ["waiver-without-reason", "drop-without-guard"]
    assert findings[0].line == 14
    findings = lint(
        tmp_path, DROP_SCRATCH.format(above="# k2-lint: allow drop-without-guard --  ", inline="")
    )
    assert failing(findings) == ["waiver-without-reason", "drop-without-guard"]


def test_waiver_for_another_rule_or_line_does_not_waive(tmp_path: Path) -> None:
    findings = lint(
        tmp_path, DROP_SCRATCH.format(above="# k2-lint: allow populate -- not this one", inline="")
    )
    assert failing(findings) == ["drop-without-guard"]
    far = DROP_SCRATCH.replace(
        "    {above}\n", "    # k2-lint: allow drop-without-guard -- two lines up\n    pass\n"
    )
    assert failing(lint(tmp_path, far.format(inline=""))) == ["drop-without-guard"]


def test_waiver_naming_an_unknown_rule_is_a_finding(tmp_path: Path) -> None:
    findings = lint(
        tmp_path, DROP_SCRATCH.format(above="# k2-lint: allow drop-without-gaurd -- typo", inline="")
    )
    assert failing(findings) == ["waiver-unknown-rule", "drop-without-guard"]
    assert "drop-without-gaurd" in findings[0].message
    findings = lint(tmp_path, DROP_SCRATCH.format(above="# k2-lint: disable everything", inline=""))
    assert failing(findings) == ["waiver-unknown-rule", "drop-without-guard"]


def test_waiver_text_inside_a_string_is_not_a_waiver(tmp_path: Path) -> None:
    findings = lint(
        tmp_path,
        DROP_SCRATCH.format(above='note = "# k2-lint: allow drop-without-guard -- in a string"', inline=""),
    )
    assert failing(findings) == ["drop-without-guard"]


# -- files ---------------------------------------------------------------------------------------


def test_syntax_error_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("def upgrade() -> None:\n    op.execute_sql(\n")
    good = tmp_path / "good.py"
    good.write_text('"""Not a revision: a helper module, so it needs no downgrade()."""\n')
    findings = lint_paths([tmp_path])
    assert [(f.path, f.line, f.rule) for f in findings] == [(path, 2, "syntax")]
    assert lint_paths([good]) == []
    source_findings = lint_source(Path("x.py"), "def downgrade(:\n")
    assert [f.rule for f in source_findings] == ["syntax"]


def test_non_utf8_file_is_a_syntax_finding(tmp_path: Path) -> None:
    path = tmp_path / "latin.py"
    path.write_bytes(b"# caf\xe9\n")
    assert [(f.rule, f.line) for f in lint_paths([path])] == [("syntax", 1)]


def test_directory_skips_init_and_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("def upgrade() -> None:\n    pass\n")
    (tmp_path / "notes.txt").write_text("DROP TABLE x SYNC")
    assert lint_paths([tmp_path]) == []
    with pytest.raises(UsageError, match="neither a file nor a directory"):
        lint_paths([tmp_path / "nope"])


def test_lint_source_matches_lint_paths(tmp_path: Path) -> None:
    body = 'def upgrade() -> None:\n    op.execute_sql("RENAME TABLE db.a TO db.b")\n'
    path = write(tmp_path, "r1.py", body)
    assert lint_source(path, revision(body)) == lint_paths([path])
    assert sorted(failing(lint_paths([path]))) == [
        "no-downgrade",
        "not-idempotent",
        "rename-view-target",
        "unchecked-dependents",
    ]


def test_rules_are_kebab_case_one_line_and_documented() -> None:
    """Every rule is listed in docs/authoring.md and in ``k2-migrate lint --help``, with the waiver syntax."""
    from click.testing import CliRunner

    from k2_migrations.cli import main

    docs = (ROOT / "docs" / "authoring.md").read_text()
    lint_section = docs[docs.index("## `k2-migrate lint`") :]
    help_text = " ".join(CliRunner().invoke(main, ["lint", "--help"]).stdout.split())
    assert "# k2-lint: allow drop-without-guard -- " in help_text
    assert "# k2-lint: allow populate, drop-sync -- reason" in lint_section
    assert [r.id for r in ALL_RULES] == list(RULES)
    for rule in ALL_RULES:
        assert rule.id.replace("-", "").isalpha() and rule.id == rule.id.lower()
        assert rule.what and "\n" not in rule.what and rule.fix
        assert f"| `{rule.id}` |" in lint_section, rule.id
        assert rule.id in help_text, rule.id


# -- the reference: the real K2 revisions ------------------------------------------------------


def test_real_k2_revisions_have_no_findings() -> None:
    assert sorted(p.name for p in VERSIONS.glob("k2_*.py")) == [
        "k2_001_baseline.py",
        "k2_002_create_k2.py",
        "k2_003_move_to_k2.py",
        "k2_004_ohlcv_window_end.py",
    ]
    findings = lint_paths([VERSIONS])
    assert findings == [], [f.describe() for f in findings]


def test_each_real_revision_alone_has_no_findings() -> None:
    for path in sorted(VERSIONS.glob("k2_*.py")):
        assert lint_source(path, path.read_text()) == [], path


def test_the_lint_command(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from k2_migrations.cli import main

    bad = tmp_path / "rbad.py"
    bad.write_text(
        '"""bad"""\nfrom alembic import op\n\nrevision = "bad"\ndown_revision = None\n\n\n'
        "def upgrade() -> None:\n"
        '    op.execute_sql("CREATE MATERIALIZED VIEW db.v TO db.t POPULATE AS SELECT * FROM db.s")\n\n\n'
        "def downgrade() -> None:\n    pass\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = CliRunner().invoke(main, ["-c", str(root / "alembic.ini"), "lint", str(bad)])
    assert result.exit_code == 5
    assert f"{bad}:9: populate" in result.stdout and "no-downgrade" in result.stdout
    assert "k2-migrate: error: " in result.stderr and "lint finding(s)" in result.stderr
    clean = CliRunner().invoke(main, ["-c", str(root / "alembic.ini"), "lint"])
    assert clean.exit_code == 0 and clean.stdout.strip() == "no findings"


# -- the statement rules over .sql files --------------------------------------------------------

RUNS = 'op.run_sql_file("r1.sql")'
KAFKA_G1 = f"op.create_object('db', 'trades_queue', {KAFKA_DDL.format(group='g1')!r})\n{RUNS}"
SECOND_QUEUE = KAFKA_DDL.replace("trades_queue", "trades_queue2") + ";\n"
MV = "CREATE MATERIALIZED VIEW IF NOT EXISTS db.t_mv TO db.t_old AS SELECT x FROM db.s"
# (id, rule, the revision's upgrade() and the .sql file it runs; then both fixed)
SQL_CASES: list[tuple[str, str, str, str, str, str]] = [
    (
        "kafka-group-changed",
        "kafka-group-changed",
        KAFKA_G1,
        SECOND_QUEUE.format(group="g2"),
        KAFKA_G1,
        SECOND_QUEUE.format(group="g1"),
    ),
    (
        "alter-kafka",
        "alter-kafka",
        KAFKA_G1,
        "-- done_when: SELECT 1\nALTER TABLE db.trades_queue MODIFY SETTING kafka_num_consumers = 2;\n",
        KAFKA_G1,
        "-- done_when: SELECT 1\nALTER TABLE db.trades MODIFY SETTING index_granularity = 2048;\n",
    ),
    (
        "drop-without-guard",
        "drop-without-guard",
        RUNS,
        "DROP TABLE IF EXISTS db.scratch;\n",
        f'op.take_guards("rows", ["db.t"])\n{RUNS}\nop.check_guards("rows")',
        "DROP TABLE IF EXISTS db.scratch;\n",
    ),
    (
        "rename-view-target-in-the-file",
        "rename-view-target",
        RUNS,
        "-- done_when: SELECT 1\nRENAME TABLE db.t TO db.t_old;\n",
        RUNS,
        f"-- done_when: SELECT 1\nRENAME TABLE db.t TO db.t_old;\n{MV};\n",
    ),
    (
        "rename-view-target-after-the-file",
        "rename-view-target",
        RUNS,
        "-- done_when: SELECT 1\nRENAME TABLE db.t TO db.t_old;\n",
        f'{RUNS}\nop.create_object("db", "t_mv", "{MV}")',
        "-- done_when: SELECT 1\nRENAME TABLE db.t TO db.t_old;\n",
    ),
    (
        "recreate-view",
        "recreate-view",
        RUNS,
        "DROP VIEW IF EXISTS db.t_mv;\n"
        "CREATE MATERIALIZED VIEW IF NOT EXISTS db.t_mv TO db.t AS SELECT x + 1 AS x FROM db.s;\n",
        RUNS,
        "-- done_when: SELECT 1\nALTER TABLE db.t_mv MODIFY QUERY SELECT x + 1 AS x FROM db.s;\n",
    ),
    (
        "unchecked-dependents",
        "unchecked-dependents",
        RUNS,
        "ALTER TABLE db.t ADD COLUMN IF NOT EXISTS c UInt8;\nALTER TABLE db.t RENAME COLUMN IF EXISTS a TO b;\n",
        RUNS,
        "ALTER TABLE db.t ADD COLUMN IF NOT EXISTS c UInt8;\n",
    ),
]


def _sql_findings(directory: Path, upgrade: str, sql: str) -> list[Finding]:
    directory.mkdir()
    body = "def upgrade() -> None:\n" + textwrap.indent(upgrade, "    ")
    write(directory, "r1.py", body + '\n\n\ndef downgrade() -> None:\n    """Nothing to undo: test."""\n')
    (directory / "r1.sql").write_text(sql)
    return lint_paths([directory])


@pytest.mark.parametrize(
    ("rule", "bad_upgrade", "bad_sql", "good_upgrade", "good_sql"),
    [c[1:] for c in SQL_CASES],
    ids=[c[0] for c in SQL_CASES],
)
def test_statement_rules_fire_on_a_sql_file_and_not_on_its_fix(
    tmp_path: Path, rule: str, bad_upgrade: str, bad_sql: str, good_upgrade: str, good_sql: str
) -> None:
    bad = _sql_findings(tmp_path / "bad", bad_upgrade, bad_sql)
    found = [(f.path.name, f.line, f.rule) for f in bad if not f.waived]
    last = bad_sql.rstrip().count("\n") + 1  # each case's offending statement is the file's last
    assert ("r1.sql", last, rule) in found, [f.describe() for f in bad]
    good = _sql_findings(tmp_path / "good", good_upgrade, good_sql)
    assert rule not in [f.rule for f in good], [f.describe() for f in good]


def test_a_sql_file_run_by_a_guarded_and_an_unguarded_revision_drops_without_guard(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    guarded = f'op.take_guards("rows", ["db.t"])\n    {RUNS}\n    op.check_guards("rows")'
    for name, upgrade in (("r1.py", guarded), ("r2.py", RUNS)):
        write(
            versions,
            name,
            f'def upgrade() -> None:\n    {upgrade}\n\n\ndef downgrade() -> None:\n    """Test."""\n',
        )
    (versions / "r1.sql").write_text(
        "-- k2-lint: allow unchecked-dependents -- scratch: no view reads it\n"
        "DROP TABLE IF EXISTS db.scratch;\n"
    )
    assert [(f.path.name, f.line, f.rule) for f in lint_paths([versions]) if not f.waived] == [
        ("r1.sql", 2, "drop-without-guard")
    ]
    (versions / "r2.py").unlink()
    assert failing(lint_paths([versions])) == []
