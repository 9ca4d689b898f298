"""The revision linter: each rule fires on a minimal bad revision and not on its fixed form.

The real K2 revisions are the reference of correct use: a rule that fires on them is too loose, so
the last tests lint ``versions/`` and expect nothing. Every revision here is written to ``tmp_path``
and only read by the linter, never imported.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from k2_migrations.authoring.lint import RULES, Finding, lint_paths, lint_source
from k2_migrations.errors import UsageError

VERSIONS = Path(__file__).resolve().parents[1] / "versions"

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
            op.execute_sql(
                "ALTER TABLE db.t "  # a comment between the parts of the string
                "DROP COLUMN y"
            )
        """,
        """
        def upgrade() -> None:
            op.add_column_if_missing("db", "t", "y", "UInt8")


        def downgrade() -> None:
            op.execute_sql("ALTER TABLE db.t DROP COLUMN IF EXISTS y")
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
            op.execute_sql("DROP TABLE IF EXISTS db.scratch")


        def downgrade() -> None:
            \"\"\"Nothing to undo: scratch is rebuilt by the nightly load.\"\"\"
        """,
        """
        def _guard() -> None:
            op.take_guards("rows", ["db.t"])


        def _drop_scratch() -> None:
            op.execute_sql("DROP TABLE IF EXISTS db.scratch")


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
            op.execute_sql("RENAME TABLE db.t TO db.t_old", done_when="SELECT exists(SELECT 1 FROM system.tables WHERE name = 't_old')")


        def downgrade() -> None:
            \"\"\"Nothing to undo: t_old is kept for audit.\"\"\"
        """,
        """
        def upgrade() -> None:
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
]


@pytest.mark.parametrize(("rule", "bad", "good"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_fires_on_bad_revision_and_not_on_its_fix(
    tmp_path: Path, rule: str, bad: str, good: str
) -> None:
    assert rule in RULES
    findings = lint(tmp_path, bad)
    assert failing(findings) == [rule], [f.describe() for f in findings]
    assert lint(tmp_path, good) == []


def test_every_rule_has_a_case() -> None:
    tested = {c[1] for c in CASES} | {"syntax", "waiver-without-reason", "waiver-unknown-rule"}
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
    assert sorted(failing(lint_paths([path]))) == ["no-downgrade", "not-idempotent", "rename-view-target"]


def test_rules_are_kebab_case_one_line_and_documented() -> None:
    from k2_migrations.authoring import lint as module

    assert module.__doc__ is not None
    for rule, description in RULES.items():
        assert rule.replace("-", "").isalpha() and rule == rule.lower()
        assert description and "\n" not in description
        assert rule in module.__doc__


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
