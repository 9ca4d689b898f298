"""Changing a view's query in place, and telling whether a live object is the one a DDL would create.

A view's query used to change by a drop and a re-create: every row its source received in between
never reached its target (40-60 of ~900 in the run that found it). ``ALTER TABLE ... MODIFY QUERY``
swaps a materialized view's query in one statement, and on this engine no insert into the source is
lost or counted twice across it (measured, docs/operations.md). A plain view holds no rows and is
swapped by ``CREATE OR REPLACE VIEW``. What MODIFY QUERY cannot do is refused before anything
changes, naming what to do instead: write to another target, turn one kind of view into another,
change an inner table's engine or give it a column — and a query whose rows the target cannot take,
which the engine would accept and then fail every insert into the source with.

Definitions are compared as the engine stores them, never as text: the wanted query is given to a
plain view in a scratch database (no rows, no trigger) and read back from ``system.tables``, where
the engine has already normalised it — the same reading that verifies the change afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alembic.operations import Operations

from k2_migrations import failpoints
from k2_migrations.engine.context import Payload
from k2_migrations.errors import DriftDetected, GuardFailed, UsageError
from k2_migrations.operations.base import ClickHouseOperation, _register, _squash
from k2_migrations.sqltext import TableName, object_kind, rewrite_databases, view_source_and_target
from k2_migrations.sqltext.objects import view_comment, view_query
from k2_migrations.sqltext.quoting import ident, qualified
from k2_migrations.sqltext.tokens import Kind, tokenize

if TYPE_CHECKING:
    from k2_migrations.engine.context import StepContext
    from k2_migrations.introspection.catalog import TableInfo

_KINDS = {"MaterializedView": "materialized view", "View": "view"}
_ELSEWHERE = (
    "a view writes to one target for its life: create a new view on the new target (op.create_object), "
    "backfill that target up to the moment the new view began, then drop this one"
)


@_register("replace_view")
@dataclass(eq=False)
class ReplaceView(ClickHouseOperation):
    """Change the query of a (materialized) view to the one of ``ddl``, losing and doubling no row.

    ``ddl`` is the view's whole ``CREATE [MATERIALIZED] VIEW`` statement, as for ``create_object``;
    only its query may differ from the live view. Without ``ddl``, the view gets back the definition
    that revision ``captured_in`` (default: the running one) captured before it replaced the query —
    what :meth:`reverse` does; a downgrade may as well name the old DDL itself.
    """

    database: str
    name: str
    ddl: str | None = None
    captured_in: str | None = None

    @classmethod
    def replace_view(
        cls,
        operations: Operations,
        database: str,
        name: str,
        ddl: str | None = None,
        *,
        captured_in: str | None = None,
    ) -> None:
        if ddl is not None and captured_in is not None:
            raise UsageError("replace_view takes the new DDL or captured_in=, not both")
        if ddl is not None:
            _check_names_view(ddl, database, name)
        operations.invoke(cls(database, name, ddl, captured_in))

    @property
    def obj(self) -> str:
        return f"{self.database}.{self.name}"

    def describe(self) -> str:
        if self.ddl is None:
            source = f"revision {self.captured_in}" if self.captured_in else "this revision"
            return f"put back the query of view {self.obj} captured by {source}"
        return f"replace the query of {object_kind(self.ddl)} {self.obj}"

    def render(self) -> list[str]:
        lines = [
            "-- compared with the live query first (as the engine stores it): the same is left alone; "
            "refused: another target, kind or inner engine, rows the target cannot take"
        ]
        if self.ddl is None:
            return [*lines, f"-- the query of {self.obj} as captured before it was replaced"]
        return [*lines, _statement(self.database, self.name, self.ddl)]

    def guard_notes(self) -> list[str]:
        if self.ddl is not None and object_kind(self.ddl) != "materialized view":
            return []
        return [f"refuses a query whose rows {self.obj}'s target cannot take (it would fail every insert)"]

    def apply(self, rt: StepContext) -> Payload:
        info = rt.catalog.table(self.database, self.name)
        if info is None or info.engine not in _KINDS:
            found = "not there" if info is None else f"a {info.engine} table, not a view"
            raise UsageError(
                f"replace_view: {self.obj} is {found}; create a view with op.create_object instead"
            )
        ddl = self.ddl if self.ddl is not None else self._captured(rt)
        refusal = _head_refusal(info, ddl)
        if refusal:
            raise UsageError(f"replace_view cannot change {self.obj}: {refusal}")
        query = view_query(ddl)
        assert query is not None  # _head_refusal checked it is a view's DDL
        with scratch(rt) as where:
            stored, columns = stored_query(rt, where, query)
            engine_change = _inner_engine_change(rt, where, info, ddl)
        if engine_change:
            raise UsageError(
                f"replace_view cannot change {self.obj}: {engine_change}; MODIFY QUERY keeps the inner "
                "table: rebuild the view (op.rebuild_table) or give it a TO target"
            )
        if stored == info.as_select:
            return {"note": "nothing to do: the live query is the wanted one"}
        if info.engine == "MaterializedView":
            _check_fits(rt, info, query, columns)
        if self.ddl is not None:
            self._capture(rt, info)
        failpoints.reached("view-captured")
        rt.execute(_statement(self.database, self.name, ddl))
        failpoints.reached("view-replaced")
        after = rt.catalog.table(self.database, self.name)
        if after is None or after.as_select != stored:
            now = "gone" if after is None else _squash(after.as_select)
            raise DriftDetected(
                f"{self.obj} does not read as wanted after its query was replaced: the engine shows {now}; "
                "something else changed it meanwhile: look at it, then run again"
            )
        return {"note": f"query replaced; it was: {_squash(info.as_select, 120)}"}

    def reverse(self) -> ClickHouseOperation:
        return ReplaceView(self.database, self.name)

    def _capture(self, rt: StepContext, info: TableInfo) -> None:
        """Keep the live definition once per attempt, before anything changes: a run resumed after the
        query changed must not take the new one for the old (the attempt's first capture stands)."""
        assert rt.snapshots is not None
        if rt.snapshots.latest(rt.revision, self.obj, rt.attempt_id) is None:
            rt.snapshots.save(rt.revision, rt.attempt_id, {self.obj: info.create_query})

    def _captured(self, rt: StepContext) -> str:
        assert rt.snapshots is not None
        revision = self.captured_in or rt.revision
        definition = rt.snapshots.latest(revision, self.obj)
        if definition is None:
            raise UsageError(
                f"no captured definition of {self.obj} from revision {revision}: was it stamped instead of "
                f"run? give the old DDL instead: op.replace_view({self.database!r}, {self.name!r}, OLD_DDL)"
            )
        return definition


def _check_names_view(ddl: str, database: str, name: str) -> None:
    if view_query(ddl) is None:
        raise UsageError(
            f"replace_view({database!r}, {name!r}, ...) needs the view's CREATE [MATERIALIZED] VIEW ... AS "
            "SELECT statement"
        )
    named = _created_name(ddl)
    if named is not None and (named.database or database, named.name) != (database, name):
        raise UsageError(
            f"replace_view({database!r}, {name!r}, ...): the DDL creates {named}, not {database}.{name}"
        )


def _created_name(ddl: str) -> TableName | None:
    """The name a CREATE statement gives its object (after the kind and IF NOT EXISTS)."""
    words = [t for t in tokenize(ddl) if t.kind is not Kind.PUNCT or t.value == "."]
    index = next((i for i, t in enumerate(words) if t.upper() == "VIEW"), None)
    if index is None:
        return None
    index += 1
    while index < len(words) and words[index].upper() in ("IF", "NOT", "EXISTS"):
        index += 1
    parts = words[index : index + 3]
    if len(parts) == 3 and parts[1].value == "." and parts[0].is_name and parts[2].is_name:
        return TableName(parts[0].value, parts[2].value)
    return TableName(None, parts[0].value) if parts and parts[0].is_name else None


def _statement(database: str, name: str, ddl: str) -> str:
    """MODIFY QUERY for a materialized view (it keeps its comment); CREATE OR REPLACE for a plain view
    (it holds no rows), with the DDL's comment (it would lose its own)."""
    query = view_query(ddl)
    assert query is not None
    if object_kind(ddl) == "materialized view":
        return f"ALTER TABLE {qualified(database, name)} MODIFY QUERY {query}"
    comment = view_comment(ddl)
    return f"CREATE OR REPLACE VIEW {qualified(database, name)} AS {query}{' ' + comment if comment else ''}"


def _target(ddl: str, database: str) -> TableName | None:
    _, target = view_source_and_target(ddl)
    return None if target is None else TableName(target.database or database, target.name)


def _head_refusal(info: TableInfo, ddl: str) -> str:
    """What of the DDL other than its query differs from the live view (MODIFY QUERY keeps it), or ""."""
    live, wanted = _KINDS[info.engine], object_kind(ddl)
    if view_query(ddl) is None or wanted != live:
        return (
            f"it is a {live} and the DDL makes {'a ' + wanted if wanted else 'no view'}; a view's kind "
            "does not change in place: drop it and create the new one (op.drop_object, op.create_object)"
        )
    if live != "materialized view":
        return ""
    had, want = _target(info.create_query, info.database), _target(ddl, info.database)
    if had == want:
        return ""
    return f"it writes to {had or 'its inner table'}, the DDL to {want or 'an inner table'}; {_ELSEWHERE}"


@contextmanager
def scratch(rt: StepContext) -> Iterator[str]:
    """A database of this step's own for reading definitions back from the engine, dropped after."""
    where = f"k2_migrations_scratch_{rt.attempt_id}_{rt.step}"
    rt.execute(f"CREATE DATABASE IF NOT EXISTS {ident(where)}")
    try:
        yield where
    finally:
        rt.execute(f"DROP DATABASE IF EXISTS {ident(where)}")


def stored_query(rt: StepContext, where: str, query: str) -> tuple[str, list[tuple[str, str]]]:
    """``query`` as the engine stores a view's query, and its output columns (name, type).

    A plain view in the scratch database holds no rows and fires on nothing, and stores its query
    exactly as a materialized view's MODIFY QUERY does (same as_select, parentheses of a UNION dropped
    alike: measured).
    """
    rt.execute(f"CREATE OR REPLACE VIEW {qualified(where, 'wanted')} AS {query}")
    info = rt.catalog.table(where, "wanted")
    assert info is not None
    columns = [(c.name, c.type) for c in rt.catalog.columns(where, "wanted")]
    rt.execute(f"DROP VIEW IF EXISTS {qualified(where, 'wanted')}")
    return info.as_select, columns


def inner_table(rt: StepContext, info: TableInfo) -> str | None:
    """The name of a materialized view's inner table (``.inner_id.<uuid>``, or ``.inner.<name>`` on
    an Ordinary database), None for a view with a TO target."""
    found = rt.catalog.scalar(
        "SELECT name FROM system.tables WHERE database = {d:String} AND name IN"
        " (SELECT concat('.inner_id.', toString(uuid)) FROM system.tables WHERE database = {d:String}"
        " AND name = {n:String} UNION ALL SELECT concat('.inner.', {n:String}))",
        {"d": info.database, "n": info.name},
    )
    return None if found is None else str(found)


def _inner_engine_change(rt: StepContext, where: str, info: TableInfo, ddl: str) -> str:
    """How the DDL's inner engine differs from the live inner table's (both as the engine renders
    them: the DDL's clause is given to a copy of the inner table in scratch), or ""."""
    from k2_migrations.introspection.shape import compare, read_shapes

    clause = _engine_clause(ddl)
    inner = inner_table(rt, info) if info.engine == "MaterializedView" else None
    if inner is None or clause is None:
        return ""
    rt.execute(f"CREATE TABLE {qualified(where, 'engine')} AS {qualified(info.database, inner)} {clause}")
    live = read_shapes(rt.catalog, info.database, [inner])[inner]
    wanted = read_shapes(rt.catalog, where, ["engine"])["engine"]
    differences = compare(f"{info.qualified}'s inner table", wanted, live)
    return "; ".join(d.describe() for d in differences if d.aspect != "columns")


def _engine_clause(ddl: str) -> str | None:
    """``ENGINE = ... [ORDER BY ...] [SETTINGS ...]`` of a view's head, up to its query."""
    query = view_query(ddl)
    head = ddl[: ddl.find(query)] if query else ddl
    depth = 0
    engine: int | None = None
    last = 0
    for token in tokenize(head):
        if token.kind is Kind.PUNCT and token.value in "()":
            depth += 1 if token.value == "(" else -1
        elif depth == 0 and token.upper() == "ENGINE" and engine is None:
            engine = token.start
        if depth == 0 and token.upper() == "AS":
            last = token.start
    return None if engine is None else head[engine:last].strip()


def _check_fits(rt: StepContext, info: TableInfo, query: str, columns: list[tuple[str, str]]) -> None:
    """Refuse a query whose rows the view's target (or inner table) cannot take.

    The engine accepts such a MODIFY QUERY and then fails every INSERT into the source (measured:
    ``Conversion from AggregateFunction(uniq, UInt32) to AggregateFunction(uniq, UInt64) is not
    supported``), and it drops an output column the target lacks without a word. ``EXPLAIN PIPELINE``
    of the INSERT the view will make builds the same conversion without running anything.
    """
    from clickhouse_connect.driver.exceptions import DatabaseError

    target = _target(info.create_query, info.database)
    into = TableName(info.database, info.name) if target is None else target
    assert into.database is not None
    taken = {c.name for c in rt.catalog.columns(into.database, into.name)}
    missing = [name for name, _ in columns if name not in taken]
    where = f"{into}" if target is not None else f"{info.qualified}'s inner table"
    if missing:
        how = (
            f"add {'it' if len(missing) == 1 else 'them'} to {into} first (op.add_column_if_missing)"
            if target is not None
            else "MODIFY QUERY cannot add a column to an inner table: rebuild the view (op.rebuild_table) "
            "or give it a TO target"
        )
        raise GuardFailed(
            f"refusing to replace the query of {info.qualified}: {where} has no column "
            f"{', '.join(missing)}, so what the query computes there would be dropped; {how}"
        )
    names = ", ".join(ident(name) for name, _ in columns)
    try:
        rt.catalog.rows(
            f"EXPLAIN PIPELINE INSERT INTO {qualified(into.database, into.name)} ({names}) {query}"
        )
    except DatabaseError as exc:
        reason = " ".join(str(exc).split("DB::Exception: ")[-1].split())[:300]
        raise GuardFailed(
            f"refusing to replace the query of {info.qualified}: {where} cannot take its rows ({reason}); "
            "every insert into its source would fail: change the target's columns first, or the query"
        ) from exc


def live_differences(rt: StepContext, info: TableInfo, ddl: str) -> list[str]:
    """How the live object differs from the one ``ddl`` creates, each as the engine renders both.

    A view: its kind, target and inner engine, and its query as the engine stores it. Any other
    object is created in a scratch database and both are read back from system tables: columns and
    types, engine, keys, defaults, Kafka settings (see :mod:`k2_migrations.introspection.shape`); a
    dictionary by its whole definition, which names its source in string literals.
    """
    from k2_migrations.introspection.shape import HOME, compare, read_shapes

    text = ddl.strip().rstrip(";")
    with scratch(rt) as where:
        if info.engine in _KINDS:
            refusal = _head_refusal(info, text)
            if refusal:
                return [refusal]
            query = view_query(text)
            assert query is not None
            stored, _ = stored_query(rt, where, query)
            out = [_inner_engine_change(rt, where, info, text)]
            if stored != info.as_select:
                out.append(f"its query is {_squash(info.as_select, 200)}, the DDL's {_squash(stored, 200)}")
            return [d for d in out if d]
        rt.execute(rewrite_databases(text, {info.database: where}))
        built = rt.catalog.table(where, info.name)
        if built is None:
            return [f"the DDL creates no {info.name} (it creates another object)"]
        if info.engine == "Dictionary" or built.engine == "Dictionary":
            live = rewrite_databases(info.create_query, {info.database: HOME})
            wanted = rewrite_databases(built.create_query, {where: HOME})
            return (
                []
                if live == wanted
                else [f"it is {_squash(live, 200)}, the DDL makes {_squash(wanted, 200)}"]
            )
        found = read_shapes(rt.catalog, info.database, [info.name])[info.name]
        expected = read_shapes(rt.catalog, where, [info.name])[info.name]
        return [
            d.describe().removeprefix(f"{info.qualified} ") for d in compare(info.qualified, expected, found)
        ]
