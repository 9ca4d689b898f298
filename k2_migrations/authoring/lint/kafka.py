"""Kafka tables across revisions: the consumer group a topic is read under, and ALTERs on them.

A Kafka table's offsets live under its ``kafka_group_name``: re-created under another group, it
re-reads the topic from the start (or skips to its end). And Kafka engine tables support no ALTER.
Both compare revisions with each other, so these checks read every linted file at once: the strings
of the revisions and the statements of the SQL files (a Kafka table created in one, altered in the
other, is a finding).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from k2_migrations.authoring.lint.model import Rule
from k2_migrations.authoring.lint.mutations import read_alter
from k2_migrations.authoring.lint.source import UNKNOWN, Hit, Revision, argument, opaque, shown_name
from k2_migrations.authoring.lint.sql import Statement
from k2_migrations.authoring.lint.sqlfiles import SqlFile
from k2_migrations.sqltext import engine_of
from k2_migrations.sqltext.tokens import Kind


@dataclass(frozen=True)
class _Where:
    """Lines of a file: a revision's string or call, or a SQL file's statement."""

    path: Path
    line: int
    last_line: int

    def hit(self, rule: str, message: str, fix: str | None = None) -> Hit:
        return Hit(self.path, rule, self.line, self.last_line, message, fix)

    def seen_from(self, path: Path) -> str:
        return f"line {self.line}" if self.path == path else f"{self.path}:{self.line}"


def _in_revision(revision: Revision, node: object) -> _Where:
    line = int(getattr(node, "lineno", 1))
    return _Where(revision.path, line, int(getattr(node, "end_lineno", None) or line))


@dataclass(frozen=True)
class _KafkaTable:
    """A Kafka table's DDL found in a string or a SQL file; names and settings are None where they
    cannot be known."""

    where: _Where  # the string or statement holding its DDL
    database: str | None
    name: str | None
    topics: tuple[str, ...]
    group: str | None


def _known(value: str | None) -> str | None:
    return None if value is None or UNKNOWN in value else value


def _kafka_table(where: _Where, statement: Statement) -> _KafkaTable | None:
    """``CREATE TABLE name ... ENGINE = Kafka(broker, topics, group, ...)`` or ``SETTINGS kafka_...``."""
    index = statement.after_words(1, frozenset({"OR", "REPLACE", "TEMPORARY"}))
    if statement.first not in ("CREATE", "ATTACH") or statement.word(index) != "TABLE":
        return None
    if not any(t.kind is Kind.WORD and t.value.lower() == "kafka" for t in statement.tokens):
        return None  # cheaper than reading the engine clause, and most tables are not Kafka tables
    if (engine_of(statement.text) or "").lower() != "kafka":
        return None
    index += 4 if statement.words_at(index + 1, "IF", "NOT", "EXISTS") else 1
    named = statement.name(index)
    tokens = statement.tokens
    settings: dict[str, str] = {}
    for position in range(len(tokens) - 2):
        word, value = tokens[position], tokens[position + 2]
        if word.kind is Kind.WORD and statement.punct(position + 1, "=") and value.kind is Kind.STRING:
            settings[word.value.lower()] = value.value
    arguments: list[list[int]] = [[]]
    opening = next(
        (
            i
            for i, t in enumerate(tokens)
            if t.kind is Kind.WORD and t.value.lower() == "kafka" and statement.punct(i + 1, "(")
        ),
        None,
    )
    if opening is not None:
        depth = statement.depths[opening] + 1
        for i in range(opening + 2, len(tokens)):
            if statement.depths[i] < depth:
                break
            if statement.depths[i] == depth and statement.punct(i, ","):
                arguments.append([])
            else:
                arguments[-1].append(i)
    positional = [
        tokens[a[0]].value if len(a) == 1 and tokens[a[0]].kind is Kind.STRING else None for a in arguments
    ]
    topics = settings.get("kafka_topic_list") or (positional[1] if len(positional) > 1 else None)
    group = settings.get("kafka_group_name") or (positional[2] if len(positional) > 2 else None)
    known_topics = tuple(t.strip() for t in (topics or "").split(",") if t.strip() and UNKNOWN not in t)
    database, name = (named[0], named[1]) if named is not None else (None, None)
    return _KafkaTable(where, _known(database), _known(name), known_topics, _known(group))


def _statements(
    revisions: Sequence[Revision], sql_files: Sequence[SqlFile]
) -> Iterator[tuple[_Where, Statement]]:
    """Every statement in a revision's strings and in a SQL file, where it is written."""
    for revision in revisions:
        if revision.tree is None:
            continue
        for node, text in revision.strings:
            for statement in revision.sql(text) or []:
                yield _in_revision(revision, node), statement
    for sql_file in sql_files:
        for at, statement in sql_file.statements:
            yield _Where(sql_file.path, at.line, at.last_line), statement


