"""Comparing a live object with the definition a revision expects, without false drift.

Two definitions of the same table rarely read the same: one was typed by hand, the other rendered
by the server, with other whitespace, other quoting, unqualified names. So neither side is parsed
here. The expected DDL is created in a scratch database on the same engine, and both objects are
read back from system tables, where the server has already normalised them; then only what matters
is compared: columns and types in order, engine, sorting/partition/primary keys, Kafka settings, and a
view's source, target and query — with each side's own database name taken out of the text.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from k2_migrations.core.catalog import Catalog, ColumnInfo, TableInfo
from k2_migrations.core.sql import rewrite_databases

_SETTING = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|[^,\s]+)")
_FROM = re.compile(r"\b(?:FROM|JOIN)\s+((?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))?)", re.IGNORECASE)
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


@dataclass(frozen=True)
class Difference:
    obj: str
    aspect: str
    expected: str
    found: str
    unsafe: bool

    def describe(self) -> str:
        return f"{self.obj} {self.aspect}: expected {self.expected}, found {self.found}"


def read_shapes(catalog: Catalog, database: str, names: list[str] | None = None) -> dict[str, Shape]:
    """The shapes of the objects of ``database`` (only ``names``, when given): two queries in all."""
    infos = catalog.tables(database, names)
    columns = catalog.columns_by_table(database, list(infos))
    return {name: shape_of(info, columns.get(name, [])) for name, info in infos.items()}


def shape_of(info: TableInfo, columns: list[ColumnInfo]) -> Shape:
    """An object's shape from its system.tables row and its columns."""
    database = info.database

    def home(text: str) -> str:
        return rewrite_databases(text, {database: HOME})

    settings: dict[str, str] = {}
    if info.engine == "Kafka":
        _, _, tail = info.engine_full.partition("SETTINGS")
        settings = {key: value.strip("'") for key, value in _SETTING.findall(tail)}
    target = home(info.view_target) if info.view_target else ""
    query = home(info.as_select)
    return Shape(
        engine=info.engine_full.split(" SETTINGS ")[0] if info.engine != "Kafka" else "Kafka",
        columns=tuple((c.name, c.type) for c in columns),
        defaults=tuple(
            (c.name, c.default_kind, home(c.default_expression)) for c in columns if c.default_kind
        ),
        sorting_key=info.sorting_key,
        partition_key=info.partition_key,
        primary_key=info.primary_key,
        settings=settings,
        view_target=target.replace("`", ""),
        view_sources=tuple(sorted({s.replace("`", "") for s in _FROM.findall(query)})),
        view_query=" ".join(query.split()),
    )


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


def compare(obj: str, expected: Shape, found: Shape) -> list[Difference]:
    """Differences, each marked unsafe when later revisions could lose or misroute data because of it."""
    out: list[Difference] = []

    def differ(aspect: str, want: object, have: object, unsafe: bool) -> None:
        if want != have:
            out.append(Difference(obj, aspect, _show(want), _show(have), unsafe))

    if expected.partial:
        differ("view target", expected.view_target, found.view_target, unsafe=True)
        differ("view source", expected.view_sources, found.view_sources, unsafe=True)
        return out
    differ("engine", expected.engine, found.engine, unsafe=True)
    differ("columns", expected.columns, found.columns, unsafe=True)
    differ("ORDER BY", expected.sorting_key, found.sorting_key, unsafe=True)
    differ("PARTITION BY", expected.partition_key, found.partition_key, unsafe=True)
    differ("PRIMARY KEY", expected.primary_key, found.primary_key, unsafe=False)
    differ("column defaults", expected.defaults, found.defaults, unsafe=False)
    for key in sorted(set(expected.settings) | set(found.settings)):
        differ(
            f"setting {key}",
            expected.settings.get(key, "-"),
            found.settings.get(key, "-"),
            key in KAFKA_IDENTITY,
        )
    differ("view target", expected.view_target, found.view_target, unsafe=True)
    differ("view source", expected.view_sources, found.view_sources, unsafe=True)
    if expected.view_query and found.view_query:
        differ("view query", expected.view_query, found.view_query, unsafe=False)
    return out


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(" ".join(v) if isinstance(v, tuple) else str(v) for v in value) + ")"
    return repr(value) if isinstance(value, str) else str(value)


def shape_to_json(shape: Shape) -> dict[str, Any]:
    return asdict(shape)


def shape_from_json(data: dict[str, Any]) -> Shape:
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
