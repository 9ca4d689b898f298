"""The declared schema (docs/declared-schema.md): .sql files and a MetaData, normalised by a scratch
engine and compared with the target by ``k2-migrate check --schema``."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from k2_migrations.declared.scratch import normalise
from k2_migrations.declared.shapes import read_databases
from k2_migrations.declared.source import DeclaredSchemaError, declare, load_sources
from k2_migrations.introspection.catalog import Catalog
from k2_migrations.introspection.shape import diff_schema, read_schema, shape_from_json, shape_to_json
from k2_migrations.sqltext import rewrite_databases
from tests.conftest import ROOT, Project, unique
from tests.support.analytics import schema as analytics_schema

if TYPE_CHECKING:
    from collections.abc import Iterator

    from clickhouse_connect.driver.client import Client

CORPUS = ROOT.parent / "shared" / "corpus" / "clickhouse-ddl.jsonl"


def declare_files(folder: Path, statements: list[str], files: int = 3, seed: int = 7) -> None:
    """``statements`` shuffled and dealt into ``files`` .sql files of ``folder``."""
    shuffled = list(statements)
    random.Random(seed).shuffle(shuffled)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        body = ";\n\n".join(shuffled[index::files])
        (folder / f"part_{index}.sql").write_text(f"-- part {index}, in no order\n{body};\n")


@pytest.fixture
def analytics(project: Project, ch: Client) -> Iterator[str]:
    """The analytics schema declared in shuffled files of schema/, and built on the target."""
    db = unique("decl")
    statements = analytics_schema(db)
    for statement in statements:
        ch.command(statement)
    declare_files(project.root / "schema", statements[1:])  # its database implied, not declared
    yield db
    ch.command(f"DROP DATABASE IF EXISTS {db}")


def test_the_declared_schema_built_on_the_target_has_no_difference(project: Project, analytics: str) -> None:
    result = project.run("check", "--schema")
    assert (result.exit_code, result.stdout.strip()) == (
        0,
        f"no difference: {analytics} as declared in schema",
    )
    document = json.loads(project.run("check", "--schema", "--json").stdout)
    assert document == {"ok": True, "schema": ["schema"], "databases": [analytics], "differences": []}


def test_each_drift_from_the_declared_schema_is_named_and_exits_8(
    project: Project, analytics: str, ch: Client
) -> None:
    db = analytics
    ch.command(f"ALTER TABLE {db}.events ADD COLUMN referrer String")
    ch.command(f"DROP VIEW {db}.recent")
    ch.command(f"CREATE VIEW {db}.recent AS SELECT id, ts FROM {db}.events")
    ch.command(f"DROP VIEW {db}.daily_mv")
    ch.command(f"CREATE TABLE {db}.stray (x UInt8) ENGINE = Log")
    result = project.run("check", "--schema")
    assert result.exit_code == 8, result.output
    lines = result.stdout.splitlines()
    assert f"difference: {db}.daily_mv object: expected present, found missing" in lines
    assert f"difference: {db}.stray object: expected absent, found present" in lines
    assert any(line.startswith(f"difference: {db}.events columns:") and "referrer" in line for line in lines)
    assert any(line.startswith(f"difference: {db}.recent view query:") for line in lines)
    assert result.stderr.startswith(f"k2-migrate: error: {len(lines)} difference(s) from the declared schema")
    document = json.loads(project.run("check", "--schema", "--json").stdout)
    assert document["ok"] is False
    assert len(document["differences"]) == len([line for line in lines if line.startswith("difference: ")])


class Listener:
    """A TCP socket on 127.0.0.1 counting every connection made to it: a broker nobody may contact."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def test_kafka_tables_and_dictionaries_load_without_contacting_anything() -> None:
    listener = Listener()
    db = "harmless"
    statements = [
        f"""CREATE MATERIALIZED VIEW {db}.errors_mv TO {db}.errors AS
            SELECT _topic AS topic, _error AS error FROM {db}.queue WHERE length(_error) > 0""",
        f"CREATE TABLE {db}.errors (topic String, error String) ENGINE = MergeTree ORDER BY topic",
        f"""CREATE TABLE {db}.queue (a UInt64, b String)
            ENGINE = Kafka('127.0.0.1:{listener.port}', 'topic', 'group', 'JSONEachRow')
            SETTINGS kafka_handle_error_mode = 'stream'""",
        f"CREATE MATERIALIZED VIEW {db}.rows_mv TO {db}.rows AS SELECT a, b FROM {db}.queue",
        # A second consumer of the topic whose engine is copied from the first: no ENGINE in its text.
        f"CREATE TABLE {db}.queue_copy AS {db}.queue",
        f"CREATE MATERIALIZED VIEW {db}.copy_mv TO {db}.rows AS SELECT a, b FROM {db}.queue_copy",
        f"CREATE TABLE {db}.rows (a UInt64, b String) ENGINE = MergeTree ORDER BY a",
        f"""CREATE DICTIONARY {db}.names (a UInt64, b String) PRIMARY KEY a
            SOURCE(CLICKHOUSE(DB '{db}' TABLE 'rows')) LIFETIME(0) LAYOUT(HASHED())""",
        f"CREATE VIEW {db}.named AS SELECT a, dictGet('{db}.names', 'b', a) AS b FROM {db}.rows",
    ]
    result = normalise([declare(sql, f"t.sql:{n}") for n, sql in enumerate(statements, 1)])
    time.sleep(1.0)  # a consumer started by the views would have connected by now (it does within 1 s)
    assert listener.connections == 0
    listener.socket.close()
    assert result.swapped == [f"{db}.queue", f"{db}.queue_copy"]
    assert result.dictionaries == {f"{db}.names": "NOT_LOADED"}
    shapes = result.schema[db]
    assert shapes is not None
    queue = shapes["queue"]
    assert queue.engine == "Kafka"
    assert queue.settings["kafka_broker_list"] == f"127.0.0.1:{listener.port}"
    assert queue.settings["kafka_handle_error_mode"] == "stream"
    assert shapes["rows_mv"].view_sources == ("home_database.queue",)
    assert shapes["queue_copy"].engine == "Kafka"  # copied from the Kafka table, not from its Null stand-in
    assert shapes["queue_copy"].settings == queue.settings
    assert set(result.ddl) == {f"{db}.{name}" for name in shapes}
    assert result.ddl[f"{db}.queue"].startswith(
        f"CREATE TABLE {db}.queue (`a` UInt64, `b` String) ENGINE = Kafka("
    )
    assert result.seconds < 20, result.seconds


