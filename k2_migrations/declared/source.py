"""Reading a declared schema: the CREATE statements of a folder of ``.sql`` files and of a MetaData.

A declared schema is what the databases should hold, written as CREATE statements in any order and
spread over any files (``schema = schema/`` in ``[k2_migrate]``, one folder or several and, as
``package.module:attribute``, a SQLAlchemy ``MetaData`` of clickhouse-sqlalchemy tables). Each
statement keeps where it came from (``file:line``), so whatever refuses it — this module or the
engine — names the place to fix. Refused here, before any engine sees them: a statement that is not
a CREATE, one object declared twice, and ``POPULATE`` (it fills a view from its source at creation,
which a declared schema must never do). An object named without its database is in ``default``, as
the engine would create it.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

from k2_migrations.errors import UsageError
from k2_migrations.sqltext.tokens import Kind, Token, statement_spans, tokenize

#: Words between CREATE and the object's name.
_HEAD_WORDS = frozenset(
    {
        "OR",
        "REPLACE",
        "TEMPORARY",
        "TABLE",
        "VIEW",
        "MATERIALIZED",
        "LIVE",
        "WINDOW",
        "DICTIONARY",
        "DATABASE",
    }
)
_KIND_WORDS = frozenset({"TABLE", "VIEW", "DICTIONARY", "DATABASE"})
_IF_NOT_EXISTS = ("IF", "NOT", "EXISTS")
#: Where an object declared without its database is, on the target as in the scratch engine.
DEFAULT_DATABASE = "default"


@dataclass(frozen=True)
class Declared:
    """One CREATE statement of the declared schema."""

    sql: str
    #: Where it was declared: ``path:line``, or ``module:attribute table db.name``.
    origin: str
    database: str
    #: The object's name; empty for ``CREATE DATABASE``.
    name: str

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.name}" if self.name else self.database


class DeclaredSchemaError(UsageError):
    """Statements of the declared schema that cannot be used, each ``origin: reason`` (exit 2)."""

    def __init__(self, refusals: list[str]) -> None:
        more = f" (and {len(refusals) - 1} more, each above)" if len(refusals) > 1 else ""
        super().__init__(f"the declared schema cannot be used: {refusals[0]}{more}")
        self.refusals = refusals


def load_sources(entries: list[str], base: Path) -> list[Declared]:
    """The statements of every source: a folder (relative to ``base``) or ``package.module:attribute``."""
    statements: list[Declared] = []
    refusals: list[str] = []
    for entry in entries:
        if _is_reference(entry) and not (base / entry).exists():
            pieces = metadata_statements(entry, base)
        else:
            pieces = folder_statements(base / entry)
        for origin, sql in pieces:
            try:
                statements.append(declare(sql, origin))
            except UsageError as exc:
                refusals.append(f"{origin}: {exc.message}")
    seen: dict[str, str] = {}
    for statement in statements:
        first = seen.setdefault(statement.qualified, statement.origin)
        if first != statement.origin:
            refusals.append(f"{statement.origin}: {statement.qualified} is declared already, at {first}")
    if refusals:
        raise DeclaredSchemaError(refusals)
    return statements


def _is_reference(entry: str) -> bool:
    module, colon, attribute = entry.partition(":")
    return bool(colon) and all(p.isidentifier() for p in [*module.split("."), attribute])


def folder_statements(folder: Path) -> list[tuple[str, str]]:
    """``(path:line, statement)`` for each statement of each ``*.sql`` file under ``folder``, by path."""
    if not folder.is_dir():
        raise UsageError(
            f"no declared schema at {folder}: create the folder with .sql files of CREATE statements, "
            "or set schema in [k2_migrate] (K2_MIGRATE_SCHEMA)"
        )
    out: list[tuple[str, str]] = []
    for path in sorted(folder.rglob("*.sql")):
        text = path.read_text(encoding="utf-8")
        try:
            spans = statement_spans(text)
        except UsageError as exc:
            raise UsageError(f"{path}: {exc.message}") from None
        out.extend(
            (f"{path}:{text.count(chr(10), 0, start) + 1}", text[start:end])
            for start, end in ((span.start, span.end) for span in spans)
        )
    return out


def metadata_statements(reference: str, base: Path) -> list[tuple[str, str]]:
    """``CREATE TABLE`` of each table of the ``MetaData`` named ``package.module:attribute``.

    Imported with the project's folder (``base``) first on ``sys.path``, as Alembic's
    ``prepend_sys_path`` would; each table's ``schema`` is its database.
    """
    from sqlalchemy import MetaData

    from k2_migrations.sqltext.ddl import render_ddl

    module_name, _, attribute = reference.partition(":")
    sys.path.insert(0, str(base))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name} for the declared schema {reference}: {exc}") from None
    finally:
        sys.path.remove(str(base))
    metadata = getattr(module, attribute, None)
    if not isinstance(metadata, MetaData):
        raise UsageError(
            f"{reference} is not a SQLAlchemy MetaData ({type(metadata).__name__}); "
            "name the MetaData holding the tables, package.module:attribute"
        )
    return [(f"{reference} table {table.fullname}", render_ddl(table)) for table in metadata.sorted_tables]


def declare(sql: str, origin: str) -> Declared:
    """One statement as a :class:`Declared`, or a ``UsageError`` saying why it cannot be declared."""
    tokens = tokenize(sql)
    words = [t.upper() for t in tokens]
    if not words or words[0] != "CREATE":
        found = tokens[0].value if tokens else "nothing"
        raise UsageError(f"a declared schema holds CREATE statements only, found {found}")
    if _populates(tokens):
        raise UsageError(
            "POPULATE is refused: a declared view must not copy rows when created; "
            "backfill with INSERT ... SELECT in a revision"
        )
    index = 1
    while index < len(tokens) and words[index] in _HEAD_WORDS:
        index += 1
    if not _KIND_WORDS & set(words[1:index]):
        found = " ".join(t.value for t in tokens[: index + 1])
        raise UsageError(f"{found} is not part of a declared schema: tables, views, dictionaries, databases")
    if tuple(words[index : index + 3]) == _IF_NOT_EXISTS:
        index += 3
    name = _name_at(tokens, index)
    if "DATABASE" in words[:index]:
        if len(name) != 1:
            raise UsageError("CREATE DATABASE names one database")
        return Declared(sql, origin, name[0], "")
    if len(name) == 1:  # as the engine reads it: in the current database, the default one
        return Declared(sql, origin, DEFAULT_DATABASE, name[0])
    if len(name) != 2:
        raise UsageError("no object name after CREATE; write CREATE TABLE database.name ...")
    return Declared(sql, origin, name[0], name[1])


def _populates(tokens: list[Token]) -> bool:
    """Whether a materialized view's header (before its top-level ``AS``) says ``POPULATE``."""
    depth = 0
    for token in tokens:
        if token.kind is Kind.PUNCT and token.value in "()":
            depth += 1 if token.value == "(" else -1
        elif depth == 0 and token.upper() == "AS":
            return False
        elif depth == 0 and token.upper() == "POPULATE":
            return True
    return False


def _name_at(tokens: list[Token], index: int) -> list[str]:
    """The dotted name starting at ``tokens[index]``: its parts."""
    parts: list[str] = []
    while index < len(tokens) and tokens[index].is_name:
        parts.append(tokens[index].value)
        if (
            index + 1 < len(tokens)
            and tokens[index + 1].value == "."
            and tokens[index + 1].kind is Kind.PUNCT
        ):
            index += 2
        else:
            break
    return parts
