"""Whether a guarded table kept the rows it had at its baseline, while inserts go on.

A MergeTree part is named by its partition and the block numbers it holds; an INSERT takes new block
numbers, and a merge or a mutation writes a part whose block range covers the parts it replaced (a
part is never split). So, against the active parts at the baseline:

- a live part whose range covers baseline parts holds their rows: it must hold at least as many
  (merges of these engines keep every row; on collapsing engines the guard holds merges); any more
  are rows inserted into it since (a merge with a newer part);
- a live part that covers no baseline part was inserted after the baseline;
- a baseline part that no live part covers is gone, and its rows with it: lost.

The verdict counts rows kept, inserted meanwhile and lost; only a loss fails the guard. A part is
never split, so when a live part covering baseline parts holds fewer rows than they had, the rows it
holds count as kept even if some were inserted later and merged in: after a loss, ``kept`` is an
upper bound and ``lost`` a lower one (measured under a live writer: a table emptied by TRUNCATE
had, moments later, a part over the whole emptied range holding 2 rows the writer inserted after
it). A table without parts (not MergeTree) is judged by its count: one pseudo-part (:func:`counted`).

Across a move that renumbers blocks (``ATTACH PARTITION ALL FROM``: the destination numbers the
attached parts in its own sequence), :func:`map_attached` says which destination part holds which
source part, by their content (a copy is hard links to the same files), and :func:`carry` rewrites
a baseline in those terms: a baseline part is held by the copy of the source part that covers it,
and one that no copied part covers is lost. A rebuild copies rows with ``INSERT ... SELECT``,
which mixes the rows of many parts into new ones: no part has a copy of its own, so
:func:`carry_copied` rewrites the baseline as one group of rows spread over the blocks the copy
holds, together with the rows copied along with it (inserted after the baseline, before the copy),
and the verdict counts rows per group of parts that overlap (:func:`judge`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import groupby


@dataclass(frozen=True)
class Part:
    """An active part: its name, partition, block range and rows (``system.parts``).

    In a carried baseline (:func:`carry_copied`) the entries of one name are one group of rows
    spread over their ranges: ``rows`` baseline rows and ``along`` rows copied with them.
    ``digest`` is the part's ``hash_of_all_files``, read only to match copies (:func:`map_attached`);
    it is not journaled.
    """

    name: str
    partition: str
    min_block: int
    max_block: int
    rows: int
    along: int = 0
    digest: str = field(default="", compare=False)

    def covers(self, other: Part) -> bool:
        return (
            self.partition == other.partition
            and self.min_block <= other.min_block
            and other.max_block <= self.max_block
        )

    def overlaps(self, other: Part) -> bool:
        return (
            self.partition == other.partition
            and self.min_block <= other.max_block
            and other.min_block <= self.max_block
        )

    def as_row(self) -> list[str | int]:
        row: list[str | int] = [self.name, self.partition, self.min_block, self.max_block, self.rows]
        return [*row, self.along] if self.along else row

    @classmethod
    def from_row(cls, row: Sequence[object]) -> Part:
        name, partition, low, high, rows, *along = row
        return cls(
            str(name),
            str(partition),
            int(str(low)),
            int(str(high)),
            int(str(rows)),
            int(str(along[0])) if along else 0,
        )

    @classmethod
    def named(cls, name: str, partition: str, rows: int) -> Part:
        """A part known by its name (``<partition>_<min block>_<max block>_<level>[_<mutation>]``)."""
        low, high = name.removeprefix(f"{partition}_").split("_")[:2]
        return cls(name, partition, int(low), int(high), rows)


@dataclass(frozen=True)
class Verdict:
    """What became of a guarded table's baseline rows."""

    before: int
    after: int  # -1: the table is missing
    kept: int
    inserted: int
    lost: int

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.after >= 0


def counted(rows: int) -> list[Part]:
    """A table without parts as one pseudo-part holding its count."""
    return [Part("", "", 0, 0, rows)]


