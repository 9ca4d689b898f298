"""Comparing a live object with the definition a revision expects, without false drift.

Two definitions of the same table rarely read the same: one was typed by hand, the other rendered
by the server, with other whitespace, other quoting, unqualified names. So neither side is parsed
here. The expected DDL is created in a scratch database on the same engine, and both objects are
read back from system tables, where the server has already normalised them; then only what matters
is compared: columns and types in order, engine, sorting/partition/primary keys, Kafka settings, and a
view's source, target and query — with each side's own database name taken out of the text; and, as
details reported but never unsafe, a table's own SETTINGS, comment, data-skipping indexes and
projections, and its columns' codecs and comments.

Which difference is unsafe follows from what later revisions do with the object (:func:`compare`'s
``carried``), not from the aspect alone: a view's output column types matter nowhere if the view is
carried over by its live definition, and everywhere if it is kept and something later relies on them.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from k2_migrations.introspection.catalog import Catalog, ColumnInfo, TableInfo
from k2_migrations.sqltext import TableName, rewrite_databases, view_source_and_target
from k2_migrations.sqltext.tokens import Kind, Token, tokenize

if TYPE_CHECKING:
    from collections.abc import Callable

_OPEN = re.compile(r"\(\s+")
_SPACE = re.compile(r"\s+")
HOME = "home_database"


@dataclass(frozen=True)
class Shape:
    """What matters about one object, with its own database written as ``home_database``."""

    engine: str
    columns: tuple[tuple[str, str], ...]
    defaults: tuple[tuple[str, str, str], ...]
    sorting_key: str
    partition_key: str
    primary_key: str
    settings: dict[str, str] = field(default_factory=dict)
    view_target: str = ""
    view_sources: tuple[str, ...] = ()
    view_query: str = ""
    #: Known only from the DDL text (a view on a Kafka table, never created even in scratch):
    #: only its source and target can be compared.
    partial: bool = False
    #: The details below were read (a shape recorded before they were is compared without them).
    detailed: bool = False
    #: A table's own SETTINGS (not a Kafka table's: those are ``settings``), as ``engine_full`` renders them.
    table_settings: dict[str, str] = field(default_factory=dict)
    comment: str = ""
    #: (column, ``CODEC(...)``) and (column, comment) of the columns that have one.
    codecs: tuple[tuple[str, str], ...] = ()
    column_comments: tuple[tuple[str, str], ...] = ()
    #: Data-skipping indexes (name, expression, type, granularity) and projections (name, query), by name.
    indices: tuple[tuple[str, str, str, int], ...] = ()
    projections: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Difference:
    obj: str
    aspect: str
    expected: str
    found: str
    unsafe: bool
    #: Why it matters, for an unsafe difference: what a later revision does that it would break.
    why: str = ""

    def describe(self) -> str:
        return f"{self.obj} {self.aspect}: expected {self.expected}, found {self.found}"


def read_shapes(catalog: Catalog, database: str, names: list[str] | None = None) -> dict[str, Shape]:
    """The shapes of the objects of ``database`` (only ``names``, when given): two queries in all."""
    infos = catalog.tables(database, names)
    columns = catalog.columns_by_table(database, list(infos))
    parts = catalog.parts_by_table(database, list(infos))
    return {
        name: shape_of(info, columns.get(name, []), *parts.get(name, ([], [])))
        for name, info in infos.items()
    }


def shape_of(
    info: TableInfo,
    columns: list[ColumnInfo],
    indices: list[tuple[str, str, str, int]] | None = None,
    projections: list[tuple[str, str]] | None = None,
) -> Shape:
    """An object's shape from its system.tables row, its columns, its indexes and its projections."""
    database = info.database

    def home(text: str) -> str:
        return rewrite_databases(text, {database: HOME})

    sources: tuple[str, ...] = ()
    target = ""
    if info.engine == "MaterializedView":
        # From the tokens of the whole definition: a FROM or a db. inside a string literal is data.
        read, written = view_source_and_target(info.create_query)
        sources = tuple(sorted({_home_name(t, database) for t in read}))
        target = _home_name(written, database) if written else ""
    return Shape(
        engine=_engine(info.engine_full) if info.engine != "Kafka" else "Kafka",
        columns=tuple((c.name, c.type) for c in columns),
        defaults=tuple(
            (c.name, c.default_kind, home(c.default_expression)) for c in columns if c.default_kind
        ),
        sorting_key=info.sorting_key,
        partition_key=info.partition_key,
        primary_key=info.primary_key,
        settings=kafka_settings(info.engine_full) if info.engine == "Kafka" else {},
        view_target=target,
        view_sources=sources,
        view_query=" ".join(home(info.as_select).split()),
        detailed=True,
        table_settings=table_settings(info.engine_full) if info.is_merge_tree else {},
        comment=info.comment,
        codecs=tuple((c.name, c.codec) for c in columns if c.codec),
        column_comments=tuple((c.name, c.comment) for c in columns if c.comment),
        indices=tuple((n, home(e), t, g) for n, e, t, g in indices or []),
        projections=tuple((n, home(q)) for n, q in projections or []),
    )


