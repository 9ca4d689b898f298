"""Which views depend on a table or on one of its columns, and which views no longer compile.

The engine lists a materialized view under its source table (``system.tables.dependencies_table``)
but not under its ``TO`` target, and not a plain view at all; so every view's own query is read too,
through the tokenizer: the tables it reads (FROM, JOIN, subqueries) and the one it writes. For a
column the answer is conservative: a view that reads or writes the table and names the column
anywhere in its query (or selects ``*``) may read it, and counts.

Whether a view still works is the engine's to say: ``EXPLAIN QUERY TREE`` of its query resolves every
table and column without reading a row (2-3 ms a view on chDB 26.1; reading a Kafka table or a
dictionary is fine). ``SELECT ... FROM view LIMIT 0`` would not do: for a materialized view it reads
the target and never looks at the query.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

from k2_migrations.errors import GuardFailed, UsageError
from k2_migrations.sqltext import TableName, view_source_and_target
from k2_migrations.sqltext.tokens import Kind, Token, tokenize

if TYPE_CHECKING:
    from k2_migrations.introspection.catalog import Catalog

_VIEW_ENGINES = ("View", "MaterializedView")
_SYSTEM = ("system", "information_schema", "INFORMATION_SCHEMA")


@dataclass(frozen=True)
class View:
    database: str
    name: str
    create_query: str
    query: str
    #: ``db.table`` names it reads, and the one it writes (``TO``), its own database filled in.
    sources: frozenset[str]
    target: str

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.name}"

    def names(self) -> set[str]:
        """Every name its query mentions, and ``*`` where it selects every column, for the conservative
        column test. A ``*`` selects every column after SELECT/DISTINCT, a ``,`` or a ``.`` (``t.*``);
        elsewhere it is ``count(*)`` or a product, which reads no column by name."""
        tokens = tokenize(self.query)
        names = {t.value for t in tokens if t.is_name}
        for before, token in pairwise(tokens):
            if token.kind is Kind.PUNCT and token.value == "*" and _selects_all_after(before):
                names.add("*")
        return names


def _selects_all_after(token: Token) -> bool:
    return token.value in {",", "."} or token.upper() in {"SELECT", "DISTINCT"}


def _view_rows(
    catalog: Catalog, databases: set[str] | None, columns: str, mentioning: str = ""
) -> list[tuple[object, ...]]:
    """``columns`` of every view (of ``databases``, when given; whose definition holds the text
    ``mentioning``, when given: only those are tokenized). The databases are listed first: a filter on
    system.tables' database is pushed down, one on its engine is not, and reading the definitions of
    information_schema's ~40 views costs ~20 ms (chDB 26.1)."""
    names = set(catalog.database_names()) - set(_SYSTEM) if databases is None else databases
    if not names:
        return []
    return catalog.rows(
        f"SELECT {columns} FROM system.tables WHERE database IN {{d:Array(String)}}"
        " AND engine IN {e:Array(String)} AND position(create_table_query, {m:String}) > 0"
        " ORDER BY database, name",
        {"d": sorted(names), "e": list(_VIEW_ENGINES), "m": mentioning},
    )


def views(catalog: Catalog, databases: set[str] | None = None, mentioning: str = "") -> list[View]:
    """Every view and materialized view (of ``databases``; whose definition holds ``mentioning``)."""
    rows = _view_rows(catalog, databases, "database, name, create_table_query, as_select", mentioning)
    out: list[View] = []
    for database, name, create_query, query in rows:
        read, written = view_source_and_target(str(create_query))
        out.append(
            View(
                str(database),
                str(name),
                str(create_query),
                str(query),
                frozenset(_home(t, str(database)) for t in read),
                _home(written, str(database)) if written else "",
            )
        )
    return out


def _home(table: TableName, database: str) -> str:
    return f"{table.database or database}.{table.name}"


def dependents(catalog: Catalog, database: str, table: str) -> list[str]:
    """The views (``db.name``) that read ``database.table`` or write into it."""
    obj = f"{database}.{table}"
    found = {v.qualified for v in views(catalog, mentioning=table) if obj in v.sources or v.target == obj}
    found.update(catalog.views_reading(database, table))
    found.discard(obj)
    return sorted(found)


def column_readers(catalog: Catalog, database: str, table: str, column: str) -> list[str]:
    """The views that may read or write ``column`` of ``database.table`` (a view naming it, or ``*``)."""
    obj = f"{database}.{table}"
    return sorted(
        v.qualified
        for v in views(catalog, mentioning=table)
        if (obj in v.sources or v.target == obj) and ({column, "*"} & v.names())
    )


def dependents_argument(value: str) -> str:
    """A revision's ``dependents=``: ``"refuse"`` (the default) or ``"handled"``."""
    if value not in ("refuse", "handled"):
        raise UsageError(f"dependents={value!r}: say 'handled' when the revision re-creates the views itself")
    return value


def refuse_dependents(
    catalog: Catalog, database: str, table: str, action: str, column: str | None = None
) -> None:
    """Stop a step (exit 5) that would break the views depending on the table (or on ``column``)."""
    found = (
        column_readers(catalog, database, table, column)
        if column is not None
        else dependents(catalog, database, table)
    )
    if not found:
        return
    what = f"column {column} of {database}.{table}" if column else f"{database}.{table}"
    raise GuardFailed(
        f"refusing to {action} {what}: view(s) {', '.join(found)} depend on it and would break; drop them "
        "earlier in this revision (and re-create them after), or pass dependents='handled' if the "
        "revision re-creates them itself"
    )


def broken_views(catalog: Catalog, databases: set[str] | None = None) -> list[tuple[str, str]]:
    """The views (of ``databases``, when given) whose query the engine no longer compiles: (``db.name``, its error)."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    broken: list[tuple[str, str]] = []
    for database, name, query in _view_rows(catalog, databases, "database, name, as_select"):
        try:
            catalog.rows(f"EXPLAIN QUERY TREE {query}")
        except DatabaseError as exc:
            broken.append((f"{database}.{name}", _reason(str(exc))))
    return broken


def _reason(error: str) -> str:
    line = error.strip().splitlines()[0] if error.strip() else "no detail"
    start = line.find("DB::Exception:")
    line = line[start + len("DB::Exception:") :].strip() if start >= 0 else line
    return line[:300]
