"""``k2-migrate revision --autogenerate`` (docs/declared-schema.md): before/after schema pairs, each
revision planned, proven on a scratch engine, written, applied to the target and compared with the
declared schema, then downgraded back to where it started."""

from __future__ import annotations

import random
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k2_migrations.declared.plan import Side, body, dependency_order, plan_revision, split_ttl
from k2_migrations.declared.plan_parts import order_by_extension
from k2_migrations.declared.shapes import read_databases
from k2_migrations.introspection.catalog import Catalog
from k2_migrations.introspection.shape import Shape, diff_schema
from tests.conftest import ROOT, Project, scalar, unique

if TYPE_CHECKING:
    from collections.abc import Iterator

    from clickhouse_connect.driver.client import Client

MT = "ENGINE = MergeTree ORDER BY id"
BASE = [f"CREATE TABLE {{db}}.t (id UInt64, name String, n UInt32 DEFAULT 1) {MT}"]

#: (id, before, after, flags, what the revision holds): statements with ``{db}``; the target holds
#: ``before`` (3 random rows in each table), schema/ declares ``after``.
AGG = f"CREATE TABLE {{db}}.agg (id UInt64, c UInt64) {MT}"
MV = "CREATE MATERIALIZED VIEW {db}.mv TO {db}.agg AS SELECT id, {agg} AS c FROM {db}.t GROUP BY id"
OLD = "CREATE TABLE {db}.old (x UInt8) ENGINE = MergeTree ORDER BY x"
#: A view's COMMENT follows its query, which then needs parentheses (ClickHouse 26.1's parser).
MV_AS = (
    "CREATE MATERIALIZED VIEW {{db}}.mv TO {{db}}.agg AS (SELECT id, {agg} AS c FROM {{db}}.t GROUP BY id)"
)
VIEW = "CREATE VIEW {{db}}.v AS (SELECT {q} FROM {{db}}.t) COMMENT {c}"


COLUMNS = "id UInt64, name String, n UInt32 DEFAULT 1"
PROJECTION = "PROJECTION p (SELECT name, count() GROUP BY name)"


def table(columns: str = COLUMNS, engine: str = MT) -> list[str]:
    return [f"CREATE TABLE {{db}}.t ({columns}) {engine}"]