#: Clauses of ``engine_full`` compared on their own (keys, from system.tables) or not at all (settings).
_KEY_CLAUSES = {"PARTITION", "PRIMARY", "ORDER", "SETTINGS"}
_CLAUSES = _KEY_CLAUSES | {"SAMPLE", "TTL"}


def _engine(engine_full: str) -> str:
    """The engine with its arguments and its other storage clauses (SAMPLE BY, TTL), without the keys.

    The keys are compared one by one from system.tables, so a table that spells out a PRIMARY KEY
    equal to its ORDER BY differs from one that leaves it implied in nothing that matters.
    """
    tokens = tokenize(engine_full)
    starts: list[tuple[int, str]] = [(0, "")]
    depth = 0
    for token in tokens:
        if token.kind is Kind.PUNCT and token.value in "()":
            depth += 1 if token.value == "(" else -1
        elif depth == 0 and token.upper() in _CLAUSES:
            starts.append((token.start, token.upper()))
    bounds = [*starts, (len(engine_full), "")]
    kept = [engine_full[a:b].strip() for (a, word), (b, _) in pairwise(bounds) if word not in _KEY_CLAUSES]
    return " ".join(kept)


def _home_name(table: TableName, database: str) -> str:
    return str(TableName(HOME if table.database in (database, None) else table.database, table.name))


#: The Kafka engine's positional arguments, in the order ClickHouse documents them for
#: ``Kafka(broker_list, topic_list, group_name, format[, row_delimiter, schema, num_consumers])``.
_KAFKA_ARGUMENTS = (
    "kafka_broker_list",
    "kafka_topic_list",
    "kafka_group_name",
    "kafka_format",
    "kafka_row_delimiter",
    "kafka_schema",
    "kafka_num_consumers",
)


_COMMA = Token(Kind.PUNCT, ",", 0, 1)


def kafka_settings(engine_full: str) -> dict[str, str]:
    """A Kafka table's settings by name, in the order the engine reports them (``engine_full``).

    Positional engine arguments (``Kafka('broker', 'topic', 'group', 'JSONEachRow')``) are named as
    the settings they stand for, so a table written either way compares by meaning. Read from the
    tokens: a comma or ``=`` inside a quoted broker list or topic is part of the value.
    """
    tokens = tokenize(engine_full)
    settings: dict[str, str] = {}
    depth, argument, end = 0, 0, len(tokens)
    for index, token in enumerate(tokens):
        if token.kind is Kind.PUNCT and token.value in "()":
            depth += 1 if token.value == "(" else -1
        elif depth == 1 and token.kind is Kind.PUNCT and token.value == ",":
            argument += 1
        elif depth == 1:
            name = (
                _KAFKA_ARGUMENTS[argument] if argument < len(_KAFKA_ARGUMENTS) else f"argument {argument + 1}"
            )
            settings[name] = settings.get(name, "") + token.value
        elif depth == 0 and token.upper() == "SETTINGS":
            end = index
            break
    setting: list[str] = []
    for token in [*tokens[end + 1 :], _COMMA]:
        if token.kind is Kind.PUNCT and token.value == ",":
            if len(setting) > 2 and setting[1] == "=":
                settings[setting[0]] = "".join(setting[2:])
            setting = []
        else:
            setting.append(token.value)
    return settings


