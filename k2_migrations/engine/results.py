"""What a run produces: its result, the report of each revision and step, guard and check results,
tables dropped on purpose."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from k2_migrations.decisions.freshness import Freshness


@dataclass(frozen=True)
class DroppedTable:
    """A guarded table an ``op.drop_object`` step of this run dropped, with the rows it had then.

    A guard accounts such a table as dropped on purpose: its baseline ends at the drop, so its check
    compares the count at the drop, not a table that is no longer there (or one re-created since).
    """

    step: int
    rows: int
    allow_rows: bool


@dataclass
class GuardResult:
    """A guarded table's rows at the baseline and now, and how many were inserted meanwhile or lost
    (:func:`k2_migrations.decisions.guards.judge`): only a loss fails it."""

    label: str
    table: str
    moved_to: str
    before: int
    after: int  # -1: missing; for a table dropped on purpose, its count when it was dropped
    dropped: DroppedTable | None = None
    inserted: int = 0
    lost: int = 0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.after >= 0

    @property
    def accounting(self) -> str:
        """``380 inserted meanwhile, none lost`` / ``12 lost`` / ``none lost``."""
        lost = f"{self.lost:,} lost" if self.lost else "none lost"
        return f"{self.inserted:,} inserted meanwhile, {lost}" if self.inserted else lost


@dataclass
class CheckResult:
    name: str
    violations: int
    detail: str = ""


@dataclass
class StepReport:
    index: int
    operation: str
    status: str  # done, skipped (already done in an earlier run), planned
    elapsed_ms: float = 0.0
    note: str = ""
    sql: list[str] = field(default_factory=list)
    guards: list[str] = field(default_factory=list)


@dataclass
class RevisionReport:
    revision: str
    direction: str
    description: str
    resumed: bool = False
    reverted: bool = False
    steps: list[StepReport] = field(default_factory=list)
    elapsed_s: float = 0.0


class RunRecords(Protocol):
    """What a run collected for its report (the step executor keeps these)."""

    revisions: list[RevisionReport]
    guard_results: list[GuardResult]
    checks: list[CheckResult]
    intervals: dict[tuple[str, str], float]
    freshness: dict[tuple[str, str], Freshness]


@dataclass
class RunResult:
    """What a run did, for the summary and ``--json``."""

    command: str
    target: str
    url: str
    heads_before: tuple[str, ...]
    heads_after: tuple[str, ...]
    runtime: RunRecords
    elapsed_s: float
    lock_broken: str | None = None
    reverted: str | None = None