def judge(baseline: Sequence[Part], live: Sequence[Part] | None) -> Verdict:
    """The verdict on a table whose active parts were ``baseline`` and are ``live`` (None: missing).

    Live parts and baseline groups (entries of one name) that overlap form one group of rows: it
    must hold its baseline rows and the rows copied along with them; what it holds beyond them was
    inserted meanwhile, what it lacks is lost. A live part is never split, so without carried
    groups this is a live part and the baseline parts it covers.
    """
    before = sum(p.rows for p in baseline)
    if live is None:
        return Verdict(before, -1, 0, 0, before)
    group: dict[tuple[str, str], tuple[str, str]] = {}

    def root(key: tuple[str, str]) -> tuple[str, str]:
        while group.setdefault(key, key) != key:
            key = group[key]
        return key

    for index, part in enumerate(live):
        mine = root(("live", str(index)))
        for entry in baseline:
            if part.overlaps(entry):
                group[root(("baseline", entry.name))] = mine
    held: dict[tuple[str, str], list[int]] = {}  # per group: baseline rows, rows along, live rows
    for entry in baseline:
        totals = held.setdefault(root(("baseline", entry.name)), [0, 0, 0])
        totals[0] += entry.rows
        totals[1] += entry.along
    for index, part in enumerate(live):
        held.setdefault(root(("live", str(index))), [0, 0, 0])[2] += part.rows
    kept = inserted = lost = 0
    for rows, along, now in held.values():
        missing = max(0, rows + along - now)
        kept += rows - min(rows, missing)
        inserted += now - (rows - min(rows, missing))
        lost += missing
    return Verdict(before, sum(p.rows for p in live), kept, inserted, lost)


def map_attached(source: Sequence[Part], attached: Sequence[Part]) -> dict[str, Part]:
    """Which destination part holds each source part after ``ATTACH PARTITION ALL FROM source``.

    ``attached`` are the destination's parts numbered above its highest block before the attach.
    Measured on the engine (chDB 26.1): the attach numbers the copies in the destination's
    sequence, and each copy is hard links to its source part's files, so the two have the same
    ``hash_of_all_files`` (``digest``) while an insert that took a number in between has its own.
    A copy is matched to a source part of its partition with the same digest and rows (parts of
    equal content in block order); a source part left unmatched was not attached.
    """

    def by_content(parts: Sequence[Part]) -> dict[tuple[str, str, int], list[Part]]:
        ordered = sorted(parts, key=lambda p: (p.partition, p.digest, p.rows, p.min_block))
        return {
            key: list(group) for key, group in groupby(ordered, key=lambda p: (p.partition, p.digest, p.rows))
        }

    copies = by_content(attached)
    return {
        original.name: copy
        for key, originals in by_content(source).items()
        # Fewer copies than originals is what it finds out: `strict` None or left out reads alike.
        for original, copy in zip(originals, copies.get(key, []), strict=False)  # pragma: no mutate
    }


def carry(baseline: Sequence[Part], renamed: Mapping[str, Part]) -> list[Part]:
    """The baseline in the terms of the parts that hold it after a partition move: ``renamed`` maps
    each source part copied (by name) to its copy. A baseline part becomes the copy of the source
    part that covers it (itself, or a merge of it made before the copy), keeping its name and rows;
    one that no copied part covers is in no partition of the destination: the check finds it lost.
    """
    # Only its block range is read (covers()): the rows are no matter.
    held = [(Part.named(name, c.partition, 0), c) for name, c in renamed.items()]  # pragma: no mutate

    def holder(part: Part) -> Part:
        covering = (copy for original, copy in held if original.covers(part))
        # Any partition the destination has no part in would do (the name only shows in a debugger).
        where = next(covering, replace(part, partition="(copied nowhere)"))  # pragma: no mutate
        return replace(where, name=part.name, rows=part.rows, along=part.along)  # the name keeps its group

    return [holder(p) for p in baseline]


def carry_copied(
    baseline: Sequence[Part], copied: Sequence[Part], copies: Sequence[Part], group: str
) -> list[Part]:
    """The baseline once a copy of its table took the table's place (a rebuild): ``copied`` are the
    source's parts the copy read, ``copies`` the ranges of the destination that hold those rows.

    The whole baseline becomes one group over ``copies``: its rows, and the rows copied along with
    them (in ``copied`` beyond the baseline's). Baseline rows the copy did not read stay in the
    group's rows and nothing holds them: the check finds them lost. Without copies the group has
    a range no part has.
    """
    verdict = judge(baseline, copied)
    # Any range no part has would do: block numbers are never negative.
    nowhere = Part(group, "", -1, -1, 0)  # pragma: no mutate
    ranges = [replace(c, name=group, rows=0, along=0) for c in copies] or [nowhere]
    return [replace(ranges[0], rows=verdict.before, along=verdict.inserted), *ranges[1:]]
