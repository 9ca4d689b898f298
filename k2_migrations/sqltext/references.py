"""Where a statement names a database or a table, found from its tokens.

A database reference is what moves when objects move to another database: the qualifier of a table
name (``db.t``, `` `db`.`t` ``, the first part of ``db.t.column``) and a database given where
ClickHouse expects one: ``Distributed(cluster, 'db', ...)``, ``Merge('db', ...)``, ``Buffer('db', ...)``,
``remote(addr, 'db', 't')``, a dictionary's ``SOURCE(CLICKHOUSE(... DB 'db' ...))`` and the ``'db.name'``
argument of ``dictGet``/``joinGet``. Anything else is left alone: a string literal is data, ``t.1`` is a
tuple element, and a two-part name outside a table position (after FROM, JOIN, IN, TO, INTO, TABLE, VIEW,
DICTIONARY, ...) is ``table.column`` or ``column.subcolumn``, never ``database.table``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise

from k2_migrations.sqltext.tokens import Kind, Token, tokenize


@dataclass(frozen=True)
class TableName:
    database: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.database}.{self.name}" if self.database else self.name


@dataclass(frozen=True)
class TableRef:
    """A table named in a table position; ``role`` is the keyword that put it there (FROM, JOIN, TO, ...)."""

    table: TableName
    role: str
    depth: int
    database_token: Token | None


@dataclass(frozen=True)
class DatabaseRef:
    """A token naming a database: a name, a string literal holding the name, or (``prefix``) ``'db.name'``."""

    token: Token
    prefix: bool = False

    @property
    def database(self) -> str:
        return self.token.value.partition(".")[0] if self.prefix else self.token.value


@dataclass
class Statement:
    """What one statement names, read once from its tokens."""

    tokens: list[Token]
    tables: list[TableRef] = field(default_factory=list)
    databases: list[DatabaseRef] = field(default_factory=list)
    #: Names bound by ``WITH name AS (SELECT ...)``: FROM name reads no table.
    ctes: set[str] = field(default_factory=set)

    def words(self, depth: int = 0) -> Iterator[tuple[int, Token]]:
        """(index, token) of the statement's tokens at paren depth ``depth``."""
        level = 0
        for index, token in enumerate(self.tokens):
            if token.kind is Kind.PUNCT and token.value == ")":
                level -= 1
            if level == depth:
                yield index, token
            if token.kind is Kind.PUNCT and token.value == "(":
                level += 1


# Keywords after which a name is a table (FROM, JOIN and IN also need a query around them, not a call).
_TABLE_KEYWORDS = {"TABLE", "TABLES", "VIEW", "DICTIONARY", "INTO", "EXISTS", "FROM", "JOIN", "IN"}
_QUERY_ONLY = {"FROM", "JOIN"}
_CLAUSES = {"SELECT", "FROM", "JOIN", "ARRAY", "ON", "USING", "WHERE", "PREWHERE", "GROUP", "HAVING", "ORDER"}
_CLAUSES |= {"LIMIT", "SETTINGS", "UNION", "WINDOW", "QUALIFY", "FORMAT"}
# Statements whose comma- or AND-separated lists name tables (RENAME TABLE a TO b, c TO d; EXCHANGE a AND b).
_LIST_STATEMENTS = {"RENAME", "EXCHANGE", "DROP", "DETACH", "ATTACH", "TRUNCATE", "OPTIMIZE"}
# Engines and table functions taking a database as a plain argument, by lower-cased name: its position.
_DATABASE_ARGUMENT = {
    "distributed": 1,
    "merge": 0,
    "buffer": 0,
    "remote": 1,
    "remotesecure": 1,
    "cluster": 1,
    "clusterallreplicas": 1,
}
# Table functions whose argument can be a ``db.table`` name.
_TABLE_ARGUMENT = {"remote", "remotesecure", "cluster", "clusterallreplicas"}
_NAME_IN_STRING = ("dictget", "dicthas", "dictisin", "joinget")
#: The punctuation that shapes a statement: calls, subqueries, argument lists.
_STRUCTURE = frozenset({"(", ")", ","})


