"""What must come before or after something else in ``upgrade()``/``downgrade()``: guards before a
drop that may lose rows, views re-created after a table moves.

Helper functions defined in the same file are followed (a guard taken in ``upgrade()`` before
calling a helper that drops counts as taken before the drop); helpers imported from elsewhere are not.
A SQL file's statements are read in the file's order, after what the revisions running it do before
their ``op.run_sql_file`` and before what they do after it (where several run it, what all of them
do): a guard can only come from a revision, a view may be re-created later in the file.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from k2_migrations.authoring.lint.model import Rule
from k2_migrations.authoring.lint.source import (
    Hit,
    Revision,
    argument,
    is_constant,
    keyword,
    opaque,
    shown,
    shown_name,
)
from k2_migrations.authoring.lint.sql import Statement
from k2_migrations.authoring.lint.sqlfiles import SqlFile, run_by
from k2_migrations.authoring.lint.walk import Scope

_VIEW_WORDS = frozenset({"OR", "REPLACE", "MATERIALIZED", "LIVE", "WINDOW"})


@dataclass(frozen=True)
class _Event:
    """Something in a scope whose order matters: a guard, a drop, a move, a view (re-)created, a call."""

    kind: str
    node: ast.Call
    detail: str = ""


def creates_view(statement: Statement) -> bool:
    return statement.first == "CREATE" and statement.word(statement.after_words(1, _VIEW_WORDS)) == "VIEW"


def _raw_events(statement: Statement) -> Iterator[tuple[str, str]]:
    """(kind, detail): a raw DROP TABLE drops rows, a RENAME moves, a CREATE VIEW re-creates a view."""
    if (named := statement.dropped_table()) is not None:
        yield "drop", f"DROP TABLE {shown_name(named[0], named[1])} drops it with its rows"
    if statement.first == "RENAME" and statement.word(1) in ("TABLE", "DATABASE"):
        named = statement.name(4 if statement.words_at(2, "IF", "EXISTS") else 2)
        if named is not None:
            yield "move", f"RENAME {statement.word(1)} {shown_name(named[0], named[1])} renames it"
    if creates_view(statement):
        yield "view", ""


def _events(revision: Revision, scope: Scope) -> list[_Event]:
    events: list[_Event] = []
    files = {id(call.node): path for call, path in run_by(revision)}
    for call in revision.calls[id(scope)]:
        method = revision.op_method(call)
        if method is None:
            if isinstance(call.func, ast.Name) and call.func.id in revision.functions:
                events.append(_Event("call", call, call.func.id))
        elif method == "take_guards":
            events.append(_Event("guard", call))
        elif method in ("restore_definition", "adopt_objects"):
            events.append(_Event("view", call))
        elif method == "create_object":
            ddl = revision.text(argument(call, 2, "ddl"), scope)
            statements = revision.sql(ddl) if ddl is not None and not opaque(ddl) else None
            if statements is None or any(creates_view(s) for s in statements):
                events.append(_Event("view", call))
        elif method == "drop_object":
            allow_rows = keyword(call, "allow_rows")
            if allow_rows is not None and not is_constant(allow_rows, False, None):
                name = _object_name(revision, call, scope)
                events.append(
                    _Event("drop", call, f"op.drop_object({name}, allow_rows=True) drops it with its rows")
                )
        elif method == "move_table":
            to = revision.text(argument(call, 2, "to_database"), scope)
            destination = f" to {shown(to)}" if to and not opaque(to) else ""
            events.append(
                _Event(
                    "move", call, f"op.move_table moves {_object_name(revision, call, scope)}{destination}"
                )
            )
        elif method in ("execute", "execute_sql"):
            text = revision.text(argument(call, 0, "sqltext" if method == "execute" else "sql"), scope)
            for statement in (revision.sql(text) if text is not None else None) or []:
                events.extend(_Event(kind, call, detail) for kind, detail in _raw_events(statement))
        elif method == "run_sql_file" and id(call) in files:
            events.append(_Event("sql", call, str(files[id(call)].resolve())))
    return events


def _sequences(revision: Revision) -> Iterator[tuple[str, list[_Event]]]:
    """(where, events in order) for each entry: what Alembic (or module import) runs, and helpers
    nothing in the file calls; calls to same-file helpers are replaced by the helpers' events."""
    assert revision.tree is not None
    events = {id(scope): _events(revision, scope) for scope in revision.scopes}
    called = {
        id(revision.functions[e.detail]) for found in events.values() for e in found if e.kind == "call"
    }
    entries = {
        id(n)
        for n in revision.tree.body
        if isinstance(n, ast.FunctionDef) and n.name in ("upgrade", "downgrade")
    }

    def flatten(scope_id: int, active: frozenset[int]) -> list[_Event]:
        out: list[_Event] = []
        for event in events.get(scope_id, []):
            if event.kind != "call":
                out.append(event)
                continue
            target = id(revision.functions[event.detail])
            if target not in active:  # recursion: the calls already on the way here
                out.extend(flatten(target, active | {target}))
        return out

    for scope in revision.scopes:
        if id(scope) in called and id(scope) not in entries:
            continue
        where = "module-level code" if isinstance(scope, ast.Module) else f"{scope.name}()"
        yield where, flatten(id(scope), frozenset({id(scope)}))


def _ordered(revision: Revision, rule: str) -> Iterator[Hit]:
    reported: set[tuple[int, int]] = set()  # a helper may be reached from two entries: report it once
    for where, sequence in _sequences(revision):
        for index, event in enumerate(sequence):
            key = (event.node.lineno, event.node.col_offset)
            if key in reported:
                continue
            if rule == "drop-without-guard" and event.kind == "drop":
                if not any(e.kind == "guard" for e in sequence[:index]):
                    reported.add(key)
                    yield revision.hit(
                        rule, event.node, f"{event.detail}, and no op.take_guards comes before it in {where}"
                    )
            elif (
                rule == "rename-view-target"
                and event.kind == "move"
                and not any(e.kind == "view" for e in sequence[index + 1 :])
            ):
                reported.add(key)
                yield revision.hit(
                    rule,
                    event.node,
                    f"{event.detail}, but no view is re-created after it in {where}: a materialized "
                    "view's TO target and source do not follow a RENAME, so its views keep the old name",
                )


def _object_name(revision: Revision, call: ast.Call, scope: Scope) -> str:
    database = revision.text(argument(call, 0, "database"), scope)
    name = revision.text(argument(call, 1, "name"), scope)
    return shown_name(database if database and not opaque(database) else None, name or "?")


def _runs(revisions: Sequence[Revision]) -> dict[Path, tuple[bool, bool]]:
    """Per SQL file a revision runs: whether a guard comes before every ``op.run_sql_file`` of it, and
    whether a view is re-created after every one."""
    found: dict[Path, tuple[bool, bool]] = {}
    for revision in revisions:
        if revision.tree is None:
            continue
        for _, sequence in _sequences(revision):
            for index, event in enumerate(sequence):
                if event.kind != "sql":
                    continue
                guarded = any(e.kind == "guard" for e in sequence[:index])
                viewed = any(e.kind == "view" for e in sequence[index + 1 :])
                before = found.get(Path(event.detail), (True, True))
                found[Path(event.detail)] = (before[0] and guarded, before[1] and viewed)
    return found


def _in_files(revisions: Sequence[Revision], sql_files: Sequence[SqlFile], rule: str) -> Iterator[Hit]:
    runs = _runs(revisions)
    for sql_file in sql_files:
        guarded, viewed = runs.get(sql_file.path.resolve(), (False, False))
        events = [
            (at, kind, detail)
            for at, statement in sql_file.statements
            for kind, detail in _raw_events(statement)
        ]
        for index, (at, kind, detail) in enumerate(events):
            if rule == "drop-without-guard" and kind == "drop" and not guarded:
                yield sql_file.hit(
                    rule,
                    at,
                    f"{detail}, and no op.take_guards comes before the op.run_sql_file running this file",
                )
            elif (
                rule == "rename-view-target"
                and kind == "move"
                and not viewed
                and not any(later == "view" for _, later, _ in events[index + 1 :])
            ):
                yield sql_file.hit(
                    rule,
                    at,
                    f"{detail}, but no view is re-created after it (in this file or after the op.run_sql_file "
                    "running it): a materialized view's TO target and source do not follow a RENAME",
                )


def _drops(revisions: Sequence[Revision], sql_files: Sequence[SqlFile]) -> Iterator[Hit]:
    for revision in revisions:
        if revision.tree is not None:
            yield from _ordered(revision, "drop-without-guard")
    yield from _in_files(revisions, sql_files, "drop-without-guard")


def _moves(revisions: Sequence[Revision], sql_files: Sequence[SqlFile]) -> Iterator[Hit]:
    for revision in revisions:
        if revision.tree is not None:
            yield from _ordered(revision, "rename-view-target")
    yield from _in_files(revisions, sql_files, "rename-view-target")


RULES = (
    Rule(
        "drop-without-guard",
        "guards",
        "a drop that may lose rows (allow_rows=True, raw DROP TABLE) with no take_guards before it",
        "call op.take_guards(label, [tables]) before the drop and op.check_guards(label) after: a guarded "
        "table dropped by op.drop_object(..., allow_rows=True) is reported as dropped on purpose with the "
        "rows it had (not by a raw DROP TABLE: that is a loss), any other change stops the run; or move "
        "the table instead of dropping it",
        _drops,
    ),
    Rule(
        "rename-view-target",
        "guards",
        "a table moved or renamed with no view re-created after it (views do not follow a RENAME)",
        "drop the views that read or write it before the move and re-create them after it "
        "(op.restore_definition with rewrite=, or op.create_object with the view's DDL)",
        _moves,
    ),
)