def test_populate_a_statement_the_engine_refuses_and_an_alter_are_refused_with_file_and_line(
    project: Project,
) -> None:
    folder = project.root / "schema"
    folder.mkdir()
    (folder / "a.sql").write_text(
        "CREATE TABLE refused_db.t (x UInt8) ENGINE = MergeTree ORDER BY x;\n\n"
        "CREATE MATERIALIZED VIEW refused_db.v\n  ENGINE = MergeTree ORDER BY x POPULATE AS SELECT x FROM refused_db.t;\n"
    )
    result = project.run("check", "--schema")
    assert result.exit_code == 2
    assert f"refused: {folder / 'a.sql'}:3: POPULATE is refused" in result.stderr
    (folder / "a.sql").write_text(
        "-- a type no engine knows\nCREATE TABLE refused_db.t (x NoSuchType) ENGINE = Log;\nALTER TABLE refused_db.t ADD COLUMN y UInt8;\n"
    )
    result = project.run("check", "--schema")
    assert result.exit_code == 2
    assert (
        f"refused: {folder / 'a.sql'}:3: a declared schema holds CREATE statements only, found ALTER"
        in result.stderr
    )
    (folder / "a.sql").write_text("CREATE FUNCTION plus_one AS (x) -> x + 1;\n")
    result = project.run("check", "--schema")
    assert result.exit_code == 2
    assert f"refused: {folder / 'a.sql'}:1: CREATE FUNCTION is not part of a declared schema" in result.stderr
    (folder / "a.sql").write_text(
        "-- a type no engine knows\nCREATE TABLE refused_db.t (x NoSuchType) ENGINE = Log;\n"
    )
    result = project.run("check", "--schema", "--json")
    assert result.exit_code == 2
    refused = json.loads(result.stdout)["refused"]
    assert len(refused) == 1 and refused[0].startswith(
        f"{folder / 'a.sql'}:2: Unknown data type family: NoSuchType"
    )


