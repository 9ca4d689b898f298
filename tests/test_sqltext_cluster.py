"""ON CLUSTER in SQL text, checked against the engine's own parser (``formatQuery``), not our picture of it.

Each hand-written case marks with ``§`` where the clause belongs; the reference statement is built by
putting ``ON CLUSTER 'name'`` there (a string literal, another spelling than the one cluster_form
writes), and the engine's normal form of both must be the same. The public corpus is checked the other
way round: the engine places the clause (the authors' statements carry one), we remove it from the
engine's text and must put it back where the engine had it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k2_migrations.sqltext.cluster import SYSTEM_COMMANDS, cluster_form, takes_on_cluster
from k2_migrations.sqltext.quoting import literal
from tests.conftest import ROOT, unique

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

CORPUS = ROOT.parent / "shared" / "corpus" / "clickhouse-ddl.jsonl"
UUID = "'123e4567-e89b-12d3-a456-426614174000'"

TAKING = [
    "CREATE DATABASE IF NOT EXISTS db§ ENGINE = Atomic",
    "CREATE DATABASE `my db`§ COMMENT 'ON CLUSTER {cluster}'",
    f"CREATE DATABASE db UUID {UUID}§",
    "CREATE TABLE IF NOT EXISTS db.t§ (a Int8, s String DEFAULT 'ON CLUSTER {cluster}') ENGINE = MergeTree ORDER BY a",
    "CREATE OR REPLACE TABLE `db`.`select`§ (a Int8) ENGINE = Memory",
    f'CREATE TABLE "db"."t" UUID {UUID}§ (a Int8) ENGINE = Memory',
    f"CREATE TABLE IF NOT EXISTS db.t UUID {UUID}§(a Int8) ENGINE = Memory",
    "CREATE TABLE db.t2§ AS db.t",
    "CREATE TABLE db.t2§ ENGINE = Memory AS SELECT 1 AS a",
    "CREATE TABLE db.t2§ EMPTY AS SELECT 1 AS a",
    "CREATE TABLE db.t§ -- don't: ON CLUSTER '{cluster}'\n(a Int8) ENGINE = Memory",
    "CREATE TABLE db.t§ /* ON CLUSTER c */ (a Int8) ENGINE = Memory;",
    "CREATE TABLE `on`§ (a Int8) ENGINE = Memory",
    "CREATE TABLE default.sync§ (a Int8) ENGINE = Memory",
    "REPLACE TABLE db.t§ (a Int8) ENGINE = Memory",
    "/* leading */ CREATE VIEW db.v§ AS SELECT 'ON CLUSTER' AS x",
    "CREATE OR REPLACE VIEW `db`.`v`§ AS SELECT a FROM db.t JOIN db.u ON cluster = u.cluster",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS db.mv§ TO db.t AS SELECT a FROM db.src",
    f"CREATE MATERIALIZED VIEW db.mv UUID {UUID}§ ENGINE = MergeTree ORDER BY a POPULATE AS SELECT 1 AS a",
    "CREATE MATERIALIZED VIEW db.mv§ REFRESH EVERY 1 HOUR TO db.t AS SELECT 1 AS a",
    "CREATE WINDOW VIEW db.wv§ TO db.t AS SELECT count() AS c FROM db.src GROUP BY tumble(ts, INTERVAL 1 SECOND)",
    "CREATE DICTIONARY IF NOT EXISTS db.d§ (k UInt64, v String) PRIMARY KEY k"
    " SOURCE(CLICKHOUSE(TABLE 't' DB 'db')) LAYOUT(FLAT()) LIFETIME(0)",
    "CREATE OR REPLACE FUNCTION f§ AS x -> x + 1",
    "CREATE NAMED COLLECTION n§ AS a = 1",
    "CREATE INDEX IF NOT EXISTS i ON db.t§ (a) TYPE minmax",
    "DROP TABLE IF EXISTS db.t§",
    "DROP TABLE a, `db`.`b`§",
    "DROP VIEW IF EXISTS a, db.b§",
    "DROP TABLE IF EMPTY db.t§",
    "DROP VIEW db.v§",
    "DROP DICTIONARY IF EXISTS db.d§",
    "DROP DATABASE IF EXISTS db§",
    "DROP FUNCTION f§",
    "DROP NAMED COLLECTION n§",
    "DROP INDEX i ON db.t§",
    "ALTER TABLE `db`.`t`§ ADD COLUMN IF NOT EXISTS x String DEFAULT 'ON CLUSTER', DROP COLUMN y",
    "ALTER TABLE db.t§ UPDATE s = '{cluster}' WHERE 1",
    "ALTER TABLE db.t§ MODIFY QUERY SELECT a FROM db.s JOIN db.u ON cluster = u.cluster",
    "ALTER DATABASE db§ MODIFY SETTING x = 1",
    "ALTER NAMED COLLECTION n§ SET a = 2",
    "RENAME TABLE db.a TO db.b, db.c TO `db`.`to`§",
    "RENAME TABLE a TO b§ -- trailing comment",
    "RENAME a TO b§",
    "RENAME DATABASE a TO b§",
    "RENAME DICTIONARY db.a TO db.b§",
    "EXCHANGE TABLES db.a AND db.b§",
    "EXCHANGE DICTIONARIES a AND b§",
    "TRUNCATE TABLE IF EXISTS db.t§",
    "TRUNCATE db.t§",
    "TRUNCATE DATABASE db§",
    "TRUNCATE ALL TABLES FROM db NOT LIKE 'x%'§",
    "OPTIMIZE TABLE db.t§ PARTITION 202401 FINAL",
    "OPTIMIZE TABLE `db`.`t`§ FINAL DEDUPLICATE BY a",
    "ATTACH TABLE db.t§",
    f"ATTACH TABLE db.t UUID {UUID}§ (a Int8) ENGINE = Memory",
    "ATTACH TABLE db.t FROM '/p'§ (a Int8) ENGINE = Memory",
    "ATTACH DATABASE db§",
    "DETACH TABLE db.t§ PERMANENTLY",
    "DETACH DICTIONARY d§",
    f"UNDROP TABLE db.t UUID {UUID}§",
    "DELETE FROM db.t§ WHERE s = 'ON CLUSTER'",
    "SYSTEM STOP MERGES§ db.t",
    "SYSTEM START MERGES§ `db`.`t`",
    "SYSTEM STOP MERGES§",
    "SYSTEM SYNC REPLICA§ db.t LIGHTWEIGHT",
    *[
        f"SYSTEM {' '.join(phrase)}§ db.t"
        for phrase in SYSTEM_COMMANDS
        if not {"LOGS", "DATABASE", "DICTIONARIES"} & set(phrase)
    ],
    "SYSTEM SYNC DATABASE REPLICA§ db",
    "SYSTEM FLUSH LOGS§",
    "SYSTEM RELOAD DICTIONARIES§",
]
NOT_TAKING = [
    "INSERT INTO db.t SELECT 1",
    "INSERT INTO db.t SELECT * FROM a JOIN b ON cluster IN (1)",
    "SELECT 'ON CLUSTER {cluster}'",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "SET allow_experimental_object_type = 1",
    "EXISTS TABLE db.t",
    "SHOW TABLES FROM db",
    "DESCRIBE TABLE db.t",
    "KILL QUERY WHERE 1",
    "CREATE TEMPORARY TABLE t (a Int8) ENGINE = Memory",
    "DROP TEMPORARY TABLE t",
    "CREATE USER u",
    "SYSTEM STOP VIEW db.v",
    "SYSTEM REFRESH VIEW db.v",
    "-- CREATE TABLE db.t (a Int8)\nSELECT 1",
]


def formatted(ch: Client, sql: str) -> str | None:
    """The engine's normal form of ``sql``, or None when its parser refuses it (a syntax error)."""
    try:
        value: str = ch.query("SELECT formatQuery({q:String})", parameters={"q": sql}).result_rows[0][0]
    except Exception as error:
        if "SYNTAX_ERROR" in str(error):
            return None
        raise
    return value