PAIRS: list[tuple[str, list[str], list[str], tuple[str, ...], str]] = [
    ("create table", [], BASE, (), "op.create_object("),
    (
        "create table and views in dependency order",
        [],
        [
            *BASE,
            AGG,
            MV.format(db="{db}", agg="count()"),
            "CREATE VIEW {db}.z AS SELECT id FROM {db}.t",
            "CREATE VIEW {db}.b AS SELECT id FROM {db}.z",
        ],
        (),
        "op.create_object",
    ),
    (
        "new view on a table",
        BASE,
        [*BASE, "CREATE VIEW {db}.v AS SELECT id FROM {db}.t"],
        (),
        "op.create_object",
    ),
    (
        "add column after another",
        BASE,
        table("id UInt64, name String, extra Int8 DEFAULT 7, n UInt32 DEFAULT 1"),
        (),
        "op.add_column_if_missing(",
    ),
    (
        "add column at the end",
        BASE,
        table("id UInt64, name String, n UInt32 DEFAULT 1, z Date"),
        (),
        "after='n'",
    ),
    (
        "add a first column",
        BASE,
        table("k Int8 DEFAULT 3, id UInt64, name String, n UInt32 DEFAULT 1"),
        (),
        "'t', 'k', 'Int8', default='3', first=True)",
    ),
    (
        "drop the first column: the downgrade adds it back first",
        table("k Int8, id UInt64, name String, n UInt32 DEFAULT 1"),
        BASE,
        ("--allow-drops",),
        "'t', 'k', 'Int8', first=True)",
    ),
    (
        "drop column allowed",
        BASE,
        table("id UInt64, n UInt32 DEFAULT 1"),
        ("--allow-drops",),
        "op.drop_column_if_exists(",
    ),
    (
        "drop a column with a comment and a codec: the downgrade adds both back",
        table("id UInt64, name String COMMENT 'who' CODEC(ZSTD(3)), n UInt32 DEFAULT 1"),
        table("id UInt64, n UInt32 DEFAULT 1"),
        ("--allow-drops",),
        "'name', 'String', after='id', comment='who', codec='ZSTD(3)')",
    ),
    ("drop column withheld", BASE, table("id UInt64, n UInt32 DEFAULT 1"), (), "# op.drop_column_if_exists("),
    ("widen a column type", BASE, table("id UInt64, name String, n UInt64 DEFAULT 1"), (), "type='UInt64'"),
    ("change a default", BASE, table("id UInt64, name String, n UInt32 DEFAULT 2"), (), "default='2'"),
    ("add a default", BASE, table("id UInt64, name String DEFAULT 'x', n UInt32 DEFAULT 1"), (), "default="),
    ("remove a default", BASE, table("id UInt64, name String, n UInt32"), (), "default=None"),
    (
        "view query",
        [*BASE, "CREATE VIEW {db}.v AS SELECT id FROM {db}.t"],
        [*BASE, "CREATE VIEW {db}.v AS SELECT id, name FROM {db}.t"],
        (),
        "op.replace_view(",
    ),
    (
        "materialized view query",
        [*BASE, AGG, MV.format(db="{db}", agg="count()")],
        [*BASE, AGG, MV.format(db="{db}", agg="sum(n)")],
        (),
        "op.replace_view(",
    ),
    (
        "view becomes materialized: dropped and re-created",
        [*BASE, AGG, "CREATE VIEW {db}.mv AS SELECT id, count() AS c FROM {db}.t GROUP BY id"],
        [*BASE, AGG, MV.format(db="{db}", agg="count()")],
        (),
        "op.drop_object",
    ),
    (
        "materialized view moves to a new target",
        [*BASE, AGG, MV.format(db="{db}", agg="count()")],
        [
            *BASE,
            AGG,
            AGG.replace(".agg", ".agg2"),
            MV.format(db="{db}", agg="count()").replace(".agg", ".agg2"),
        ],
        (),
        "op.drop_object",
    ),
    (
        "ORDER BY change rebuilds",
        BASE,
        table(engine="ENGINE = MergeTree ORDER BY (name, id)"),
        (),
        "op.rebuild_table(",
    ),
    ("PARTITION BY change rebuilds", BASE, table(engine=f"{MT} PARTITION BY n % 2"), (), "op.rebuild_table("),
    (
        "engine change rebuilds",
        BASE,
        table(engine="ENGINE = ReplacingMergeTree ORDER BY id"),
        (),
        "op.rebuild_table(",
    ),
    (
        "add a TTL",
        BASE,
        table(engine=f"{MT} TTL toDate('2100-01-01') + toIntervalDay(n % 7)"),
        (),
        "op.modify_ttl(",
    ),
    (
        "change a TTL",
        table(engine=f"{MT} TTL toDate('2100-01-01') + toIntervalDay(n % 3)"),
        table(engine=f"{MT} TTL toDate('2100-01-01') + toIntervalDay(n % 5)"),
        (),
        "op.modify_ttl(",
    ),
    (
        "remove a TTL",
        table(engine=f"{MT} TTL toDate('2100-01-01') + toIntervalDay(n % 3)"),
        BASE,
        (),
        "op.remove_ttl(",
    ),
    (
        "column order rebuilds",
        BASE,
        table("id UInt64, n UInt32 DEFAULT 1, name String"),
        (),
        "op.rebuild_table(",
    ),
    (
        "drop table and view allowed",
        [*BASE, OLD, "CREATE VIEW {db}.ov AS SELECT x FROM {db}.old"],
        BASE,
        ("--allow-drops",),
        "allow_rows=True",
    ),
    ("drop table withheld", [*BASE, OLD], BASE, (), "# op.drop_object("),
    # What ALTER changes in place beside the columns (declared/plan_parts.py).
    (
        "add a table setting",
        BASE,
        table(engine=f"{MT} SETTINGS ttl_only_drop_parts = 1"),
        (),
        "op.modify_setting(",
    ),
    (
        "change a table setting",
        table(engine=f"{MT} SETTINGS merge_with_ttl_timeout = 3600"),
        table(engine=f"{MT} SETTINGS merge_with_ttl_timeout = 7200"),
        (),
        "{'merge_with_ttl_timeout': 7200}",
    ),
    (
        "remove a table setting",
        table(engine=f"{MT} SETTINGS ttl_only_drop_parts = 1"),
        BASE,
        (),
        "op.reset_setting(",
    ),
    (
        "index_granularity rebuilds",
        BASE,
        table(engine=f"{MT} SETTINGS index_granularity = 1024"),
        (),
        "op.rebuild_table(",
    ),
    (
        "column codec",
        BASE,
        table("id UInt64, name String CODEC(ZSTD(3)), n UInt32 DEFAULT 1"),
        (),
        "codec='ZSTD(3)'",
    ),
    (
        "column comment",
        BASE,
        table("id UInt64, name String COMMENT 'who', n UInt32 DEFAULT 1"),
        (),
        "comment='who'",
    ),
    ("table comment", BASE, table(engine=f"{MT} COMMENT 'the orders'"), (), "op.modify_comment("),
    (
        "view comment",
        [*BASE, VIEW.format(q="id", c="''")],
        [*BASE, VIEW.format(q="id", c="'v'")],
        (),
        "op.modify_comment(",
    ),
    (
        "materialized view comment",
        [*BASE, AGG, f"{MV_AS.format(agg='count()')} COMMENT 'old'"],
        [*BASE, AGG, f"{MV_AS.format(agg='count()')} COMMENT 'new'"],
        (),
        "op.modify_comment(",
    ),
    (
        "view query and comment",
        [*BASE, VIEW.format(q="id", c="'old'")],
        [*BASE, VIEW.format(q="id, name", c="'new'")],
        (),
        "op.replace_view(",
    ),
    (
        "materialized view query and comment",
        [*BASE, AGG, f"{MV_AS.format(agg='count()')} COMMENT 'old'"],
        [*BASE, AGG, f"{MV_AS.format(agg='sum(n)')} COMMENT 'new'"],
        (),
        "op.replace_view(",
    ),
    ("add an index", BASE, table(f"{COLUMNS}, INDEX ix n TYPE minmax GRANULARITY 2"), (), "op.add_index("),
    ("drop an index", table(f"{COLUMNS}, INDEX ix n TYPE minmax GRANULARITY 2"), BASE, (), "op.drop_index("),
    (
        "change an index",
        table(f"{COLUMNS}, INDEX ix n TYPE minmax GRANULARITY 2"),
        table(f"{COLUMNS}, INDEX ix n TYPE set(10) GRANULARITY 1"),
        (),
        "'set(10)'",
    ),
    ("add a projection", BASE, table(f"{COLUMNS}, {PROJECTION}"), (), "op.add_projection("),
    ("drop a projection", table(f"{COLUMNS}, {PROJECTION}"), BASE, (), "op.drop_projection("),
    (
        "ORDER BY extended by a new column",
        BASE,
        table(f"{COLUMNS}, c UInt8, z Int8", "ENGINE = MergeTree PRIMARY KEY id ORDER BY (id, c)"),
        (),
        "op.extend_order_by(",
    ),
    (
        "add a MATERIALIZED column",
        BASE,
        table(f"{COLUMNS}, m UInt64 MATERIALIZED id * 2"),
        (),
        "default_kind='MATERIALIZED'",
    ),
    (
        "change a MATERIALIZED expression",
        table(f"{COLUMNS}, m UInt64 MATERIALIZED id * 2"),
        table(f"{COLUMNS}, m UInt64 MATERIALIZED id * 3"),
        (),
        "default='id * 3', default_kind='MATERIALIZED'",
    ),
    (
        "add an ALIAS column",
        BASE,
        table(f"{COLUMNS}, a String ALIAS upper(name)"),
        (),
        "default_kind='ALIAS'",
    ),
    (
        "an ALIAS becomes a plain column",
        table(f"{COLUMNS}, a String ALIAS upper(name)"),
        table(f"{COLUMNS}, a String"),
        (),
        "default=None",
    ),
]