def test_a_missing_schema_folder_is_a_one_line_error(project: Project) -> None:
    result = project.run("check", "--schema")
    assert result.exit_code == 2
    assert result.stderr.startswith("k2-migrate: error: no declared schema at ")
    assert len(result.stderr.splitlines()) == 1


def test_a_metadata_of_clickhouse_sqlalchemy_tables_is_declared(project: Project, ch: Client) -> None:
    db = unique("meta")
    (project.root / "models.py").write_text(
        "from clickhouse_sqlalchemy import engines, types\n"
        "from sqlalchemy import Column, MetaData, Table\n\n"
        "metadata = MetaData()\n"
        f"quotes = Table('quotes', metadata, Column('symbol', types.LowCardinality(types.String), primary_key=True),\n"
        "    Column('price', types.Decimal(18, 8)), Column('ts', types.DateTime64(3)),\n"
        f"    engines.MergeTree(order_by=('symbol', 'ts')), schema='{db}')\n"
    )
    ch.command(f"CREATE DATABASE {db}")
    ch.command(
        f"CREATE TABLE {db}.quotes (symbol LowCardinality(String), price Decimal(18, 8), ts DateTime64(3))"
        " ENGINE = MergeTree ORDER BY (symbol, ts)"
    )
    try:
        result = project.run("check", "--schema", env={"K2_MIGRATE_SCHEMA": "models:metadata"})
        assert (result.exit_code, result.stdout.strip()) == (
            0,
            f"no difference: {db} as declared in models:metadata",
        )
        ch.command(f"ALTER TABLE {db}.quotes MODIFY COLUMN price Decimal(38, 8)")
        result = project.run("check", "--schema", env={"K2_MIGRATE_SCHEMA": "models:metadata"})
        assert result.exit_code == 8
        assert f"difference: {db}.quotes columns:" in result.stdout
    finally:
        ch.command(f"DROP DATABASE IF EXISTS {db}")


def test_the_k2_schema_declared_matches_a_target_upgraded_to_head(tmp_path: Path, target_url: str) -> None:
    """schema/k2 of this repository is the K2 state after k2_004: no difference from upgrade head."""
    target = unique("k2decl")
    ini = (ROOT / "alembic.ini").read_text().replace("%(here)s/versions", str(ROOT / "versions"))
    (tmp_path / "alembic.ini").write_text(ini)
    for path in (ROOT / "schema" / "k2").glob("*.sql"):
        text = rewrite_databases(path.read_text(), {"k2": target}).replace("redpanda:9092", "127.0.0.1:9")
        (tmp_path / "schema" / "k2").mkdir(parents=True, exist_ok=True)
        (tmp_path / "schema" / "k2" / path.name).write_text(text)
    k2 = Project(
        tmp_path,
        {
            "K2_MIGRATE_URL": target_url,
            "K2_MIGRATE_DATABASE": unique("k2m"),
            "K2_SOURCE_DATABASE": unique("k2src"),
            "K2_TARGET_DATABASE": target,
            "K2_KAFKA_BROKERS": "127.0.0.1:9",
            "K2_MIGRATE_PASSWORD": "",
            "K2_MIGRATE_PASSWORD_FILE": "",
        },
    )
    assert k2.run("-q", "upgrade", "head").exit_code == 0
    result = k2.run("check", "--schema")
    assert (result.exit_code, result.stdout.strip()) == (
        0,
        f"no difference: {target} as declared in schema",
    ), result.output


def corpus_groups() -> dict[str, list[str]]:
    """The corpus' original statements in run order, per source repository (its groups share a database)."""
    if not CORPUS.is_file():
        pytest.skip(f"the SQL corpus is not here ({CORPUS}): it is read at test time, never copied")
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines()]
    first: dict[str, int] = {}
    for position, row in enumerate(rows):
        first.setdefault(row["group"], position)
    groups: dict[str, list[str]] = {}
    for row in sorted(rows, key=lambda r: (first[r["group"]], r["seq"])):
        if row["variant"] == "original":
            key = row["group"] if "~" in row["group"] else row["repo"]
            groups.setdefault(key, []).append(row["exec_sql"])
    return groups