@dataclass
class _Frame:
    """One pair of parentheses: a call (``function`` is its lower-cased name) or a subquery."""

    function: str | None
    subquery: bool
    #: The last clause keyword seen directly inside: a comma after FROM separates tables.
    clause: str = ""
    arguments: list[list[int]] = field(default_factory=lambda: [[]])


def read_statement(sql: str) -> Statement:
    """The table and database references of ``sql`` (one statement, or a bare ``db.table`` name)."""
    return read_tokens(tokenize(sql))


def read_tokens(tokens: list[Token]) -> Statement:
    statement = Statement(tokens)
    reader = _Reader(statement)
    reader.run()
    return statement


class _Reader:
    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self.tokens = statement.tokens
        self.frames: list[_Frame] = [_Frame(None, True)]
        # No tokens: nothing reads `first` (equivalent mutants).
        first = self.tokens[0].upper() if self.tokens else ""  # pragma: no mutate
        self.first = first
        self.seen_select = False  # pragma: no mutate (None is as false)

    def run(self) -> None:
        tokens = self.tokens
        if self._whole_text_is_name():
            self._take_name(0, "NAME")
            return
        index = 0  # pragma: no mutate (the first token is a keyword: starting at 1 reads the same)
        while index < len(tokens):
            token = tokens[index]
            frame = self.frames[-1]
            if token.kind is Kind.PUNCT and token.value in _STRUCTURE:
                self._punct(index, token)
                index += 1
                continue
            frame.arguments[-1].append(index)
            # Only TO after a query is not a table (WITH FILL ... TO), and a query has a SELECT:
            # either word alone marks it (equivalent mutants).
            if token.upper() in ("SELECT", "WITH"):  # pragma: no mutate
                self.seen_select = True  # pragma: no mutate
            if token.upper() in _CLAUSES:
                frame.clause = token.upper()
            if token.is_name:
                index = self._name_at(index)
                continue
            index += 1

    def _whole_text_is_name(self) -> bool:
        parts = self._name_parts(0)
        # A statement never starts with a two-part name; parts[1] is parts[-1] (equivalent mutants).
        return len(parts) == 2 and parts[-1] == len(self.tokens) - 1  # pragma: no mutate

    def _punct(self, index: int, token: Token) -> None:
        tokens = self.tokens
        if token.value == "(":
            # At a statement's ends the bounds differ only for unbalanced text or a leading `(` with a
            # special function last: equivalent mutants for what ClickHouse accepts.
            before = tokens[index - 1] if index > 0 else None  # pragma: no mutate
            after = tokens[index + 1] if index + 1 < len(tokens) else None  # pragma: no mutate
            subquery = after is not None and after.upper() in ("SELECT", "WITH")
            # A token that is no name (`,`, a keyword) never spells a function read below (equivalent).
            function = before.value.lower() if before and before.is_name else None  # pragma: no mutate
            self.frames[-1].arguments[-1].append(index)
            self.frames.append(_Frame(function, subquery))
        elif token.value == ")":
            # Only an unbalanced `)` reaches the root frame (`>=`: an equivalent mutant).
            if len(self.frames) > 1:  # pragma: no mutate
                self._close(self.frames.pop())
            self.frames[-1].arguments[-1].append(index)
        else:
            self.frames[-1].arguments.append([])

    def _close(self, frame: _Frame) -> None:
        """Database arguments of an engine, a table function, dictGet, or a dictionary's source."""
        function = frame.function or ""  # pragma: no mutate (no function read below is named otherwise)
        arguments = [[self.tokens[i] for i in argument] for argument in frame.arguments]
        position = _DATABASE_ARGUMENT.get(function)
        if position is not None and len(arguments) > position + 1:
            argument = arguments[position]
            if len(argument) == 1 and argument[0].kind in (Kind.STRING, Kind.WORD, Kind.QUOTED):
                self.statement.databases.append(DatabaseRef(argument[0]))
        if function.startswith(_NAME_IN_STRING) and arguments[0]:
            argument = arguments[0]
            if len(argument) == 1 and argument[0].kind is Kind.STRING and "." in argument[0].value:
                self.statement.databases.append(DatabaseRef(argument[0], prefix=True))
        # SOURCE(...) is at depth 1 of CREATE DICTIONARY: frames[1] is frames[-1] (equivalent).
        if function == "clickhouse" and self.frames[-1].function == "source":  # pragma: no mutate
            flat = [t for argument in arguments for t in argument]
            for keyword, value in pairwise(flat):
                if keyword.upper() == "DB" and value.kind in (Kind.STRING, Kind.WORD, Kind.QUOTED):
                    self.statement.databases.append(DatabaseRef(value))

    def _name_parts(self, index: int) -> list[int]:
        """Indexes of the parts of the dotted name starting at ``index`` (a ``.*`` ends it)."""
        tokens = self.tokens
        parts = [index]
        while (
            parts[-1] + 2 < len(tokens)  # pragma: no mutate (`<=` differs only for text ending in `name.`)
            and tokens[parts[-1] + 1].value == "."
            and tokens[parts[-1] + 1].kind is Kind.PUNCT
            and (tokens[parts[-1] + 2].is_name or tokens[parts[-1] + 2].value == "*")
        ):
            parts.append(parts[-1] + 2)
        return parts

    def _name_at(self, index: int) -> int:
        """Read the name starting at ``index``; the index after it."""
        tokens = self.tokens
        parts = self._name_parts(index)
        after = parts[-1] + 1
        frame = self.frames[-1]
        # A dotted name's argument is more than one token either way (equivalent mutants).
        frame.arguments[-1].extend(range(index + 1, after))  # pragma: no mutate
        following = tokens[after] if after < len(tokens) else None
        if (
            len(parts) == 1
            and following is not None
            and following.upper() == "AS"
            and after + 2 < len(tokens)  # pragma: no mutate (bounds differ only for `WITH x AS (` at the end)
            and tokens[after + 1].value == "("
            and tokens[after + 2].upper() in ("SELECT", "WITH")
        ):
            self.statement.ctes.add(tokens[index].value)
        role = self._table_role(index, len(parts), following)
        if role is not None:
            self._take_name(index, role)
        elif len(parts) >= 3:
            # db.table.column: the first part names a database.
            self.statement.databases.append(DatabaseRef(tokens[parts[0]]))
        return after

    def _take_name(self, index: int, role: str) -> None:
        parts = self._name_parts(index)
        tokens = self.tokens
        name = tokens[parts[-1]]
        database = tokens[parts[-2]] if len(parts) >= 2 else None
        if name.value == "*":  # pragma: no mutate (`db.*` in a table position is not SQL ClickHouse reads)
            return
        if database is not None:
            self.statement.databases.append(DatabaseRef(database))
        self.statement.tables.append(
            TableRef(
                TableName(database.value if database else None, name.value),
                role,
                len(self.frames) - 1,
                database,
            )
        )

    def _table_role(self, index: int, parts: int, following: Token | None) -> str | None:
        """The keyword making the name at ``index`` a table name, or None where it is not one."""
        tokens = self.tokens
        frame = self.frames[-1]
        # The first token is a keyword, never a table: its bound is equivalent either way.
        previous = tokens[index - 1] if index > 0 else None  # pragma: no mutate
        if previous is None or parts > 2:  # pragma: no mutate (no table has a four-part name)
            return None
        keyword = previous.upper()
        call = following is not None and following.value == "(" and parts == 1
        if previous.value == "," or (keyword == "AND" and self.first == "EXCHANGE"):
            if len(self.frames) == 1 and self.first in _LIST_STATEMENTS:
                return "LIST"
            if frame.clause == "FROM" and frame.subquery and not call:
                return "FROM"
            if frame.function in _TABLE_ARGUMENT and parts == 2:
                return "ARGUMENT"
            return None
        if keyword in _TABLE_KEYWORDS:
            if call or (keyword in _QUERY_ONLY and not frame.subquery):
                return None
            # ARRAY JOIN never starts a statement: the name is past index 2 (equivalent bounds).
            if keyword == "JOIN" and index >= 2 and tokens[index - 2].upper() == "ARRAY":  # pragma: no mutate
                return None
            return keyword
        if keyword == "TO" and len(self.frames) == 1 and not self.seen_select and self.first != "ALTER":
            # Not ``TTL ... TO DISK 'name'``.
            return None if following is not None and following.kind is Kind.STRING else "TO"
        if keyword == "AS" and parts == 2:
            return "AS"
        return None