@pytest.fixture
def db(ch: Client) -> Iterator[str]:
    name = unique("autogen")
    yield name
    ch.command(f"DROP DATABASE IF EXISTS {name}")


def read(ch: Client, db: str) -> dict[str, dict[str, Shape] | None]:
    """The database's shapes, without the tables a rebuild keeps (``<table>__old_<id>``)."""
    schema = read_databases(Catalog(ch), {db})
    return {
        d: None if s is None else {n: x for n, x in s.items() if "__old_" not in n} for d, s in schema.items()
    }


def arrange(project: Project, ch: Client, db: str, before: list[str], after: list[str]) -> dict[str, int]:
    """``before`` on the target with 3 random rows a MergeTree table, ``after`` declared; the row counts."""
    ch.command(f"CREATE DATABASE {db}")
    for statement in before:
        ch.command(statement.format(db=db))
    tables = [s.split()[2].format(db=db) for s in before if "MergeTree" in s and " VIEW " not in s]
    for table in tables:
        ch.command(f"INSERT INTO {table} SELECT * FROM generateRandom() LIMIT 3")
    schema = project.root / "schema"
    schema.mkdir()
    (schema / "all.sql").write_text(
        "".join(f"{s.format(db=db)};\n" for s in ["CREATE DATABASE {db}", *after])
    )
    return {table: int(str(scalar(ch, f"SELECT count() FROM {table}"))) for table in tables}


