"""The linter's vocabulary: a rule, what a check reports before waivers, and what the user sees."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from k2_migrations.authoring.lint.source import Hit

if TYPE_CHECKING:
    from k2_migrations.authoring.lint.source import Revision
    from k2_migrations.authoring.lint.sqlfiles import SqlFile


#: A check reads every linted revision and SQL file at once: most look at one revision at a time
#: (:func:`each_revision`); the Kafka rules compare files with each other, and the rules about
#: statements read the SQL files too (those of a file run by a revision, in that revision's order).
Check = Callable[[Sequence["Revision"], Sequence["SqlFile"]], Iterable[Hit]]


@dataclass(frozen=True)
class Rule:
    """One rule: its id (what a waiver names), its family (the module defining it), what it flags
    (one line, for ``--help`` and the docs) and the fix to give when a finding has none of its own."""

    id: str
    family: str
    what: str
    fix: str
    check: Check
    #: False for the rules about the lint itself (a broken file, a broken waiver): a waiver cannot hide them.
    waivable: bool = True


def each_revision(check: Callable[[Revision], Iterable[Hit]]) -> Check:
    """A check of one revision at a time, run on every revision that parsed (not on SQL files)."""

    def run(revisions: Sequence[Revision], sql_files: Sequence[SqlFile]) -> Iterator[Hit]:
        for revision in revisions:
            if revision.tree is not None:
                yield from check(revision)

    return run


@dataclass(frozen=True)
class Finding:
    """One problem at one line of one file, with what to do about it.

    ``waived_reason`` is set when a ``# k2-lint: allow`` comment waives it: it is still reported
    (a waiver is a decision worth seeing) but must not fail the lint.
    """

    path: Path
    line: int
    rule: str
    message: str
    fix: str
    waived_reason: str | None = None

    @property
    def waived(self) -> bool:
        return self.waived_reason is not None

    def describe(self) -> str:
        """``path:line: RULE message — fix: ...`` on one line (plus the waiver's reason, if waived)."""
        text = f"{self.path}:{self.line}: {self.rule} {one_line(self.message)} — fix: {one_line(self.fix)}"
        if self.waived_reason is not None:
            text += f" (waived: {one_line(self.waived_reason)})"
        return text


def one_line(text: str) -> str:
    return " ".join(text.split())
