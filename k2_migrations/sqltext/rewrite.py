"""Rewriting database references in place, so a re-created object differs from its source only there."""

from __future__ import annotations

import re

from k2_migrations.sqltext.references import DatabaseRef, read_tokens
from k2_migrations.sqltext.tokens import Kind, Token, tokenize

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def rewrite_databases(sql: str, mapping: dict[str, str]) -> str:
    """``sql`` with each database reference in ``mapping`` replaced, every other byte unchanged.

    A materialized view's source and ``TO`` target do not follow a RENAME, so moving a pipeline means
    re-creating each view with its database references changed and nothing else changed. The text is
    never regenerated from a parse tree: only the tokens naming a database are replaced, at their
    offsets, in the quoting the author used (see :mod:`k2_migrations.sqltext.references` for what counts).
    """
    # A shortcut only (mutmut: `and` is equivalent, the loop below then changes nothing).
    if not mapping or not sql.strip():  # pragma: no mutate
        return sql
    replacements: dict[int, tuple[Token, str]] = {}
    for statement in _statement_tokens(tokenize(sql)):
        for ref in read_tokens(statement).databases:
            new = mapping.get(ref.database)
            if new is not None and new != ref.database:
                replacements[ref.token.start] = (ref.token, _render(sql, ref, new))
    out: list[str] = []
    position = 0  # pragma: no mutate (None slices alike: equivalent)
    for start in sorted(replacements):
        token, text = replacements[start]
        out.append(sql[position:start])
        out.append(text)
        position = token.end
    out.append(sql[position:])
    return "".join(out)


def _statement_tokens(tokens: list[Token]) -> list[list[Token]]:
    statements: list[list[Token]] = [[]]
    for token in tokens:
        if token.kind is Kind.PUNCT and token.value == ";":
            statements.append([])
        else:
            statements[-1].append(token)
    return [s for s in statements if s]


def _render(sql: str, ref: DatabaseRef, database: str) -> str:
    """The new database in the quoting of the token it replaces."""
    token = ref.token
    if token.kind is Kind.STRING:
        # Without a prefix the token's value is the database: both branches agree (equivalent mutant).
        value = database + token.value[len(ref.database) :] if ref.prefix else database  # pragma: no mutate
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    quote = sql[token.start] if token.kind is Kind.QUOTED else ""
    if quote == "" and _PLAIN.fullmatch(database):
        return database
    quote = quote or "`"
    return quote + database.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote
