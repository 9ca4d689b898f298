"""Where interrupted work stands, from the journal's rows: attempts, their steps, in progress or not.

An *attempt* is one application of one revision in one direction, possibly spread over several
runs (each resume appends to it). Its status is that of its newest ``revision`` row; a step is done
when its newest row says ``done``. Which row is newest: within a run, the run's own ``seq``; runs
are serialised by the lock, and ordered by their first row's time. A clock stepping back in the
middle of a run therefore cannot reorder that run's rows.

A *revert* undoes an interrupted attempt by running the revision's other function; it is an attempt
of its own whose ``started`` rows carry ``{"revert": true}``. A revert that fails half-way and is
resumed stays a revert: the flag is kept from any of its rows, never taken from the newest one
alone (a ``failed`` row carries none).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: The statuses of an attempt left half-applied. ``migrated``: the revision's function returned but
#: its version change is not yet known to have been written; the next run settles it either way.
OPEN_STATUSES = frozenset({"started", "failed", "migrated"})


@dataclass(frozen=True)
class JournalRow:
    """One journal row, as much of it as the decisions read."""

    run_id: str
    seq: int
    at: datetime
    attempt_id: str
    kind: str
    revision: str
    direction: str
    step: int
    operation: str
    status: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class StepRecord:
    step: int
    operation: str
    status: str
    payload: dict[str, Any]


@dataclass
class Attempt:
    """One application of one revision in one direction, possibly spread over several runs."""

    attempt_id: str
    revision: str
    direction: str
    status: str
    started_at: datetime
    steps: dict[int, StepRecord] = field(default_factory=dict)
    #: Undoing another, interrupted attempt (its function runs opposite to that attempt's direction).
    revert: bool = False

    @property
    def in_progress(self) -> bool:
        return self.status in OPEN_STATUSES


def in_order(rows: Iterable[JournalRow]) -> list[JournalRow]:
    """The rows oldest first: runs by their first row's time, each run's rows by its ``seq``."""
    rows = list(rows)
    first: dict[str, datetime] = {}
    for row in rows:
        first[row.run_id] = min(first.get(row.run_id, row.at), row.at)
    return sorted(rows, key=lambda row: (first[row.run_id], row.run_id, row.seq))


def attempts(rows: Iterable[JournalRow]) -> list[Attempt]:
    """Every attempt, oldest first, with its steps' newest records."""
    found: dict[str, Attempt] = {}
    for row in in_order(rows):
        attempt = found.get(row.attempt_id)
        if attempt is None:
            attempt = Attempt(row.attempt_id, row.revision, row.direction, row.status, row.at)
            found[row.attempt_id] = attempt
        if row.kind == "revision":
            attempt.status = row.status
            attempt.revert = attempt.revert or bool(row.payload.get("revert"))
        elif row.kind == "step":
            attempt.steps[row.step] = StepRecord(row.step, row.operation, row.status, row.payload)
    return list(found.values())


def in_progress(found: Sequence[Attempt]) -> Attempt | None:
    """The attempt left half-applied, if any: the newest open one (runs are serialised, so at most
    one is open)."""
    open_attempts = [a for a in found if a.in_progress]
    return open_attempts[-1] if open_attempts else None


def done_step(attempt: Attempt | None, step: int) -> StepRecord | None:
    """Step ``step`` of ``attempt`` (being resumed) if it is done: then it is skipped and replayed."""
    record = attempt.steps.get(step) if attempt is not None else None
    return record if record is not None and record.status == "done" else None