def at_mark(case: str, clause: str) -> str:
    return case.replace("§", clause)


def expect_same(ch: Client, rendered: str, reference: str) -> None:
    got, want = formatted(ch, rendered), formatted(ch, reference)
    assert want is not None, f"the reference does not parse: {reference!r}"
    assert got == want, f"rendered {rendered!r}\n  engine: {got!r}\n  wanted: {want!r}"


@pytest.mark.parametrize("case", TAKING)
def test_the_clause_goes_where_the_engine_wants_it(ch: Client, case: str) -> None:
    plain = at_mark(case, "")
    assert takes_on_cluster(plain)
    for cluster in ("prod", "my-cluster.1"):
        rendered = cluster_form(plain, cluster)
        expect_same(ch, rendered, at_mark(case, f" ON CLUSTER {literal(cluster)}"))
        assert cluster_form(rendered, cluster) == rendered, "a second run added a second clause"
        assert cluster_form(rendered, None) == rendered, "an explicit cluster name was taken away"
    # The texts around the clause are the author's, byte for byte.
    before, _, after = case.partition("§")
    rendered = cluster_form(plain, "prod")
    assert rendered.startswith(before + " ON CLUSTER prod")
    assert rendered.endswith(after)
    assert cluster_form(plain, None) == plain


@pytest.mark.parametrize("case", TAKING)
@pytest.mark.parametrize("macro", ["'{cluster}'", "`{cluster}`", '"{cluster}"', "{cluster}"])
def test_the_cluster_macro_is_filled_in_or_removed(ch: Client, case: str, macro: str) -> None:
    written = at_mark(case, f" ON CLUSTER {macro}")
    assert cluster_form(written, None) == at_mark(case, "")
    expect_same(ch, cluster_form(written, None), at_mark(case, ""))
    rendered = cluster_form(written, "my-cluster.1")
    assert rendered == at_mark(case, " ON CLUSTER `my-cluster.1`")
    expect_same(ch, rendered, at_mark(case, f" ON CLUSTER {literal('my-cluster.1')}"))


