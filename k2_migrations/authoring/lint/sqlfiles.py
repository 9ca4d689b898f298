"""Plain SQL files: those a revision runs (``op.run_sql_file("...")``) and ``.sql`` files named to lint.

Each statement of a SQL file is a step of its own, so the statement rules apply to each as to SQL in
a revision, at the file's own lines: ``populate``, ``drop-sync``, and ``not-idempotent`` unless the
statement is safe to repeat by its form (``IF [NOT] EXISTS``) or carries a ``-- done_when: SELECT
...`` annotation (:mod:`k2_migrations.sqltext.sqlfile`), here; the Kafka rules, the guard rules,
``recreate-view`` and ``unchecked-dependents`` in their own modules (a file's statements in order,
after what the revision running it did before its ``op.run_sql_file``, before what it does after). A file that cannot be read as SQL is a
``syntax`` finding. Waivers are SQL comments: ``-- k2-lint: allow RULE -- reason``. Which file a
revision runs is read from the call's literal path (relative to the revision's directory); a path
built at run time cannot be read and gives no finding.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from k2_migrations.authoring.lint.ddl_safety import drops_sync, populates
from k2_migrations.authoring.lint.idempotency import problem
from k2_migrations.authoring.lint.model import Rule, each_revision
from k2_migrations.authoring.lint.source import UNKNOWN, Hit, OpCall, Revision, Waiver, argument
from k2_migrations.authoring.lint.sql import Statement
from k2_migrations.errors import UsageError
from k2_migrations.sqltext.sqlfile import FileStatement, SqlFileError, read_statements
from k2_migrations.sqltext.tokens import comments

_WAIVER_MENTION = re.compile(r"(?:--|#)\s*k2-lint\b", re.IGNORECASE)
_WAIVER = re.compile(r"(?:--|#)\s*k2-lint:\s*allow\b(?P<rules>.*?)(?:\s--(?P<reason>.*))?$")
_AGAIN_FIX = (
    "make it safe to run again: IF [NOT] EXISTS where the statement takes it, or a line "
    "-- done_when: SELECT ... just above it (a query that is true once the statement has happened)"
)


@dataclass
class SqlFile:
    """One SQL file: its statements (each also as the rules read SQL), or the ``syntax`` hit saying why none."""

    path: Path
    source: str
    statements: list[tuple[FileStatement, Statement]] = field(default_factory=list)
    syntax: Hit | None = None

    @classmethod
    def read(cls, path: Path) -> SqlFile:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"lint: cannot read {path}: {exc.strerror or exc}") from exc
        try:
            source = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            return cls(
                path,
                "",
                syntax=Hit(path, "syntax", line, line, "the file is not UTF-8 text", "save it as UTF-8"),
            )
        try:
            found = read_statements(source, str(path))
        except SqlFileError as exc:
            fix = "fix the file; nothing else in it was checked"
            return cls(path, source, syntax=Hit(path, "syntax", exc.line, exc.line, exc.problem, fix))
        return cls(path, source, [(s, Statement.of(s.text)) for s in found])

    @cached_property
    def waivers(self) -> list[Waiver]:
        """Every ``-- k2-lint`` comment (a real comment, never text in a string)."""
        if self.syntax is not None:
            return []
        found: list[Waiver] = []
        for comment in comments(self.source):
            text = self.source[comment.start : comment.end]
            if not _WAIVER_MENTION.match(text):
                continue
            line = self.source.count("\n", 0, comment.start) + 1
            match = _WAIVER.match(text)
            if match is None:
                found.append(Waiver(line, (), None))
                continue
            rules = tuple(r for r in re.split(r"[\s,]+", match.group("rules").strip()) if r)
            found.append(Waiver(line, rules, (match.group("reason") or "").strip() or None))
        return found

    def hits(self) -> Iterator[Hit]:
        """The statement rules' findings, or the file's ``syntax`` finding."""
        if self.syntax is not None:
            yield self.syntax
            return
        for at, statement in self.statements:
            if populates(statement):
                yield self.hit(
                    "populate",
                    at,
                    "POPULATE fills a materialized view from its source, but rows inserted while it runs are "
                    "lost (and a re-run fills it twice)",
                    "create the view without POPULATE, then backfill with INSERT INTO target SELECT ... "
                    "under a -- done_when: annotation",
                )
            spelling = drops_sync(statement)
            if spelling is not None:
                yield self.hit("drop-sync", at, f"DROP ... {spelling} hangs on the embedded engine (chDB)")
            found = problem(statement) if at.done_when is None else None
            if found is not None:
                yield self.hit("not-idempotent", at, found[0], _AGAIN_FIX)

    def hit(self, rule: str, at: FileStatement, message: str, fix: str | None = None) -> Hit:
        return Hit(self.path, rule, at.line, at.last_line, message, fix)


def run_by(revision: Revision) -> Iterator[tuple[OpCall, Path]]:
    """Each ``op.run_sql_file`` call of a revision whose path can be read, with the file it names."""
    for call in revision.op_calls:
        if call.method != "run_sql_file":
            continue
        text = revision.text(argument(call.node, 0, "path"), call.scope)
        if text is None or UNKNOWN in text:
            continue
        given = Path(text)
        yield call, given if given.is_absolute() else revision.path.parent / given


def _missing(revision: Revision) -> Iterator[Hit]:
    for call, path in run_by(revision):
        if not path.is_file():
            yield revision.hit(
                "sql-file-missing", call.node, f"op.run_sql_file runs {path}, which is not there"
            )


def _empty(revision: Revision) -> Iterator[Hit]:
    for call, path in run_by(revision):
        if path.is_file():
            read = SqlFile.read(path)
            if read.syntax is None and not read.statements:
                yield revision.hit(
                    "empty-sql-file",
                    call.node,
                    f"op.run_sql_file runs {path}, which holds no statement yet (as k2-migrate revision --sql wrote it)",
                )


RULES = (
    Rule(
        "sql-file-missing",
        "sqlfiles",
        "op.run_sql_file names a file that is not there",
        "create the file, or correct its name: a relative path is read from the revision file's directory",
        each_revision(_missing),
    ),
    Rule(
        "empty-sql-file",
        "sqlfiles",
        "op.run_sql_file runs a file that holds no statement (a new revision --sql not written yet)",
        "write the file's statements, or remove the op.run_sql_file call and say in the function's docstring "
        "why nothing needs doing",
        each_revision(_empty),
    ),
)