def table_settings(engine_full: str) -> dict[str, str]:
    """A table's SETTINGS clause by name, each value as ``engine_full`` renders it (``'default'``, ``1``)."""
    depth, start = 0, None
    for token in tokenize(engine_full):
        if token.kind is Kind.PUNCT and token.value in "()":
            depth += 1 if token.value == "(" else -1
        elif depth == 0 and token.upper() == "SETTINGS":
            start = token.end
    if start is None:
        return {}
    return kafka_settings(f"Null SETTINGS {engine_full[start:]}")


def setting_value(text: str) -> int | float | str:
    """A setting's value as :func:`table_settings` reads it (``1``, ``0.5``, a string unquoted), as the
    number or string a revision writes (a string is quoted again when set)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def engine_type(catalog: Catalog, type_name: str) -> str | None:
    """``type_name`` as the engine itself names it (``INT`` -> ``Int32``, ``Decimal(10,2)`` ->
    ``Decimal(10, 2)``), or None when the engine knows no such type.

    A type written by hand and the type system.columns shows rarely read the same (aliases, case,
    spacing), and only the engine knows every alias, so it is asked rather than a table of aliases kept
    here: the same reason tables are compared after the engine rendered both (see :func:`compare`).
    """
    from clickhouse_connect.driver.exceptions import DatabaseError

    try:
        name = catalog.scalar("SELECT toTypeName(defaultValueOfTypeName({t:String}))", {"t": type_name})
    except DatabaseError:
        return None
    # Named tuples come back one element per line: one line, as system.columns shows them.
    return _SPACE.sub(" ", _OPEN.sub("(", str(name))).strip()


#: Kafka settings whose change loses or duplicates messages; the rest (brokers, consumers) are per environment.
KAFKA_IDENTITY = ("kafka_topic_list", "kafka_group_name", "kafka_format", "kafka_handle_error_mode")

_MOVED = "moved and altered as it is by later revisions, never re-created"
_ROUTE = "re-created reading and writing these tables: another route would move or misroute rows"
_IDENTITY = (
    "re-created with this setting: another topic, group, format or error mode loses or duplicates messages"
)
_KIND = "later revisions treat it as this kind of object"


def compare(obj: str, expected: Shape, found: Shape, *, carried: bool = False) -> list[Difference]:
    """Differences, each marked unsafe when a later revision depends on that aspect.

    ``obj`` is ``database.name``: the texts are compared with that database as ``home_database``
    and shown with its name.

    ``carried``: later revisions re-create the object from its live definition (a view, a Kafka
    table), so its own text — output column types, expressions, formatting, settings order, settings
    outside the Kafka identity — travels with it and is only reported; what it reads, where it writes,
    and which messages it consumes stay unsafe. Otherwise the object stays what it is and later
    revisions act on it (a data table is moved and altered), so its structure — columns and types,
    engine, keys, partitioning — is unsafe too; column defaults are reported either way.
    """
    out: list[Difference] = []
    database = obj.partition(".")[0]

    def differ(aspect: str, want: object, have: object, why: str = "") -> None:
        if want != have:
            shown = _show(_named(want, database)), _show(_named(have, database))
            out.append(Difference(obj, aspect, *shown, bool(why), why))

    structure = "" if carried else _MOVED
    differ("view target", expected.view_target, found.view_target, _ROUTE)
    differ("view source", expected.view_sources, found.view_sources, _ROUTE)
    if expected.partial:
        return out
    differ("engine", expected.engine, found.engine, _KIND if carried else _MOVED)
    differ("columns", expected.columns, found.columns, structure)
    differ("ORDER BY", expected.sorting_key, found.sorting_key, structure)
    differ("PARTITION BY", expected.partition_key, found.partition_key, structure)
    differ("PRIMARY KEY", expected.primary_key, found.primary_key, structure)
    differ("column defaults", expected.defaults, found.defaults)
    for key in sorted(set(expected.settings) | set(found.settings)):
        why = _IDENTITY if key in KAFKA_IDENTITY else ""
        differ(f"setting {key}", expected.settings.get(key, "-"), found.settings.get(key, "-"), why)
    common = [k for k in found.settings if k in expected.settings]
    differ("settings order", tuple(k for k in expected.settings if k in found.settings), tuple(common))
    if expected.view_query and found.view_query:
        differ("view query", expected.view_query, found.view_query)
    if expected.detailed and found.detailed:
        _details(expected, found, differ)
    return out


def _details(expected: Shape, found: Shape, differ: Callable[[str, object, object], None]) -> None:
    """What ALTERs change in place and nothing later depends on: reported, never unsafe."""
    for key in sorted(set(expected.table_settings) | set(found.table_settings)):
        differ(f"SETTINGS {key}", expected.table_settings.get(key, "-"), found.table_settings.get(key, "-"))
    differ("COMMENT", expected.comment, found.comment)
    differ("column codecs", expected.codecs, found.codecs)
    differ("column comments", expected.column_comments, found.column_comments)
    differ("indices", expected.indices, found.indices)
    differ("projections", expected.projections, found.projections)


def _named(value: object, database: str) -> object:
    """``value`` as the user wrote it: ``home_database`` (compared, so that each side's own database
    matches) shown as the object's database again."""
    if isinstance(value, tuple):
        return tuple(_named(v, database) for v in value)
    return rewrite_databases(value, {HOME: database}) if isinstance(value, str) else value


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(" ".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in value) + ")"
    return repr(value) if isinstance(value, str) else str(value)


