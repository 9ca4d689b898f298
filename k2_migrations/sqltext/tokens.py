"""ClickHouse SQL as tokens with their exact place in the original text.

Tokenizing is sqlglot's ClickHouse tokenizer: it knows the three comment styles (``--``, ``#``/``#!``,
nested ``/* */``), both string escapes (``\\'`` and ``''``), backquoted and double-quoted identifiers and
``$$`` / ``$tag$`` heredocs. Comments do not become tokens, so whatever reads the tokens never sees
them, and every token keeps its start and end offsets, so a rewrite can replace a few tokens and leave
every other byte of the author's text as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from k2_migrations.errors import UsageError

if TYPE_CHECKING:
    from sqlglot.tokenizer_core import Token as SqlglotToken


class Kind(Enum):
    WORD = "word"  # a bare identifier or keyword
    QUOTED = "quoted"  # a `backquoted` or "double-quoted" identifier
    STRING = "string"  # a string literal or heredoc
    NUMBER = "number"
    PUNCT = "punct"


@dataclass(frozen=True)
class Token:
    kind: Kind
    #: The name for WORD and QUOTED (unquoted, unescaped), the value for STRING, the text otherwise.
    value: str
    start: int
    end: int  # exclusive

    def upper(self) -> str:
        """The keyword this token could be; never a keyword when it is quoted or a literal."""
        return self.value.upper() if self.kind is Kind.WORD else ""

    @property
    def is_name(self) -> bool:
        return self.kind in (Kind.WORD, Kind.QUOTED)


_WORD = re.compile(r"[^\W\d]\w*|\d+[^\W\d]\w*")
_SPLIT_WORDS = re.compile(r"\S+")


@dataclass(frozen=True)
class _Sqlglot:
    """What tokenizing needs of sqlglot, loaded on first use (:func:`_sqlglot`)."""

    tokenizer: Any
    error: type[Exception]
    strings: frozenset[Any]
    numbers: frozenset[Any]
    identifier: Any


@cache
def _sqlglot() -> _Sqlglot:
    """sqlglot's ClickHouse tokenizer, imported on first use: a command that reads no SQL text
    (``current``, an upgrade with nothing to do) does not pay for the import (~80 ms)."""
    from sqlglot.dialects.clickhouse import ClickHouse
    from sqlglot.errors import TokenError
    from sqlglot.tokenizer_core import TokenType

    class Tokenizer(ClickHouse.Tokenizer):
        # sqlglot reads the rest of a statement after a "command" keyword (RENAME, ATTACH, EXCHANGE,
        # OPTIMIZE, SHOW, ...) as one opaque string, with wrong offsets; ClickHouse's are all plain tokens.
        COMMANDS: ClassVar[set[TokenType]] = set()

    return _Sqlglot(
        tokenizer=Tokenizer,
        error=TokenError,
        strings=frozenset(
            {TokenType.STRING, TokenType.HEREDOC_STRING, TokenType.RAW_STRING, TokenType.NATIONAL_STRING}
        ),
        numbers=frozenset({TokenType.NUMBER, TokenType.HEX_STRING, TokenType.BIT_STRING}),
        identifier=TokenType.IDENTIFIER,
    )


def tokenize(sql: str) -> list[Token]:
    """The tokens of ``sql``; a ``UsageError`` for text no ClickHouse could read (an open quote or comment)."""
    sqlglot = _sqlglot()
    try:
        raw = sqlglot.tokenizer().tokenize(sql)
    except sqlglot.error as error:
        raise UsageError(
            f"cannot read this SQL (an unterminated string, identifier or comment?): {_squash(sql)}"
        ) from error
    tokens: list[Token] = []
    for token in raw:
        for piece in _convert(sql, token):
            previous = tokens[-1] if tokens else None
            if (
                previous is not None
                and previous.kind is Kind.NUMBER
                and previous.end == piece.start
                and piece.kind is Kind.WORD
                and previous.value.isdigit()
            ):
                # ClickHouse reads digits followed by word characters as one identifier (`02015_db`);
                # sqlglot splits it into a number and a word.
                tokens[-1] = Token(Kind.WORD, sql[previous.start : piece.end], previous.start, piece.end)
            else:
                tokens.append(piece)
    return tokens


def _convert(sql: str, token: SqlglotToken) -> list[Token]:
    sqlglot = _sqlglot()
    start, end = token.start, token.end + 1
    text = sql[start:end]
    if token.token_type in sqlglot.strings:
        return [Token(Kind.STRING, token.text, start, end)]
    if token.token_type in sqlglot.numbers:
        return [Token(Kind.NUMBER, text, start, end)]
    if token.token_type is sqlglot.identifier:
        return [Token(Kind.QUOTED, token.text, start, end)]
    if _WORD.fullmatch(text):
        return [Token(Kind.WORD, text, start, end)]
    if " " in text or "\n" in text or "\t" in text:
        # sqlglot reads some keyword pairs (``ORDER BY``, ``GROUP BY``) as one token: keep one per word.
        return [
            Token(Kind.WORD, m.group(0), start + m.start(), start + m.end())
            for m in _SPLIT_WORDS.finditer(text)
        ]
    return [Token(Kind.PUNCT, text, start, end)]


@dataclass(frozen=True)
class Span:
    """One statement of a text, by offsets: ``text[start:end]`` runs from its first token to its last.

    ``gap`` is where the text before it begins: just after the previous statement's last token (so
    the gap holds that statement's ``;``), or 0 for the first. Only blanks, comments and semicolons
    lie in ``text[gap:start]``: the comments written above the statement.
    """

    start: int
    end: int
    gap: int


def statement_spans(text: str) -> list[Span]:
    """The statements of ``text`` as :class:`Span` s, split as :func:`split_statements` splits them."""
    spans: list[Span] = []
    begin: int | None = None
    last_end = 0  # pragma: no mutate (always set by a token before it is read: equivalent)
    gap = 0
    for token in tokenize(text):
        if token.kind is Kind.PUNCT and token.value == ";":
            if begin is not None:
                spans.append(Span(begin, last_end, gap))
                gap = last_end
            begin = None
            continue
        if begin is None:
            begin = token.start
        last_end = token.end
    if begin is not None:
        spans.append(Span(begin, last_end, gap))
    return spans


def split_statements(text: str) -> list[str]:
    """The statements of ``text``: each its original text from its first token to its last.

    Statements end at a ``;`` that is a token of its own: one inside a string literal (either escape,
    ``\\'`` or ``''``), a backquoted or double-quoted name, a ``$$``/``$tag$`` heredoc or a comment
    (``--``, ``#``, nested ``/* */``) ends nothing. Comments and blanks before a statement's first
    token and after its last are not part of it; those between its tokens are, as written. A part
    holding only comments or blanks (``;;``, a file of comments) is no statement, and the last
    statement needs no ``;``. Text no ClickHouse could read (an unterminated string, name or comment)
    raises :class:`~k2_migrations.errors.UsageError`.

    >>> split_statements("SELECT 'a;b'; /* ; */ SELECT `x;y` -- z;;")
    ["SELECT 'a;b'", 'SELECT `x;y`']
    """
    return [text[span.start : span.end] for span in statement_spans(text)]


@dataclass(frozen=True)
class Comment:
    """A comment of a text: ``text[start:end]``, its markers included."""

    start: int
    end: int
    #: True for a line comment (``--``, ``#``) with nothing but blanks before it on its line.
    own_line: bool


def comments(text: str) -> list[Comment]:
    """Every comment of ``text``, in order.

    Read from what lies between the tokens (:func:`tokenize`): there, only blanks, comments and
    nothing else can be, so every ``--``, ``#`` and ``/*`` starts one. Block comments nest, as in
    ClickHouse.
    """
    found: list[Comment] = []
    position = 0
    # Of the last token, standing for the text's end, only its start is read.
    for token in [*tokenize(text), Token(Kind.PUNCT, "", len(text), len(text))]:  # pragma: no mutate
        found.extend(_gap_comments(text, position, token.start))
        position = token.end
    return found


def _gap_comments(text: str, start: int, end: int) -> list[Comment]:
    found: list[Comment] = []
    at = start
    while at < end:
        if text.startswith("/*", at):
            depth, at = 1, at + 2
            begin = at - 2
            # A comment ends within its gap (an open one is no SQL the tokenizer reads): never at `end`.
            while depth and at < end:  # pragma: no mutate
                if text.startswith("/*", at):
                    depth, at = depth + 1, at + 2
                elif text.startswith("*/", at):
                    depth, at = depth - 1, at + 2
                else:
                    at += 1
            found.append(Comment(begin, at, own_line=False))
        elif text.startswith("--", at) or text[at] == "#":
            # Its newline, if any, is in the gap (a token starts after it), and it is not the text's
            # first character (the comment is); a newline at 0 before it is a blank either way.
            stop = text.find("\n", at, end)  # pragma: no mutate
            stop = end if stop < 0 else stop  # pragma: no mutate
            line_start = text.rfind("\n", 0, at) + 1  # pragma: no mutate
            found.append(Comment(at, stop, own_line=not text[line_start:at].strip()))
            at = stop
        else:
            at += 1
    return found


def _squash(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def split_list(text: str) -> list[str]:
    """The items of a comma-separated list (``id, toDate(ts), (a, b)``), split at its top-level commas:
    a comma inside brackets or a literal separates nothing."""
    out: list[str] = []
    depth, start = 0, 0
    for token in tokenize(text):
        # A punctuation token is one character: no other part of these strings is one.
        if token.kind is Kind.PUNCT and token.value in "([":  # pragma: no mutate
            depth += 1
        elif token.kind is Kind.PUNCT and token.value in ")]":  # pragma: no mutate
            depth -= 1
        elif depth == 0 and token.kind is Kind.PUNCT and token.value == ",":
            out.append(text[start : token.start].strip())
            start = token.end
    return [*out, text[start:].strip()] if text.strip() else out
