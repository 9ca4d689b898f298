"""Raw SQL that a resumed run cannot repeat safely: ``not-idempotent``.

A run that dies mid-revision is resumed by running the revision again; each ``op`` operation checks
the live state first, raw SQL does not. ``op.execute_sql`` is a journaled step that ``done_when=`` (a
query returning 1 once the statement has happened) makes skippable, so a raw statement needs either
that or its own guard clause (``IF [NOT] EXISTS``). Alembic's ``op.execute`` is neither: any DDL or
DML through it is a finding.
"""

from __future__ import annotations

from collections.abc import Iterator

from k2_migrations.authoring.lint.model import Rule, each_revision
from k2_migrations.authoring.lint.mutations import attaches_partition_from, command, mutation
from k2_migrations.authoring.lint.source import Hit, Revision, argument, is_constant, keyword
from k2_migrations.authoring.lint.sql import Statement

DDL_DML = frozenset(
    {
        "CREATE",
        "ALTER",
        "DROP",
        "INSERT",
        "RENAME",
        "EXCHANGE",
        "TRUNCATE",
        "ATTACH",
        "DETACH",
        "DELETE",
        "UPDATE",
        "UNDROP",
    }
)
_AGAIN = "when a resumed run executes it again"
_DONE_WHEN = "give op.execute_sql done_when= (a query returning 1 once this has happened)"
_RUN_MUTATION = "op.run_mutation(database, table, command, done_when=...)"
_PARTS = frozenset({"COLUMN", "INDEX", "PROJECTION", "CONSTRAINT", "STATISTICS", "STATISTIC"})
_OPERATIONS = {"ADD COLUMN": "op.add_column_if_missing", "DROP COLUMN": "op.drop_column_if_exists"}


def problem(statement: Statement) -> tuple[str, str] | None:
    """(what goes wrong on a re-run, what to do) for a statement run by execute_sql without done_when."""
    word = statement.first
    if word in ("CREATE", "ATTACH", "DROP", "DETACH"):
        creates = word in ("CREATE", "ATTACH")
        needed = "IF NOT EXISTS" if creates else "IF EXISTS"
        if statement.has_if_exists(not_exists=creates) or statement.words_at(0, "CREATE", "OR", "REPLACE"):
            return None
        operation = operation_for(statement)
        fix = f"add {needed}, or {_DONE_WHEN}" if operation is None else f"use {operation}, or add {needed}"
        return f"{word} without {needed} fails {_AGAIN}", fix
    if word == "INSERT":
        return f"INSERT inserts its rows a second time {_AGAIN}", _DONE_WHEN
    if word == "RENAME":
        operation = operation_for(statement)
        fix = _DONE_WHEN if operation is None else f"use {operation}, or {_DONE_WHEN}"
        return f"RENAME fails {_AGAIN} (the old name is gone)", fix
    if word == "EXCHANGE":
        return f"EXCHANGE swaps the tables back {_AGAIN}", _DONE_WHEN
    if word != "ALTER":
        return None
    changed = mutation(statement)
    if changed is not None:
        what = "UPDATE/DELETE" if changed in ("UPDATE", "DELETE") else changed
        return (
            f"ALTER ... {what} is a mutation: a resumed run issues it again, and nothing waits for it",
            f"use {_RUN_MUTATION}: it waits with progress and never issues a mutation twice",
        )
    for verb, needed in (("ADD", "IF NOT EXISTS"), ("DROP", "IF EXISTS"), ("RENAME", "IF EXISTS")):
        found = command(statement, verb, frozenset({"COLUMN"}) if verb == "RENAME" else _PARTS)
        if found is not None and not found[1]:
            clause = found[0]
            operation = _OPERATIONS.get(clause)
            fix = f"add {needed}" if operation is None else f"use {operation}, or add {needed}"
            return f"ALTER ... {clause} without {needed} fails {_AGAIN}", fix
    if attaches_partition_from(statement):
        return (
            f"ATTACH PARTITION ... FROM attaches the rows a second time {_AGAIN}",
            f"use op.move_table to move a table, or {_DONE_WHEN}",
        )
    return None


def operation_for(statement: Statement) -> str | None:
    """The idempotent operation that does what a raw statement does, if there is one."""
    word = statement.first
    kinds = frozenset({"OR", "REPLACE", "TEMPORARY", "MATERIALIZED", "LIVE", "WINDOW"})
    kind = statement.word(statement.after_words(1, kinds))
    if word in ("CREATE", "DROP") and kind == "DATABASE":
        return "op.create_database" if word == "CREATE" else "op.drop_database"
    if word == "CREATE" and kind in ("TABLE", "VIEW"):
        return "op.create_object"
    if word == "DROP" and kind in ("TABLE", "VIEW", "DICTIONARY"):
        return "op.drop_object"
    if word == "RENAME" and statement.word(1) == "TABLE":
        return "op.move_table (to move a table to another database)"
    if word == "ALTER":
        if mutation(statement) is not None:
            return _RUN_MUTATION
        for verb in ("ADD", "DROP"):
            found = command(statement, verb, frozenset({"COLUMN"}))
            if found is not None:
                return _OPERATIONS[found[0]]
    return None


def _not_idempotent(revision: Revision) -> Iterator[Hit]:
    for call in revision.op_calls:
        if call.method not in ("execute", "execute_sql"):
            continue
        name = "sqltext" if call.method == "execute" else "sql"
        text = revision.text(argument(call.node, 0, name), call.scope)
        statements = revision.sql(text) if text is not None else None
        if not statements:
            continue
        if call.method == "execute":
            changing = next((s for s in statements if s.first in DDL_DML), None)
            if changing is not None:
                yield revision.hit(
                    "not-idempotent",
                    call.node,
                    f"op.execute runs {changing.first} through Alembic: not a k2 step (not journaled, "
                    "not shown by plan) and never idempotent, so a resumed run repeats it",
                    _instead_of_execute(changing),
                )
            continue
        done_when = keyword(call.node, "done_when")
        if done_when is not None and not is_constant(done_when, None):
            continue
        found = next((p for p in map(problem, statements) if p is not None), None)
        if found is not None:
            yield revision.hit("not-idempotent", call.node, found[0], found[1])


def _instead_of_execute(statement: Statement) -> str:
    operation = operation_for(statement)
    if operation is not None:
        return f"use {operation}: an idempotent, journaled step"
    return (
        "use op.execute_sql(sql, done_when=...): a journaled step, skipped on a re-run once done_when "
        "(a query returning 1 once it has happened) says so"
    )


RULES = (
    Rule(
        "not-idempotent",
        "idempotency",
        "raw SQL that fails or repeats itself when a resumed run executes it again",
        "use the op operation doing the same, add IF [NOT] EXISTS, or give op.execute_sql done_when=",
        each_revision(_not_idempotent),
    ),
)
