"""A materialized view with a ``TO`` target dropped and created again to change its query.

Between the drop and the create, its source keeps receiving rows and no view sends them to the
target: they are never there (40-60 of ~900 in the run that found it; the view only sees rows
inserted after it exists). ``op.replace_view`` changes the query in place (``ALTER TABLE ... MODIFY
QUERY``), losing none. Read in one scope at a time, in the order the calls run: a drop
(``op.drop_object``, ``op.drop_objects``, a raw ``DROP VIEW/TABLE``) followed by a create of the same
name (``op.create_object``, a raw ``CREATE MATERIALIZED VIEW``) whose DDL writes ``TO`` a table.
Re-creating views somewhere else (a pipeline moved to another database, ``op.restore_definition``)
is another name, not this. Nor is a view whose every source was dropped before it in the same scope
and, if created again before the view, created as a Kafka table (an ingestion pause: a Kafka table
without views consumes nothing, its messages wait in Kafka; a dropped table receives no rows):
nothing reaches the source in between, so nothing is lost. A SQL file's statements are read the
same way, in the file's order.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from k2_migrations.authoring.lint.model import Rule
from k2_migrations.authoring.lint.source import UNKNOWN, Hit, OpCall, Revision, argument, opaque, shown_name
from k2_migrations.authoring.lint.sql import Statement
from k2_migrations.authoring.lint.sqlfiles import SqlFile
from k2_migrations.sqltext import object_kind, view_source_and_target


@dataclass(frozen=True)
class _Named:
    """An object a call or a statement drops or creates: its database (None when unknown), name and lines."""

    database: str | None
    name: str
    line: int
    last_line: int
    #: What a created view reads: (database or None, name) of each source.
    reads: tuple[tuple[str | None, str], ...] = ()
    #: A created object that is a Kafka table.
    kafka: bool = False


def _known(text: str | None) -> str | None:
    return None if text is None or opaque(text) or UNKNOWN in text else text


def _same(a: _Named, b: _Named) -> bool:
    return a.name == b.name and (a.database is None or b.database is None or a.database == b.database)


def _raw(statement: Statement, line: int, last_line: int) -> tuple[str, _Named] | None:
    """("drop", ...) for ``DROP VIEW|TABLE name``; ("create", ...) for a materialized view with TO."""
    if statement.first == "DROP" and statement.word(1) in ("VIEW", "TABLE"):
        named = statement.name(4 if statement.words_at(2, "IF", "EXISTS") else 2)
        if named is not None and _known(named[1]):
            return "drop", _Named(_known(named[0]), named[1], line, last_line)
        return None
    if (
        object_kind(statement.text) != "materialized view"
        or view_source_and_target(statement.text)[1] is None
    ):
        return None
    index = statement.after_words(1, frozenset({"OR", "REPLACE", "MATERIALIZED", "VIEW"}))
    named = statement.name(index + 3 if statement.words_at(index, "IF", "NOT", "EXISTS") else index)
    if named is None or not _known(named[1]):
        return None
    return "create", _Named(_known(named[0]), named[1], line, last_line, _reads(statement.text))


def _events(revision: Revision, call: OpCall) -> Iterator[tuple[str, _Named]]:
    node, scope = call.node, call.scope
    line, last_line = node.lineno, node.end_lineno or node.lineno
    database = _known(revision.text(argument(node, 0, "database"), scope))
    if call.method == "drop_object":
        name = _known(revision.text(argument(node, 1, "name"), scope))
        if name:
            yield "drop", _Named(database, name, line, last_line)
    elif call.method == "drop_objects":
        names = argument(node, 1, "names")
        for element in names.elts if isinstance(names, ast.List | ast.Tuple) else []:
            name = _known(revision.text(element, scope))
            if name:
                yield "drop", _Named(database, name, line, last_line)
    elif call.method == "create_object":
        name = _known(revision.text(argument(node, 1, "name"), scope))
        ddl = revision.text(argument(node, 2, "ddl"), scope)
        if name and ddl and object_kind(ddl) == "materialized view" and view_source_and_target(ddl)[1]:
            yield "create", _Named(database, name, line, last_line, _reads(ddl))
        elif name:
            kafka = ddl is not None and object_kind(ddl) == "Kafka table"
            yield "made", _Named(database, name, line, last_line, kafka=kafka)
    elif call.method in ("execute", "execute_sql"):
        text = revision.text(argument(node, 0, "sqltext" if call.method == "execute" else "sql"), scope)
        for statement in (revision.sql(text) if text is not None else None) or []:
            found = _raw(statement, line, last_line)
            if found is not None:
                yield found


def _reads(ddl: str) -> tuple[tuple[str | None, str], ...]:
    return tuple((t.database, t.name) for t in view_source_and_target(ddl)[0])


def _sources_paused(view: _Named, events: list[tuple[str, _Named]]) -> bool:
    """Whether every source of ``view`` was dropped before the view was, and not created again since
    but as a Kafka table (``events``: this scope's, in order, up to the view's create)."""
    if not view.reads:
        return False
    drop = next(i for i, (kind, d) in enumerate(events) if kind == "drop" and _same(d, view))
    for database, name in view.reads:
        source = _Named(database or view.database, name, view.line, view.last_line)
        dropped = [i for i, (kind, d) in enumerate(events[:drop]) if kind == "drop" and _same(d, source)]
        if not dropped or any(
            kind == "made" and _same(d, source) and not d.kafka for kind, d in events[dropped[0] :]
        ):
            return False
    return True


def _recreated(revisions: Sequence[Revision], sql_files: Sequence[SqlFile]) -> Iterator[Hit]:
    for revision in revisions:
        if revision.tree is None:
            continue
        by_scope: dict[int, list[tuple[str, _Named]]] = {}
        for call in revision.op_calls:
            by_scope.setdefault(id(call.scope), []).extend(_events(revision, call))
        for events in by_scope.values():
            yield from _in_order(revision.path, events)
    for sql_file in sql_files:
        found = [_raw(statement, at.line, at.last_line) for at, statement in sql_file.statements]
        yield from _in_order(sql_file.path, [e for e in found if e is not None])


def _in_order(path: Path, events: list[tuple[str, _Named]]) -> Iterator[Hit]:
    """A create of a name dropped earlier in the same scope or file, not inside an ingestion pause."""
    for index, (kind, named) in enumerate(events):
        if kind != "create":
            continue
        drop = next((d for k, d in events[:index] if k == "drop" and _same(d, named)), None)
        if drop is None or _sources_paused(named, events[:index]):
            continue
        yield Hit(
            path,
            "recreate-view",
            named.line,
            named.last_line,
            f"materialized view {shown_name(named.database, named.name)} is dropped (line {drop.line}) and created again with a "
            "TO target: rows inserted into its source in between never reach the target",
        )


RULES = (
    Rule(
        "recreate-view",
        "views",
        "a materialized view with a TO target dropped and created again (rows inserted in between are lost)",
        "change its query in place with op.replace_view(db, name, NEW_DDL) (ALTER TABLE ... MODIFY QUERY: "
        "no row lost), and put the old one back the same way in downgrade()",
        _recreated,
    ),
)
