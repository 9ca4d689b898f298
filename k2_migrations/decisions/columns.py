"""Whether a column, a TTL, an index or a projection is already what a revision wants, and how to get there.

Both sides of every comparison are text the engine rendered: the live side read from system tables,
the wanted side normalised by the engine before it gets here (a scratch table for a column, the
engine's own formatter for an expression), so ``INTERVAL 730 DAY`` and ``toIntervalDay(730)`` are one
value by the time they are compared. Only whitespace is evened out here: the formatter and
``engine_full`` differ in nothing else (measured on chDB 26.1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

_SPACE = re.compile(r"\s+")


def same_text(a: str, b: str) -> bool:
    """Two renderings of one expression by the engine: equal but for runs of whitespace."""
    return _SPACE.sub(" ", a).strip() == _SPACE.sub(" ", b).strip()


@dataclass(frozen=True)
class ColumnDefinition:
    """A column as system.columns shows it."""

    type: str
    default_kind: str = ""
    default_expression: str = ""
    codec: str = ""
    comment: str = ""


class Change(Enum):
    NONE = "none"
    #: Default, codec or comment: the table's metadata only, no part is rewritten.
    METADATA = "metadata"
    #: The type: every part is rewritten by a mutation.
    REWRITE = "rewrite"


def column_change(live: ColumnDefinition, wanted: ColumnDefinition) -> Change:
    """What it takes to turn ``live`` into ``wanted``: nothing, an ALTER of metadata, or a mutation."""
    if live.type != wanted.type:
        return Change.REWRITE
    if (
        live.default_kind != wanted.default_kind
        or not same_text(live.default_expression, wanted.default_expression)
        or not same_text(live.codec, wanted.codec)
        or live.comment != wanted.comment
    ):
        return Change.METADATA
    return Change.NONE


class Materialized(Enum):
    #: No MATERIALIZE since the object was (re)created: issue one.
    MISSING = "missing"
    #: A MATERIALIZE was issued and is still running: wait for it, never issue another.
    RUNNING = "running"
    DONE = "done"


@dataclass(frozen=True)
class MutationRow:
    """One row of system.mutations for the table: ``number`` orders them (the digits of mutation_id)."""

    number: int
    command: str
    is_done: bool


def mutation_number(mutation_id: str) -> int:
    """The order of a mutation among its table's: ``mutation_12.txt`` -> 12, ``0000000012`` -> 12."""
    digits = "".join(ch for ch in mutation_id if ch.isdigit())
    return int(digits) if digits else 0


def materialized(mutations: Sequence[MutationRow], kind: str, name: str) -> Materialized:
    """Whether the index or projection ``name`` (``kind`` INDEX or PROJECTION, ``name`` as the engine
    quotes it) has been materialized since it last came into being.

    Adding one is metadata only, while MATERIALIZE, DROP and CLEAR of it are mutations the engine
    keeps in system.mutations (``(MATERIALIZE INDEX ix)``, ``(DROP PROJECTION `p x`)``): the newest
    of these says. A DROP newer than every MATERIALIZE means the one there now was added since.
    """
    ours = {f"({verb} {kind} {name})": verb for verb in ("MATERIALIZE", "DROP", "CLEAR")}
    newest: tuple[str, bool] | None = None
    for row in sorted(mutations, key=lambda m: m.number):
        # ``DROP INDEX IF EXISTS ix`` is kept as written.
        command = _SPACE.sub(" ", row.command.strip()).replace(f"{kind} IF EXISTS ", f"{kind} ")
        if command in ours:
            newest = (ours[command], row.is_done)
    if newest is None or newest[0] != "MATERIALIZE":
        return Materialized.MISSING
    return Materialized.DONE if newest[1] else Materialized.RUNNING
