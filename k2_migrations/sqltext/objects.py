"""What a CREATE statement makes: the kind of object, its engine, a view's sources and target."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise

from k2_migrations.sqltext.references import Statement, TableName, read_tokens
from k2_migrations.sqltext.tokens import Kind, Token, tokenize

_CREATE = {"CREATE", "ATTACH", "REPLACE"}
_KINDS = {
    "TABLE": "table",
    "VIEW": "view",
    "DICTIONARY": "dictionary",
    "DATABASE": "database",
    "FUNCTION": "function",
}
_VIEW_KINDS = {"MATERIALIZED": "materialized view", "LIVE": "live view", "WINDOW": "window view"}


def object_kind(ddl: str) -> str | None:
    """``table``, ``Kafka table``, ``view``, ``materialized view``, ``dictionary``, ... or None (no CREATE).

    A table reading Kafka is a kind of its own here: creating one starts consuming a topic.
    """
    return _kind(_first_statement(ddl))


def engine_of(ddl: str) -> str | None:
    """The engine named by the statement's own ``ENGINE [=] Name`` clause (not one inside a literal or a column)."""
    return _engine(_first_statement(ddl))


def view_source_and_target(ddl: str) -> tuple[tuple[TableName, ...], TableName | None]:
    """The tables a view's query reads (FROM and JOIN, in order, subqueries included) and its ``TO`` target.

    Names bound by WITH and table functions are not tables; a name keeps the database it was written
    with (None when unqualified).
    """
    statement = read_tokens(_first_statement(ddl))
    sources: list[TableName] = []
    target: TableName | None = None
    for ref in statement.tables:
        if ref.role == "TO" and target is None:
            target = ref.table
        elif (
            ref.role in ("FROM", "JOIN")
            and not (ref.table.database is None and ref.table.name in statement.ctes)
            and ref.table not in sources
        ):
            sources.append(ref.table)
    return tuple(sources), target


def could_consume_kafka(ddl: str, kafka_tables: Iterable[TableName]) -> bool:
    """True when ``ddl`` creates a materialized view reading one of ``kafka_tables``.

    Such a view starts consuming the topic as soon as it exists. An unqualified name on either side
    matches any database: "could" errs on the side of not creating the view.
    """
    tokens = _first_statement(ddl)
    if _kind(tokens) != "materialized view":
        return False
    sources, _ = view_source_and_target(ddl)
    kafka = list(kafka_tables)
    return any(
        source.name == table.name
        and (source.database is None or table.database is None or source.database == table.database)
        for source in sources
        for table in kafka
    )


def _first_statement(sql: str) -> list[Token]:
    tokens = tokenize(sql)
    for index, token in enumerate(tokens):
        if token.kind is Kind.PUNCT and token.value == ";":
            if index:
                return tokens[:index]
            return _first_statement(sql[token.end :])
    return tokens


def _kind(tokens: list[Token]) -> str | None:
    words = [t.upper() for t in tokens[:6]]
    if not words or words[0] not in _CREATE:
        return None
    for word in words[1:]:
        if word in _VIEW_KINDS:
            return _VIEW_KINDS[word]
        if word in _KINDS:
            kind = _KINDS[word]
            return "Kafka table" if kind == "table" and _engine(tokens) == "Kafka" else kind
    return None


def _engine(tokens: list[Token]) -> str | None:
    statement = Statement(tokens)
    top = list(statement.words(0))
    for position, (_, token) in enumerate(top):
        if token.upper() != "ENGINE":
            continue
        rest = [t for _, t in top[position + 1 : position + 3]]
        if rest and rest[0].value == "=":
            rest = rest[1:]
        if rest and rest[0].is_name:
            return rest[0].value
    return None


def view_query(ddl: str) -> str | None:
    """The query of a ``CREATE [MATERIALIZED] VIEW`` statement: its text from the ``AS`` that starts it
    (outside parentheses, followed by ``SELECT``, ``WITH`` or ``(``) to the end; None for anything else.

    Whatever precedes it — a column list, ``TO``, an inner engine with its keys and settings — is the
    view's head, and a view's query is changed without it (``ALTER TABLE ... MODIFY QUERY``); so is
    the view's ``COMMENT '...'`` after it (see :func:`view_comment`).
    """
    tokens = _first_statement(ddl)
    if _kind(tokens) not in ("view", "materialized view"):
        return None
    top = list(Statement(tokens).words(0))
    comment = _trailing_comment(top)
    end = tokens[-1].end if comment is None else comment.start
    for (_, token), (_, following) in pairwise(top):
        if token.upper() == "AS" and (following.upper() in ("SELECT", "WITH") or following.value == "("):
            text = ddl[following.start : end].strip()
            return text or None
    return None


def view_comment(ddl: str) -> str:
    """A view's ``COMMENT '...'`` clause after its query, as written (``""`` when it has none).

    ``MODIFY QUERY`` takes no comment (a syntax error on ClickHouse 26.1, measured) and keeps the
    view's; ``CREATE OR REPLACE VIEW`` sets the one it is given, none when it has none.
    """
    tokens = _first_statement(ddl)
    if _kind(tokens) not in ("view", "materialized view"):
        return ""
    comment = _trailing_comment(list(Statement(tokens).words(0)))
    return "" if comment is None else ddl[comment.start : tokens[-1].end].strip()


def _trailing_comment(top: list[tuple[int, Token]]) -> Token | None:
    """The ``COMMENT`` keyword when the statement's top level ends with ``COMMENT '<string>'``."""
    if len(top) < 2:
        return None
    (_, keyword), (_, text) = top[-2], top[-1]
    return keyword if keyword.upper() == "COMMENT" and text.kind is Kind.STRING else None