@pytest.mark.parametrize(
    ("written", "without"),
    [
        # A comment before the clause keeps its line end; the blanks after the clause go instead.
        (
            "CREATE TABLE db.t -- don't\n  on cluster '{cluster}'\n(a Int8) ENGINE = Memory",
            "CREATE TABLE db.t -- don't\n  (a Int8) ENGINE = Memory",
        ),
        (
            "CREATE TABLE db.t /* c */ON CLUSTER '{cluster}'(a Int8) ENGINE = Memory",
            "CREATE TABLE db.t /* c */(a Int8) ENGINE = Memory",
        ),
        (
            "ALTER TABLE db.t ON CLUSTER '{cluster}' UPDATE s = 'ON CLUSTER {cluster}' WHERE 1",
            "ALTER TABLE db.t UPDATE s = 'ON CLUSTER {cluster}' WHERE 1",
        ),
        ("SYSTEM RESTORE REPLICA db.t ON CLUSTER '{cluster}'", "SYSTEM RESTORE REPLICA db.t"),
        ("DROP TABLE db.t ON CLUSTER `{cluster}`;", "DROP TABLE db.t;"),
    ],
)
def test_removing_the_macro_leaves_valid_sql(ch: Client, written: str, without: str) -> None:
    assert cluster_form(written, None) == without
    assert formatted(ch, without) is not None


def test_filling_in_the_macro_changes_only_the_name() -> None:
    written = "create table db.t on  cluster\t'{cluster}' (a Int8) engine = Memory"
    assert cluster_form(written, "prod") == "create table db.t on  cluster\tprod (a Int8) engine = Memory"


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE db.t ON CLUSTER other (a Int8) ENGINE = Memory",
        "CREATE TABLE db.t on cluster 'other' (a Int8) ENGINE = Memory",
        "SYSTEM RESTORE REPLICA db.t ON CLUSTER other",
        "SYSTEM RELOAD DICTIONARY db.d ON CLUSTER `{other}`",
        "DROP TABLE db.t ON CLUSTER `cluster`",
    ],
)
def test_an_explicit_cluster_is_left_as_written(ch: Client, sql: str) -> None:
    assert takes_on_cluster(sql)
    assert cluster_form(sql, "prod") == sql
    assert cluster_form(sql, None) == sql
    assert formatted(ch, sql) is not None


@pytest.mark.parametrize("sql", NOT_TAKING)
def test_statements_without_the_clause_are_returned_byte_identical(ch: Client, sql: str) -> None:
    assert not takes_on_cluster(sql)
    assert cluster_form(sql, "prod") == sql
    assert cluster_form(sql, None) == sql
    assert formatted(ch, sql) is not None, "a test case the engine cannot parse proves nothing"