def _kafka_tables(revisions: Sequence[Revision], sql_files: Sequence[SqlFile]) -> Iterator[_KafkaTable]:
    for where, statement in _statements(revisions, sql_files):
        found = _kafka_table(where, statement)
        if found is not None:
            yield found


def _display(database: str | None, name: str | None) -> str:
    return shown_name(database, name or "?")


def _groups(revisions: Sequence[Revision], sql_files: Sequence[SqlFile]) -> Iterator[Hit]:
    """The first Kafka table seen on a topic sets its group; any other group on it is a finding."""
    established: dict[str, _KafkaTable] = {}
    for table in _kafka_tables(revisions, sql_files):
        if table.group is None:
            continue
        for topic in table.topics:
            first = established.setdefault(topic, table)
            if first.group == table.group:
                continue
            yield table.where.hit(
                "kafka-group-changed",
                f"Kafka table {_display(table.database, table.name)} consumes topic '{topic}' as group "
                f"'{table.group}', but {first.where.seen_from(table.where.path)} consumes it as group "
                f"'{first.group}': "
                "a new group has no committed offsets, so it re-reads the topic from the start (or skips to its end)",
                f"keep kafka_group_name = '{first.group}' when re-creating a Kafka table on '{topic}': the "
                "offsets live under the group",
            )
            break


def _alters(
    revisions: Sequence[Revision], sql_files: Sequence[SqlFile]
) -> Iterator[tuple[_Where, str, str | None, str]]:
    """(where, how, database, table) of each ALTER TABLE in a string or a SQL file, and of each op
    call altering a table."""
    for where, statement in _statements(revisions, sql_files):
        alter = read_alter(statement)
        if alter is not None:
            yield where, "ALTER TABLE", alter.database, alter.table
    for revision in revisions:
        for call in revision.op_calls if revision.tree is not None else []:
            if call.method in ("add_column_if_missing", "drop_column_if_exists", "run_mutation"):
                table = revision.text(argument(call.node, 1, "table"), call.scope)
                if table is not None and not opaque(table):
                    database = revision.text(argument(call.node, 0, "database"), call.scope)
                    yield _in_revision(revision, call.node), f"op.{call.method}", database, table


def _alter_kafka(revisions: Sequence[Revision], sql_files: Sequence[SqlFile]) -> Iterator[Hit]:
    kafka = [t for t in _kafka_tables(revisions, sql_files) if t.name is not None]
    for where, how, database, name in _alters(revisions, sql_files):
        created = next((t for t in kafka if _same_table(t, database, name)), None)
        if created is None:
            continue
        yield where.hit(
            "alter-kafka",
            f"{how} alters {_display(database, name)}, a Kafka table (created at "
            f"{created.where.seen_from(where.path)}): Kafka engine tables support no ALTER",
        )


def _same_table(table: _KafkaTable, database: str | None, name: str) -> bool:
    if table.name != name or UNKNOWN in name:
        return False
    known = [d for d in (table.database, database) if d is not None and UNKNOWN not in d]
    return len(known) < 2 or known[0] == known[1]


RULES = (
    Rule(
        "kafka-group-changed",
        "kafka",
        "a Kafka table on a topic already consumed under another kafka_group_name",
        "keep the kafka_group_name the topic was consumed under: the offsets live under the group",
        _groups,
    ),
    Rule(
        "alter-kafka",
        "kafka",
        "ALTER TABLE on a Kafka engine table (Kafka tables have no ALTER: drop and re-create)",
        "drop the views reading it and the Kafka table, re-create it with the new definition and the "
        "same kafka_group_name, then re-create the views",
        _alter_kafka,
    ),
)