def written(project: Project) -> str:
    (path,) = project.versions.glob("*.py")
    return path.read_text()


#: The pairs of the default run; the rest are slow (``pytest -m slow``).
FAST = {
    "create table and views in dependency order",
    "add column after another",
    "drop column withheld",
    "widen a column type",
    "view query",
    "materialized view query",
    "ORDER BY change rebuilds",
    "drop table and view allowed",
    "change a TTL",
    "add a table setting",
    "add an index",
    "ORDER BY extended by a new column",
}


@pytest.mark.parametrize(
    ("before", "after", "flags", "expect"),
    [pytest.param(*p[1:], id=p[0], marks=() if p[0] in FAST else pytest.mark.slow) for p in PAIRS],
)
def test_each_pair_is_autogenerated_proven_applied_and_reversed(
    project: Project,
    ch: Client,
    db: str,
    before: list[str],
    after: list[str],
    flags: tuple[str, ...],
    expect: str,
) -> None:
    counts = arrange(project, ch, db, before, after)
    start = read(ch, db)
    result = project.run("revision", "--autogenerate", "-m", "autogen", *flags)
    assert result.exit_code == 0, result.output
    assert "proven on a scratch engine in" in result.stdout
    assert expect in written(project)
    assert project.run("upgrade", "head").exit_code == 0
    check = project.run("check", "--schema")
    # Only what the revision keeps on purpose differs: a rebuild's old table, what a commented-out drop keeps.
    kept = [
        line for line in check.stdout.splitlines() if line.startswith("difference:") and "__old_" not in line
    ]
    if "--allow-drops" in flags or "# op.drop" not in written(project):
        assert kept == [], check.output
    else:
        assert kept and all(line.endswith("found present") or " columns:" in line for line in kept), kept
    for name, rows in counts.items():  # every table kept holds its rows
        if scalar(
            ch, f"SELECT count() FROM system.tables WHERE database = '{db}' AND name = '{name.split('.')[1]}'"
        ):
            assert scalar(ch, f"SELECT count() FROM {name}") == rows
    assert project.run("downgrade", "base").exit_code == 0
    assert [d.describe() for d in diff_schema(start, read(ch, db))] == []


def test_the_target_must_be_at_the_head(project: Project, ch: Client, db: str) -> None:
    arrange(project, ch, db, [], BASE)
    project.write_revision("a1", None, "pass", "pass")
    result = project.run("revision", "--autogenerate", "-m", "x")
    assert result.exit_code == 2
    assert "the target is at base, not at the head a1: k2-migrate upgrade head first" in result.stderr
    assert [p.name for p in project.versions.glob("*.py")] == ["ra1.py"]


def test_no_difference_writes_nothing(project: Project, ch: Client, db: str) -> None:
    arrange(project, ch, db, BASE, BASE)
    result = project.run("revision", "--autogenerate", "-m", "x")
    assert (result.exit_code, result.stdout.strip()) == (
        0,
        "no difference from the declared schema in schema: nothing written",
    )
    assert list(project.versions.glob("*.py")) == []


