"""Plain SQL files: ``op.run_sql_file(path)`` runs each statement of a ``.sql`` file as a step of its own.

The file is read when the revision runs (and when ``plan`` or ``--sql`` shows it), split by the
tokenizer (a ``;`` inside a literal, a name, a heredoc or a comment ends nothing), and each statement
becomes one :class:`SqlFileStatement`: journaled, so a run killed at statement k resumes at statement
k; shown by ``plan`` and ``--sql``, ON CLUSTER added in cluster mode as for every statement sent.
A statement is idempotent by its own form (``IF [NOT] EXISTS``) or by a ``-- done_when: SELECT ...``
annotation (see :mod:`k2_migrations.sqltext.sqlfile`); ``k2-migrate lint`` refuses one with neither.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from alembic.operations import Operations

from k2_migrations import failpoints
from k2_migrations.engine.context import Payload
from k2_migrations.errors import SqlFailed, UsageError
from k2_migrations.operations.base import ClickHouseOperation, _register, _squash
from k2_migrations.sqltext.cluster import statement_subjects
from k2_migrations.sqltext.sqlfile import FileStatement, read_statements

if TYPE_CHECKING:
    from k2_migrations.engine.context import StepContext


@_register("run_sql_file")
@dataclass(eq=False)
class SqlFileStatement(ClickHouseOperation):
    """One statement of a SQL file, run as one step.

    Its key (:meth:`describe`) holds the file as the revision names it, the statement's number and
    a digest of its text: a resumed run refuses to skip a done statement whose text has changed
    since, while the statement that failed may be fixed and run again.
    """

    path: str  # as the revision gives it
    number: int
    statement: FileStatement

    #: Each statement's ``done`` row is made durable before the next statement starts: a statement
    #: that is not idempotent (lint says so) must not run again after a kill that came later.
    journal_eagerly = True

    @classmethod
    def run_sql_file(cls, operations: Operations, path: str) -> None:
        """Run the statements of the SQL file at ``path``, one step each; a relative path is read
        from the directory of the revision file that calls this."""
        file = _locate(path)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise UsageError(
                f"op.run_sql_file: cannot read {file}: {reason}; a relative path is read from the revision "
                "file's directory"
            ) from None
        for number, statement in enumerate(read_statements(text, path), 1):
            operations.invoke(cls(path, number, statement))

    def describe(self) -> str:
        return f"{self.path} statement {self.number} [{self.statement.digest}]: {_squash(self.statement.text, 80)}"

    def render(self) -> list[str]:
        lines = [f"-- {self.path}, line {self.statement.line}"]
        if self.statement.done_when:
            lines.append(f"-- skipped when, and verified after by: {_squash(self.statement.done_when)}")
        return [*lines, self.statement.text]

    def guard_notes(self) -> list[str]:
        done_when = self.statement.done_when
        return [f"verified by: {_squash(done_when)}"] if done_when else []

    def touches(self) -> set[str]:
        return set(statement_subjects(self.statement.text)[1])

    def apply(self, rt: StepContext) -> Payload:
        done_when = self.statement.done_when
        if done_when and rt.catalog.scalar(done_when):
            return {"note": "nothing to do: done_when is true"}
        failpoints.reached("sql-statement")
        rt.execute(self.statement.text)
        failpoints.reached("sql-statement-sent")
        if done_when and not rt.catalog.scalar(done_when):
            raise SqlFailed(
                f"{self.path}, line {self.statement.line}: statement {self.number} ran, but its done_when is "
                f"still false: {_squash(done_when)}; fix the statement or its annotation and run the same "
                "command again: the revision resumes at this statement"
            )
        return {}


def _locate(path: str) -> Path:
    """``path`` itself when absolute, else beside the revision file whose code called ``op.run_sql_file``.

    The revision is the nearest caller whose module defines ``revision`` and ``down_revision``, as
    every Alembic revision does; a helper module calling on a revision's behalf is looked through.
    """
    given = Path(path)
    if given.is_absolute():
        return given
    frame = inspect.currentframe()
    while frame is not None:
        module = frame.f_globals
        if "revision" in module and "down_revision" in module and isinstance(module.get("__file__"), str):
            return Path(module["__file__"]).resolve().parent / given
        frame = frame.f_back
    raise UsageError(
        f"op.run_sql_file({path!r}) outside a revision file: give an absolute path, or call it from a "
        "revision's upgrade() or downgrade()"
    )