def test_statements_left_out_are_ones_the_engine_refuses_on_cluster(ch: Client) -> None:
    """SYSTEM ... VIEW reads ON as the view's name; temporary objects cannot be created ON CLUSTER."""
    assert formatted(ch, "SYSTEM STOP VIEW ON CLUSTER c db.v") is None
    assert formatted(ch, "SYSTEM REFRESH VIEW ON CLUSTER c db.v") is None
    with pytest.raises(Exception, match="cannot be created ON CLUSTER"):
        ch.command("CREATE TEMPORARY TABLE t ON CLUSTER c (a Int8) ENGINE = Memory")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cluster=st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1),
    case=st.sampled_from(TAKING),
)
def test_any_cluster_name_is_quoted_so_the_engine_reads_it_back(ch: Client, cluster: str, case: str) -> None:
    rendered = cluster_form(at_mark(case, ""), cluster)
    expect_same(ch, rendered, at_mark(case, f" ON CLUSTER {literal(cluster)}"))
    assert cluster_form(rendered, cluster) == rendered


def test_on_cluster_runs_into_the_missing_cluster_not_a_syntax_error(ch: Client) -> None:
    """The embedded engine has no cluster: the statement parses and is refused for want of one."""
    database = unique("k2_cluster")
    ch.command(f"CREATE DATABASE {database}")
    try:
        sql = cluster_form(f"CREATE TABLE {database}.t (a Int8) ENGINE = MergeTree ORDER BY a", "k2_absent")
        with pytest.raises(Exception, match=r"Code: (701|392)\.") as raised:
            ch.command(sql)
        assert "SYNTAX_ERROR" not in str(raised.value)
        tables = ch.query(
            "SELECT count() FROM system.tables WHERE database = {d:String}", parameters={"d": database}
        )
        assert tables.result_rows[0][0] == 0
    finally:
        ch.command(f"DROP DATABASE IF EXISTS {database}")


# -- the corpus ---------------------------------------------------------------------------------


def _corpus() -> list[dict[str, Any]]:
    if not CORPUS.exists():
        pytest.skip(f"the public SQL corpus is not here ({CORPUS}); it is test data kept outside the project")
    return [json.loads(line) for line in CORPUS.read_text().splitlines()]


def test_corpus_statements_against_the_engine(ch: Client) -> None:
    """Every corpus statement the engine parses, in three spellings.

    1. As its authors wrote it (``ON CLUSTER cluster`` on 339 of them): explicit, so kept byte for byte.
    2. As it runs on the embedded engine (``exec_sql``, the clause dropped): the clause we add parses,
       appears once, and the engine's text is otherwise the same.
    3. The engine's own text with its clause taken out: we put it back where the engine had it, and the
       macro written there instead is filled in or removed to the same normal forms.
    """
    name = "k2-test.cluster"
    clause = " ON CLUSTER `k2-test.cluster`"
    assert formatted(ch, f"DROP TABLE t ON CLUSTER {literal(name)}") == f"DROP TABLE t{clause}"
    parsed = took = placed = 0
    mismatches: list[str] = []
    for row in _corpus():
        sql, exec_sql, label = row["sql"], row["exec_sql"], row["id"] + "/" + row["variant"]

        def expect(ok: bool, what: str, label: str = label) -> None:
            if not ok:
                mismatches.append(f"{label}: {what}")

        original = formatted(ch, sql)
        plain = formatted(ch, exec_sql)
        if original is None or plain is None:
            continue
        parsed += 1
        if " ON CLUSTER " in original:
            expect(cluster_form(sql, name) == sql, "a statement with a cluster named was changed")
        rendered = cluster_form(exec_sql, name)
        if takes_on_cluster(exec_sql):
            took += 1
            engine = formatted(ch, rendered)
            expect(engine is not None, f"the engine cannot parse {rendered[:160]!r}")
            expect(engine is not None and engine.count(clause) == 1, "the clause is not there once")
            expect(engine is not None and engine.replace(clause, "") == plain, "the rest of the text changed")
            expect(cluster_form(rendered, name) == rendered, "a second run changed it again")
        else:
            expect(rendered == exec_sql, "a statement that takes no clause was changed")
        if original.count(" ON CLUSTER cluster") == 1:
            placed += 1
            without = original.replace(" ON CLUSTER cluster", "")
            expect(takes_on_cluster(without), "the engine's statement with a clause is said to take none")
            expect(
                formatted(ch, cluster_form(without, "cluster")) == original, "not where the engine puts it"
            )
            macro = original.replace(" ON CLUSTER cluster", " ON CLUSTER '{cluster}'")
            expect(formatted(ch, cluster_form(macro, None)) == formatted(ch, without), "macro not removed")
            expect(formatted(ch, cluster_form(macro, "cluster")) == original, "macro not filled in")
    print(f"corpus: {parsed} parsed, {took} took the clause, {placed} placed against the engine's own text")
    assert parsed > 600 and took > 500 and placed > 300, "the corpus run checked too little to mean anything"
    assert mismatches == [], "\n".join(mismatches[:30])