def test_a_revision_failing_its_proof_is_not_written_and_no_verify_says_so(
    project: Project, ch: Client, db: str
) -> None:
    """Random names cannot become numbers: the type change fails on the scratch engine's sample rows."""
    arrange(
        project, ch, db, BASE, [f"CREATE TABLE {{db}}.t (id UInt64, name UInt64, n UInt32 DEFAULT 1) {MT}"]
    )
    result = project.run("revision", "--autogenerate", "-m", "x")
    assert result.exit_code == 8, result.output
    assert "difference: upgrade head exited 6:" in result.stderr
    assert "failed its proof (1 difference(s), each above); nothing was written" in result.stderr
    assert list(project.versions.glob("*.py")) == []
    result = project.run("revision", "--autogenerate", "-m", "x", "--no-verify")
    assert result.exit_code == 0
    assert "not proven (--no-verify)" in result.stdout
    text = written(project)
    assert "# Written with --no-verify: this revision was NOT proven on a scratch engine." in text
    assert f"op.modify_column({db!r}, 't', 'name', type='UInt64')" in text


def shape(engine: str = "MergeTree") -> Shape:
    return Shape(
        engine=engine,
        columns=(("id", "UInt64"),),
        defaults=(),
        sorting_key="id",
        partition_key="",
        primary_key="id",
    )


def test_creates_come_in_dependency_order_and_drops_in_reverse() -> None:
    ddl = {
        "d.t": "CREATE TABLE d.t (id UInt64) ENGINE = MergeTree ORDER BY id",
        "d.a": "CREATE VIEW d.a AS SELECT id FROM d.m",
        "d.m": "CREATE VIEW d.m AS SELECT id FROM d.t",
    }
    declared = Side({"d": {"t": shape(), "a": shape(""), "m": shape("")}}, ddl)
    empty = Side({"d": {}}, {})
    plan = plan_revision(empty, declared)
    assert [line.split("'")[3] for line in plan.upgrade] == ["t", "m", "a"]
    assert plan.downgrade == [
        "op.drop_object('d', 'a')",
        "op.drop_object('d', 'm')",
        "op.drop_object('d', 't')",
    ]
    back = plan_revision(declared, Side({"d": {}}, {}), allow_drops=True)
    assert [line.split("'")[3] for line in back.upgrade] == ["a", "m", "t"]
    withheld = plan_revision(declared, Side({"d": {}}, {}))
    assert withheld.withheld == {"d.t": (), "d.m": (), "d.a": ()}
    assert all(line.startswith("#") for line in withheld.upgrade + withheld.downgrade)
    assert body(withheld.upgrade)[-1] == "pass"


def test_plan_is_empty_for_equal_sides() -> None:
    side = Side({"a": {}}, {})
    assert plan_revision(side, side).upgrade == []


@pytest.fixture
def k2_project(tmp_path: Path) -> Project:
    """A copy of this repository's K2 project (alembic.ini, versions/, schema/) with no target at all."""
    for name in ("versions", "schema"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "alembic.ini", tmp_path)
    # A URL no process can open: --from-revisions must never read the target.
    return Project(
        tmp_path, {"K2_MIGRATE_URL": "clickhouse://nobody@127.0.0.1:1/none", "K2_MIGRATE_PASSWORD": ""}
    )


def test_the_k2_revisions_replayed_are_the_declared_k2_schema(k2_project: Project) -> None:
    result = k2_project.run("revision", "--autogenerate", "--from-revisions", "-m", "x")
    assert (result.exit_code, result.stdout.strip()) == (
        0,
        "no difference from the declared schema in schema: nothing written",
    )


def test_a_column_declared_on_k2_is_autogenerated_from_the_revisions_and_proven(k2_project: Project) -> None:
    """The proof holds the whole K2 schema (Kafka tables as Null stand-ins, their views) with rows."""
    silver = k2_project.root / "schema" / "k2" / "silver.sql"
    text = silver.read_text()
    old = "    `ingested_at` DateTime64(3, 'UTC')\n)\nENGINE = ReplacingMergeTree"
    assert old in text
    silver.write_text(
        text.replace(old, old.replace("'UTC')\n", "'UTC'),\n    `venue` String DEFAULT 'spot'\n"), 1)
    )
    result = k2_project.run("revision", "--autogenerate", "--from-revisions", "-m", "silver venue")
    assert result.exit_code == 0, result.output
    assert "proven on a scratch engine in" in result.stdout
    (path,) = k2_project.versions.glob("*silver_venue.py")
    assert (
        "op.add_column_if_missing('k2', 'silver_trades', 'venue', 'String', default=\"'spot'\", after='ingested_at')"
        in path.read_text()
    )