def shape_to_json(shape: Shape) -> dict[str, Any]:
    return asdict(shape)


def shape_from_json(data: dict[str, Any]) -> Shape:
    """A shape written by :func:`shape_to_json`; one recorded before the details were read has none."""
    return Shape(
        engine=data["engine"],
        columns=tuple(tuple(c) for c in data["columns"]),
        defaults=tuple(tuple(d) for d in data["defaults"]),
        sorting_key=data["sorting_key"],
        partition_key=data["partition_key"],
        primary_key=data["primary_key"],
        settings=dict(data["settings"]),
        view_target=data["view_target"],
        view_sources=tuple(data["view_sources"]),
        view_query=data["view_query"],
        partial=data["partial"],
        detailed=data.get("detailed", False),
        table_settings=dict(data.get("table_settings", {})),
        comment=data.get("comment", ""),
        codecs=tuple(tuple(c) for c in data.get("codecs", ())),
        column_comments=tuple(tuple(c) for c in data.get("column_comments", ())),
        indices=tuple((n, e, t, int(g)) for n, e, t, g in data.get("indices", ())),
        projections=tuple(tuple(p) for p in data.get("projections", ())),
    )


def read_schema(catalog: Catalog, databases: set[str]) -> dict[str, dict[str, Shape] | None]:
    """Every object of each database (None for a database that does not exist)."""
    schema: dict[str, dict[str, Shape] | None] = {}
    for database in sorted(databases):
        if not catalog.database_exists(database):
            schema[database] = None
            continue
        schema[database] = read_shapes(catalog, database)
    return schema


def diff_schema(
    expected: dict[str, dict[str, Shape] | None], live: dict[str, dict[str, Shape] | None]
) -> list[Difference]:
    """Drift between a recorded schema and the live one: missing, extra and changed objects."""
    out: list[Difference] = []
    for database, want in expected.items():
        have = live.get(database)
        if want is None or have is None:
            if (want is None) != (have is None):
                out.append(Difference(database, "database", _exists(want), _exists(have), True))
            continue
        for name in sorted(set(want) | set(have)):
            obj = f"{database}.{name}"
            if name not in have:
                out.append(Difference(obj, "object", "present", "missing", True))
            elif name not in want:
                out.append(Difference(obj, "object", "absent", "present", True))
            else:
                out.extend(compare(obj, want[name], have[name]))
    return out


def _exists(value: object) -> str:
    return "absent" if value is None else "present"
