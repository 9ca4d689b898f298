"""Whether to issue a mutation, wait for one already running, or leave it: from ``system.mutations``,
the step's ``done_when`` answer and whether the journal has the step started before.

A mutation is never issued twice. One still running on the table — issued by this step before a
crash, or by anyone — is waited for. After that, a step with ``done_when`` asks it; a step without
one that the journal has as started before (a resumed step) looks for its own command among the
table's mutations: if the engine has it, the interrupted run issued it, and issuing it again would
apply it twice (``v = v + 1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class MutationRow:
    """One of the table's mutations, as ``system.mutations`` reports it."""

    mutation_id: str
    is_done: bool
    parts_to_do: int
    latest_fail_reason: str


@dataclass(frozen=True)
class Unfinished:
    """The table's unfinished mutations: whether any runs, the first that failed, the parts left."""

    running: bool
    failed: MutationRow | None
    parts_left: int


def unfinished(rows: Sequence[MutationRow]) -> Unfinished:
    """What the table's unfinished mutations say: a failed one stops the wait, others are waited for."""
    running = [m for m in rows if not m.is_done]
    failed = [m for m in running if m.latest_fail_reason]
    return Unfinished(bool(running), failed[0] if failed else None, sum(m.parts_to_do for m in running))


class Action(Enum):
    #: ``done_when`` says there is nothing (left) to do.
    SKIP = "skip"
    #: Issued already (waited for, or found done after a crash): verify only, never issue again.
    SETTLED = "settled"
    ISSUE = "issue"


def next_action(*, done: bool | None, waited: bool, issued_before: bool) -> Action:
    """What the step does after waiting for the table's running mutations.

    ``done``: the ``done_when`` answer (None: the step has none). ``waited``: a mutation was running
    and has finished. ``issued_before``: a resumed step whose command the engine already has.
    """
    if done:
        return Action.SKIP
    if waited or issued_before:
        return Action.SETTLED
    return Action.ISSUE


def same_command(ours: str, theirs: str) -> bool:
    """Whether two mutation commands, each as the engine formats it, are the same command.

    ``system.mutations.command`` is the engine's formatting of the command, parenthesised by some
    versions and not others; both sides are compared without that and with whitespace squashed.
    """
    return _bare(ours) == _bare(theirs)


def _bare(command: str) -> str:
    flat = " ".join(command.split())
    if flat.startswith("(") and flat.endswith(")"):
        return " ".join(flat[1:-1].split())
    return flat
