"""Reading ``ALTER TABLE``: the table it alters, its commands, and which of them are mutations.

A mutation (``UPDATE``, ``DELETE``, ``MATERIALIZE COLUMN/INDEX/PROJECTION/TTL/STATISTICS``) rewrites
parts in the background: a resumed run that issues it again repeats it, and nothing waits for it.
Only ``op.run_mutation`` waits for one and never issues it twice, so a raw one without ``done_when``
is a ``not-idempotent`` finding (see :mod:`k2_migrations.authoring.lint.idempotency`).
"""

from __future__ import annotations

from dataclasses import dataclass

from k2_migrations.authoring.lint.sql import Statement

_MATERIALIZED = frozenset({"COLUMN", "INDEX", "PROJECTION", "TTL", "STATISTICS", "STATISTIC"})


@dataclass(frozen=True)
class Alter:
    """An ``ALTER TABLE``: the table (database None when unqualified) and where each command starts."""

    database: str | None
    table: str
    commands: tuple[int, ...]


def read_alter(statement: Statement) -> Alter | None:
    """``ALTER TABLE [IF EXISTS] name [ON CLUSTER c] command, command, ...`` (or ``(command, ...)``)."""
    if not statement.words_at(0, "ALTER", "TABLE"):
        return None
    index = 4 if statement.words_at(2, "IF", "EXISTS") else 2
    named = statement.name(index)
    if named is None:
        return None
    database, table, index = named
    if statement.words_at(index, "ON", "CLUSTER"):
        index += 3
    depth = 0
    if statement.punct(index, "("):
        depth, index = 1, index + 1
    commands = [index] if index < len(statement.tokens) else []
    for position in range(index, len(statement.tokens)):
        if statement.depths[position] == depth and statement.punct(position, ","):
            commands.append(position + 1)
    return Alter(database, table, tuple(commands))


def mutation(statement: Statement) -> str | None:
    """The first mutation command of an ALTER TABLE (``UPDATE``, ``DELETE``, ``MATERIALIZE INDEX``, ...).

    A word at a command's start is the command only when what follows fits it: ``UPDATE name =``,
    ``DELETE WHERE``/``DELETE IN PARTITION``, ``MATERIALIZE`` and what it materializes. So a column
    ``update`` in an UPDATE's assignments and ``TTL ... DELETE`` are not mutations.
    """
    alter = read_alter(statement)
    if alter is None:
        return None
    for index in alter.commands:
        word = statement.word(index)
        following = statement.tokens[index + 1] if index + 1 < len(statement.tokens) else None
        if (
            word == "UPDATE"
            and following is not None
            and following.is_name
            and statement.punct(index + 2, "=")
        ):
            return "UPDATE"
        if word == "DELETE" and statement.word(index + 1) in ("WHERE", "IN"):
            return "DELETE"
        if word == "MATERIALIZE" and statement.word(index + 1) in _MATERIALIZED:
            return f"MATERIALIZE {statement.word(index + 1)}"
    return None


def command(statement: Statement, verb: str, objects: frozenset[str]) -> tuple[str, bool] | None:
    """The first ALTER command ``VERB OBJECT`` (``ADD COLUMN``, ``DROP INDEX``, ...) and whether
    ``IF [NOT] EXISTS`` guards it."""
    alter = read_alter(statement)
    if alter is None:
        return None
    for index in alter.commands:
        if statement.word(index) == verb and statement.word(index + 1) in objects:
            guarded = statement.words_at(index + 2, "IF", "EXISTS") or statement.words_at(
                index + 2, "IF", "NOT", "EXISTS"
            )
            return f"{verb} {statement.word(index + 1)}", guarded
    return None


def attaches_partition_from(statement: Statement) -> bool:
    """``ALTER TABLE t ATTACH PARTITION p FROM other``: copies the rows again on a re-run."""
    alter = read_alter(statement)
    if alter is None:
        return False
    for index in alter.commands:
        if statement.words_at(index, "ATTACH", "PARTITION"):
            return any(statement.word(i) == "FROM" for i in range(index + 2, len(statement.tokens)))
    return False
