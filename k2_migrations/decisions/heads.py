"""Which revisions are applied, from the rows of the version record.

Each change of heads is rows sharing one ``seq``, one above every ``seq`` before it, written by one
INSERT. A revision is applied when its row of the highest ``seq`` says so. The ``at`` column is
when the writing server thought the change happened: hosts' clocks differ (a host with a slow
clock writes a later change with an earlier time), so time never decides which row is newest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class VersionRow:
    """One row of the version record: ``revision`` applied (or not) by change ``seq``."""

    seq: int
    revision: str
    applied: bool
    #: The writing server's clock: shown to people, never used to order changes.
    at: datetime


def applied_heads(rows: Iterable[VersionRow]) -> tuple[str, ...]:
    """The applied revisions, sorted: those whose row of the highest ``seq`` says ``applied``.

    One change never writes a revision twice, so a revision's rows have distinct ``seq``.
    """
    newest: dict[str, VersionRow] = {}
    for row in rows:
        known = newest.get(row.revision)
        # `>=` instead is equivalent: a revision has distinct seqs (the docstring), so no tie to break.
        if known is None or row.seq > known.seq:  # pragma: no mutate
            newest[row.revision] = row
    return tuple(sorted(revision for revision, row in newest.items() if row.applied))


def heads_change(before: Iterable[str], after: Iterable[str]) -> dict[str, bool]:
    """The rows a change from heads ``before`` to ``after`` writes: removed heads 0, new heads 1."""
    old, new = set(before), set(after)
    return {**dict.fromkeys(old - new, False), **dict.fromkeys(new - old, True)}
