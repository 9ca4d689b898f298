"""Raw SQL that renames or drops what views may read, past the operations that look for them first.

``op.rename_column``, ``op.drop_column_if_exists``, ``op.drop_object`` and ``op.move_table`` read
the views that read or write the table (:mod:`k2_migrations.introspection.dependencies`) and refuse
while one would break. The same change written as SQL (``op.execute_sql``, Alembic's ``op.execute``,
a ``.sql`` file) checks nothing: the views keep the old name and fail at their next insert.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from k2_migrations.authoring.lint.model import Rule
from k2_migrations.authoring.lint.mutations import read_alter
from k2_migrations.authoring.lint.source import Hit, Revision, argument, shown_name
from k2_migrations.authoring.lint.sql import Statement
from k2_migrations.authoring.lint.sqlfiles import SqlFile

#: The ALTER commands an operation checks dependents for, and that operation.
_COMMANDS = {
    ("RENAME", "COLUMN"): "op.rename_column(db, table, old, new)",
    ("DROP", "COLUMN"): "op.drop_column_if_exists(db, table, column)",
}


def unchecked(statement: Statement) -> tuple[str, str] | None:
    """(what the statement does, the operation to use instead) for a raw rename or drop of a table or
    column, else None."""
    if (named := statement.dropped_table()) is not None:
        return f"DROP TABLE {shown_name(named[0], named[1])}", "op.drop_object(db, name)"
    if statement.first == "RENAME" and statement.word(1) == "TABLE":
        named = statement.name(4 if statement.words_at(2, "IF", "EXISTS") else 2)
        if named is not None:
            return f"RENAME TABLE {shown_name(named[0], named[1])}", "op.move_table(db, name, to_db)"
    alter = read_alter(statement)
    if alter is None:
        return None
    for start in alter.commands:
        for words, operation in _COMMANDS.items():
            if statement.words_at(start, *words):
                return f"ALTER TABLE {shown_name(alter.database, alter.table)} {' '.join(words)}", operation
    return None


def _message(what: str) -> str:
    return (
        f"{what} in raw SQL: nothing checks the views that read or write it first, so they break at "
        "their next insert (or keep the old name)"
    )


def _fix(operation: str) -> str:
    return (
        f"use {operation}: it refuses while a view depends on it (the drops and renames take "
        "dependents='handled' where the revision drops and re-creates those views itself)"
    )


def _raw(revisions: Sequence[Revision], sql_files: Sequence[SqlFile]) -> Iterator[Hit]:
    for revision in revisions:
        for call in revision.op_calls if revision.tree is not None else []:
            if call.method not in ("execute", "execute_sql"):
                continue
            text = revision.text(
                argument(call.node, 0, "sqltext" if call.method == "execute" else "sql"), call.scope
            )
            for statement in (revision.sql(text) if text is not None else None) or []:
                found = unchecked(statement)
                if found is not None:
                    yield revision.hit("unchecked-dependents", call.node, _message(found[0]), _fix(found[1]))
    for sql_file in sql_files:
        for at, statement in sql_file.statements:
            found = unchecked(statement)
            if found is not None:
                yield sql_file.hit("unchecked-dependents", at, _message(found[0]), _fix(found[1]))


RULES = (
    Rule(
        "unchecked-dependents",
        "dependents",
        "a raw RENAME/DROP of a table or column (DROP TABLE, RENAME TABLE, ALTER TABLE ... RENAME/DROP COLUMN) "
        "that skips the check of the views depending on it",
        "use the operation that checks dependents first: op.drop_object, op.move_table, op.rename_column, "
        "op.drop_column_if_exists",
        _raw,
    ),
)