# -- what a statement changes, and whether it re-runs safely -------------------------------------------

SUBJECTS = [
    ("CREATE DATABASE IF NOT EXISTS {a}", True, ["{a}"]),
    ("RENAME DATABASE {a} TO {b}", True, ["{a}", "{b}"]),
    ("CREATE TABLE IF NOT EXISTS {a}.t (x Int8) ENGINE = MergeTree ORDER BY x", False, ["{a}"]),
    ("CREATE MATERIALIZED VIEW {a}.mv TO {a}.t AS SELECT x FROM {b}.src", False, ["{a}"]),
    ("RENAME TABLE {a}.t TO {b}.t, {a}.mv TO {b}.mv", False, ["{a}", "{b}", "{a}", "{b}"]),
    ("EXCHANGE TABLES {a}.t AND {b}.t", False, ["{a}", "{b}"]),
    ("SYSTEM STOP MERGES {a}.t", False, ["{a}"]),
    ("ALTER TABLE `{a}`.t ADD COLUMN y Int8", False, ["{a}"]),
    ("DROP TABLE IF EXISTS {a}.t, {b}.u", False, ["{a}", "{b}"]),
    ("INSERT INTO {a}.t SELECT 1", False, []),
]


@pytest.mark.parametrize(("sql", "database_level", "databases"), SUBJECTS)
def test_the_subjects_of_a_statement_are_the_objects_it_changes(
    sql: str, database_level: bool, databases: list[str]
) -> None:
    from k2_migrations.sqltext.cluster import statement_subjects

    names = {"a": "alpha", "b": "beta"}
    assert statement_subjects(sql.format(**names)) == (database_level, [d.format(**names) for d in databases])


RERUNS = [
    ("CREATE DATABASE IF NOT EXISTS {db}_x", True),
    ("CREATE TABLE IF NOT EXISTS {db}.t2 (x Int8) ENGINE = MergeTree ORDER BY x", True),
    ("CREATE VIEW IF NOT EXISTS {db}.v AS SELECT x FROM {db}.t", True),
    ("DROP TABLE IF EXISTS {db}.t", True),
    ("SYSTEM STOP MERGES {db}.t", True),
    ("CREATE TABLE {db}.t3 (x Int8) ENGINE = MergeTree ORDER BY x", False),
    ("RENAME TABLE {db}.t TO {db}.t4", False),
    ("ALTER TABLE {db}.t ADD COLUMN y Int8", False),
    ("DROP TABLE {db}.t", False),
]


@pytest.mark.parametrize(("sql", "safe"), RERUNS)
def test_a_statement_said_to_rerun_safely_runs_twice_on_the_engine_and_the_others_fail(
    ch: Client, sql: str, safe: bool
) -> None:
    """The engine decides: run twice, the second run of a safe statement succeeds; of the rest, fails."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    from k2_migrations.sqltext.cluster import reruns_safely

    db = unique("rerun")
    ch.command(f"CREATE DATABASE {db}")
    try:
        ch.command(f"CREATE TABLE {db}.t (x Int8) ENGINE = MergeTree ORDER BY x")
        statement = sql.format(db=db)
        assert reruns_safely(statement) is safe
        ch.command(statement)
        if safe:
            ch.command(statement)
        else:
            with pytest.raises(DatabaseError):
                ch.command(statement)
    finally:
        if "STOP MERGES" in sql:
            ch.command(f"SYSTEM START MERGES {db}.t")
        ch.command(f"DROP DATABASE IF EXISTS {db}_x")
        ch.command(f"DROP DATABASE IF EXISTS {db}")