def declare_end_state(ch: Client, statements: list[str], folder: Path) -> list[str]:
    """Run a corpus group's migration sequence on the target, in databases of its own, and declare the
    state it ends in: every object's CREATE as the engine shows it, shuffled into .sql files.

    The databases made; what the engine refuses (a Distributed table without a cluster, and what reads
    it) is left out, as the group's sequence would on this engine.
    """
    home, aux = unique("corpus"), unique("corpus_aux")
    mapping = {"srcdb_q7": home, "02015_db": home, "auxdb_q7": aux}
    for database in (home, aux):
        ch.command(f"CREATE DATABASE {database}")
    ch.database = home
    try:
        for sql in statements:
            with contextlib.suppress(DatabaseError):
                ch.command(rewrite_databases(sql, mapping))
    finally:
        ch.database = "default"
    created = [
        str(row[0])
        for row in ch.query(
            "SELECT create_table_query FROM system.tables WHERE database IN {d:Array(String)}"
            " AND NOT startsWith(name, '.inner')",
            parameters={"d": [home, aux]},
        ).result_rows
    ]
    declare_files(folder, created)
    return [home, aux]


def group_differences(ch: Client, statements: list[str], folder: Path) -> tuple[int, list[str]]:
    """How many objects a group's end state has, and each refusal or difference when declared."""
    databases = declare_end_state(ch, statements, folder)
    try:
        declared = load_sources([str(folder)], folder)
        try:
            normalised = normalise(declared)
        except DeclaredSchemaError as exc:
            return len(declared), exc.refusals
        live = read_databases(Catalog(ch), set(normalised.schema))
        return len(declared), [d.describe() for d in diff_schema(normalised.schema, live)]
    finally:
        for database in databases:
            ch.command(f"DROP DATABASE IF EXISTS {database}")


def test_a_corpus_group_s_end_state_declared_in_any_order_reads_back_the_same(
    ch: Client, tmp_path: Path
) -> None:
    """langfuse's migrations run to their end; their 12 objects declared, shuffled: no difference."""
    objects, problems = group_differences(ch, corpus_groups()["langfuse/langfuse"], tmp_path / "s")
    assert (objects, problems) == (12, [])


@pytest.mark.slow
def test_every_corpus_group_s_end_state_reads_back_the_same(ch: Client, tmp_path: Path) -> None:
    groups = corpus_groups()
    tally: Counter[str] = Counter()
    clean = 0
    for index, (name, statements) in enumerate(groups.items()):
        objects, problems = group_differences(ch, statements, tmp_path / str(index))
        clean += not problems
        tally.update(problem.split(": ", 1)[-1][:60] for problem in problems)
        print(f"{name}: {objects} objects, {len(problems)} refused or different")
    print(f"{clean} of {len(groups)} groups read back with no difference; {dict(tally)}")
    assert clean == len(groups)


@pytest.mark.parametrize(
    ("given", "winner"),
    [(("flag", "env", "ini"), "flag"), (("env", "ini"), "env"), (("ini",), "ini"), ((), "schema")],
)
def test_the_schema_setting_comes_from_flag_then_environment_then_ini(
    project: Project, given: tuple[str, ...], winner: str
) -> None:
    """Which folder the missing-folder error names says which layer won (default: schema/)."""
    if "ini" in given:
        ini = project.root / "alembic.ini"
        ini.write_text(ini.read_text().replace("[k2_migrate]\n", "[k2_migrate]\nschema = from_ini\n"))
    args = ["--schema-dir", "from_flag"] if "flag" in given else []
    env = {"K2_MIGRATE_SCHEMA": "from_env"} if "env" in given else {"K2_MIGRATE_SCHEMA": ""}
    result = project.run(*args, "check", "--schema", env=env)
    assert result.exit_code == 2
    folder = project.root / ("schema" if winner == "schema" else f"from_{winner}")
    assert result.stderr.startswith(f"k2-migrate: error: no declared schema at {folder}:"), result.stderr


def test_an_object_declared_twice_is_refused_naming_both_places(project: Project) -> None:
    folder = project.root / "schema"
    folder.mkdir()
    (folder / "a.sql").write_text("CREATE TABLE twice_db.t (x UInt8) ENGINE = Log;\n")
    (folder / "b.sql").write_text("\n\nCREATE TABLE IF NOT EXISTS twice_db.t (x UInt16) ENGINE = Log;\n")
    result = project.run("check", "--schema")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"refused: {folder / 'b.sql'}:3: twice_db.t is declared already, at {folder / 'a.sql'}:1"
    )