@given(st.lists(st.lists(st.integers(0, 7), max_size=3), min_size=1, max_size=8), st.randoms())
def test_each_view_is_created_after_every_object_it_reads(reads: list[list[int]], rng: random.Random) -> None:
    """Object i is a table when it reads nothing, else a view reading the lower-numbered ones it names:
    in any listing order, each comes after all it reads, and the drops are the exact reverse."""
    ddl: dict[str, str] = {}
    shapes: dict[str, Shape] = {}
    labels = [f"o{k}" for k in rng.sample(range(len(reads)), len(reads))]  # names unrelated to the order
    for i, sources in enumerate(reads):
        names = sorted({f"d.{labels[j]}" for j in sources if j < i})
        ddl[f"d.{labels[i]}"] = (
            f"CREATE VIEW d.{labels[i]} AS SELECT 1 FROM {' JOIN '.join(names)} USING x"
            if names
            else f"CREATE TABLE d.{labels[i]} (x UInt8) ENGINE = MergeTree ORDER BY x"
        )
        shapes[labels[i]] = shape("" if names else "MergeTree")
    side = Side({"d": shapes}, ddl)
    listed = [("d", name) for name in shapes]
    rng.shuffle(listed)
    order = [name for _, name in dependency_order(listed, side)]
    for i, sources in enumerate(reads):
        assert all(order.index(labels[j]) < order.index(labels[i]) for j in sources if j < i)
    plan = plan_revision(Side({"d": {}}, {}), side)
    assert [line.split("'")[3] for line in plan.upgrade] == order
    assert [line.split("'")[3] for line in plan.downgrade] == order[::-1]


@pytest.mark.parametrize(
    ("engine", "split"),
    [
        ("MergeTree", ("MergeTree", "")),
        ("MergeTree TTL d + toIntervalDay(1)", ("MergeTree", "d + toIntervalDay(1)")),
        (
            "ReplacingMergeTree(v) TTL d + toIntervalDay(1) DELETE",
            ("ReplacingMergeTree(v)", "d + toIntervalDay(1) DELETE"),
        ),
        ("Merge('TTL', 'x') SAMPLE BY id", ("Merge('TTL', 'x') SAMPLE BY id", "")),
    ],
)
def test_the_ttl_is_split_from_the_engine_by_tokens(engine: str, split: tuple[str, str]) -> None:
    assert split_ttl(engine) == split


def keyed(columns: str, key: str, defaults: tuple[tuple[str, str, str], ...] = ()) -> Shape:
    """A table of ``columns`` (``name type`` pairs) ordered by ``key``, primary key ``id``."""
    pairs = tuple((name, type_) for name, type_ in (c.split() for c in columns.split(", ")))
    return replace(shape(), columns=pairs, sorting_key=key, defaults=defaults)


@pytest.mark.parametrize(
    ("after", "extended"),
    [
        (keyed("id UInt64, a String, c UInt8", "id, c"), [("c", "UInt8")]),
        (keyed("id UInt64, a String, c UInt8, d Date", "id, c, toYear(d)"), [("c", "UInt8"), ("d", "Date")]),
        (keyed("id UInt64, a String, c UInt8", "id"), []),  # the same key
        (keyed("id UInt64, a String", "id, a"), []),  # a column the table has
        (keyed("id UInt64, a String, c UInt8", "c, id"), []),  # not an extension of the key
        (keyed("id UInt64, c UInt8, a String", "id, c"), []),  # declared before a column the table has
        (keyed("id UInt64, a String, c UInt8", "id, c", (("c", "DEFAULT", "1"),)), []),  # with a default
        (keyed("id UInt64, a String, c UInt8", "id, a, c"), []),  # an existing column in what is appended
    ],
)
def test_a_sorting_key_is_extended_in_place_only_as_clickhouse_allows(
    after: Shape, extended: list[tuple[str, str]]
) -> None:
    assert order_by_extension(keyed("id UInt64, a String", "id"), after) == extended
