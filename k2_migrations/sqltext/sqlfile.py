"""A plain SQL file as k2-migrate runs it: statements, each with its line and its ``done_when``.

A revision may keep its SQL in ``.sql`` files (``op.run_sql_file``); each statement of such a file
runs as a step of its own. A statement that cannot say ``IF [NOT] EXISTS`` says how to recognise
that it already happened with an annotation, a line comment of its own among the comments just above
it (after the previous statement's ``;``)::

    -- done_when: SELECT count() > 0 FROM analytics.daily
    INSERT INTO analytics.daily SELECT ... FROM analytics.events;

The query's first value, when true (nonzero), means the statement has happened: it is skipped
before, and must be true after it ran.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from k2_migrations.errors import UsageError
from k2_migrations.sqltext.tokens import Comment, comments, statement_spans

_DONE_WHEN = re.compile(r"--\s*done_when\s*:(?P<query>.*)$", re.IGNORECASE)


class SqlFileError(UsageError):
    """A SQL file k2-migrate cannot run as it is, with the line at fault (1 when no line can be named)."""

    def __init__(self, name: str, line: int | None, problem: str) -> None:
        super().__init__(f"{name}, line {line}: {problem}" if line is not None else f"{name}: {problem}")
        self.line = line or 1
        self.problem = problem


@dataclass(frozen=True)
class FileStatement:
    """One statement of a SQL file: its text as sent, where it is, and its ``done_when`` query."""

    text: str
    line: int  # of its first token, 1-based
    last_line: int
    done_when: str | None = None

    @property
    def digest(self) -> str:
        """A short digest of the statement's text: part of its step's key, so that a resumed run
        notices a statement edited after it was done."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:10]


def read_statements(text: str, name: str) -> list[FileStatement]:
    """The statements of a SQL file's ``text`` (``name`` says which file, in errors).

    Raises :class:`SqlFileError` naming the file (and the line, where there is one) for text no
    ClickHouse could read, and for a ``done_when`` annotation that is empty, is not on a line of its own,
    annotates nothing (no statement follows it, or it sits inside a statement), or is the second one
    above a statement.
    """
    try:
        spans = statement_spans(text)
        notes = [c for c in comments(text) if _DONE_WHEN.match(text, c.start, c.end)]
    except UsageError as error:
        raise SqlFileError(name, None, error.message) from None
    statements: list[FileStatement] = []
    for span in spans:
        above = [c for c in notes if span.gap <= c.start < span.start]
        if len(above) > 1:
            raise _annotation_error(
                text, name, above[1], "is the second done_when above one statement; keep one"
            )
        statements.append(
            FileStatement(
                text[span.start : span.end],
                _line(text, span.start),
                _line(text, span.end),
                _query(text, name, above[0]) if above else None,
            )
        )
    placed = {c.start for span in spans for c in notes if span.gap <= c.start < span.start}
    stray = next((c for c in notes if c.start not in placed), None)
    if stray is not None:
        raise _annotation_error(text, name, stray, "annotates no statement: put it on the line above one")
    return statements


def _query(text: str, name: str, note: Comment) -> str:
    if not note.own_line:
        raise _annotation_error(
            text, name, note, "must be a comment on a line of its own, above its statement"
        )
    match = _DONE_WHEN.match(text, note.start, note.end)
    assert match is not None
    query = match.group("query").strip()
    if not query:
        raise _annotation_error(text, name, note, "has no query: write -- done_when: SELECT ...")
    return query


def _annotation_error(text: str, name: str, note: Comment, problem: str) -> SqlFileError:
    return SqlFileError(name, _line(text, note.start), f"the done_when annotation {problem}")


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1