def test_a_declared_database_the_target_lacks_is_one_difference(project: Project) -> None:
    db = unique("absent")
    (project.root / "schema").mkdir()
    (project.root / "schema" / "t.sql").write_text(f"CREATE TABLE {db}.t (x UInt8) ENGINE = Log;\n")
    result = project.run("check", "--schema")
    assert result.exit_code == 8
    assert result.stdout.splitlines() == [f"difference: {db} database: expected present, found absent"]


def test_a_schema_entry_naming_no_metadata_is_a_one_line_error(project: Project) -> None:
    # A module name of its own: the suite runs the CLI in one process, where a module is imported once.
    (project.root / "not_models.py").write_text("metadata = {'not': 'a MetaData'}\n")
    result = project.run("check", "--schema", env={"K2_MIGRATE_SCHEMA": "not_models:metadata"})
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "k2-migrate: error: not_models:metadata is not a SQLAlchemy MetaData (dict); "
        "name the MetaData holding the tables, package.module:attribute"
    ]


def test_each_detail_altered_in_place_is_a_difference_naming_it(project: Project, ch: Client) -> None:
    """Settings, comments, codecs, indices and projections: declared one way, built another, each named (exit 8)."""
    db = unique("detail")
    ch.command(f"CREATE DATABASE {db}")
    ch.command(
        f"CREATE TABLE {db}.t (id UInt64, name String, INDEX ix id TYPE minmax GRANULARITY 1) "
        "ENGINE = MergeTree ORDER BY id SETTINGS merge_with_ttl_timeout = 3600"
    )
    declared = (
        f"CREATE TABLE {db}.t (id UInt64 COMMENT 'key', name String CODEC(ZSTD(3)), "
        "INDEX ix id TYPE set(10) GRANULARITY 1, PROJECTION p (SELECT name, count() GROUP BY name)) "
        "ENGINE = MergeTree ORDER BY id SETTINGS ttl_only_drop_parts = 1 COMMENT 'orders'"
    )
    (project.root / "schema").mkdir()
    (project.root / "schema" / "t.sql").write_text(declared + ";\n")
    try:
        result = project.run("check", "--schema")
        assert result.exit_code == 8, result.output
        aspects = sorted(
            line.removeprefix(f"difference: {db}.t ").split(":")[0]
            for line in result.stdout.splitlines()
            if line.startswith("difference: ")
        )
        assert aspects == [
            "COMMENT",
            "SETTINGS merge_with_ttl_timeout",
            "SETTINGS ttl_only_drop_parts",
            "column codecs",
            "column comments",
            "indices",
            "projections",
        ], result.stdout
        assert f"difference: {db}.t column codecs: expected (name CODEC(ZSTD(3))), found ()" in result.stdout
        assert (
            f"difference: {db}.t indices: expected (ix id set(10) 1), found (ix id minmax 1)" in result.stdout
        )
    finally:
        ch.command(f"DROP DATABASE IF EXISTS {db}")


def test_a_shape_recorded_before_the_details_were_read_compares_without_them(ch: Client) -> None:
    db = unique("detail")
    ch.command(f"CREATE DATABASE {db}")
    ch.command(f"CREATE TABLE {db}.t (id UInt64 COMMENT 'key') ENGINE = MergeTree ORDER BY id COMMENT 'x'")
    try:
        (live,) = read_schema(Catalog(ch), {db})[db].values()  # type: ignore[union-attr]
        recorded = shape_to_json(live)
        old = {k: v for k, v in recorded.items() if k in OLD_SHAPE_KEYS}
        assert diff_schema({db: {"t": shape_from_json(old)}}, {db: {"t": live}}) == []
        changed = shape_from_json({**recorded, "comment": "y"})
        assert [d.describe() for d in diff_schema({db: {"t": changed}}, {db: {"t": live}})] == [
            f"{db}.t COMMENT: expected 'y', found 'x'"
        ]
    finally:
        ch.command(f"DROP DATABASE IF EXISTS {db}")


#: What a shape recorded by ``check``'s schema record held before the details were read.
OLD_SHAPE_KEYS = {
    "engine",
    "columns",
    "defaults",
    "sorting_key",
    "partition_key",
    "primary_key",
    "settings",
    "view_target",
    "view_sources",
    "view_query",
    "partial",
}
