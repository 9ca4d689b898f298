"""Which partitions a rebuild copies together (one INSERT and one durable record per unit), and what a
resumed run still copies of a unit the interrupted one began."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from k2_migrations.decisions.guards import Part

#: Partitions smaller than this are copied together, as one unit of the copy (one INSERT, one record):
#: about a second of copying on 2 cores, all a killed run has to do again. Measured (bench.rebuild, 10M
#: rows under a writer, 2026-12-06): the copy at 0.97x a plain INSERT SELECT with 5M-row units, 0.79x
#: with 1M (ten INSERTs of 1M rows are slower than two of 5M).
UNIT_ROWS = 5_000_000


def copy_units(parts: list[tuple[str, int]], unit_rows: int = UNIT_ROWS) -> list[list[str]]:
    """The partitions of ``parts`` (``(partition id, rows)`` per part, in partition order) grouped into
    units of at least ``unit_rows`` rows, the last one smaller; a partition is never split."""
    rows: dict[str, int] = {}
    for partition, count in parts:
        rows[partition] = rows.get(partition, 0) + count
    units: list[list[str]] = []
    size = unit_rows
    for partition, count in rows.items():
        if size >= unit_rows:
            units.append([])
            size = 0
        units[-1].append(partition)
        size += count
    return units


def unattached(
    before: Mapping[str, int], adds: Mapping[str, int], now: Mapping[str, int] | None
) -> list[str]:
    """The partitions of a staged unit still to attach into a table nothing else writes: ``adds`` are
    the stage's rows per partition id, ``before`` the table's rows per partition when the unit was
    staged, ``now`` its rows per partition on a resumed run (None: this run staged it, nothing is
    attached). A partition holding ``before + adds`` rows was attached by the interrupted run, one
    holding ``before`` was not; any other count is not a state the copy leaves, and raises
    :class:`ValueError` naming the partition.
    """
    left: list[str] = []
    for pid, rows in sorted(adds.items()):
        was = before.get(pid, 0)
        found = was if now is None else now.get(pid, 0)
        if found == was + rows:
            continue
        if found != was:
            raise ValueError(
                f"partition {pid} has {found} rows, {was} before this copy and {was + rows} after it"
            )
        left.append(pid)
    return left


def uncopied(
    before: Mapping[str, int], expected: Mapping[str, int], now: Mapping[str, int]
) -> tuple[list[str], list[str]]:
    """What is left of a unit copied straight into a table nothing else writes, from its rows per
    partition id: ``before`` the INSERT began (the unit's partitions empty), ``expected`` the rows
    the INSERT puts in each of them, ``now``. (partitions to drop, partitions to copy): one holding
    ``expected`` rows is done, one holding none is copied, one holding some is dropped (all its rows
    came from an INSERT that died) and copied again. Any other count (more than expected, a unit's
    partition that held rows before, a partition outside the unit changed) is not a state the copy
    leaves, and raises :class:`ValueError` naming the partition.
    """
    for pid in sorted(set(before) | set(now)):
        if pid not in expected and now.get(pid, 0) != before.get(pid, 0):
            raise ValueError(
                f"partition {pid}, not one copied into, has {now.get(pid, 0)} rows, {before.get(pid, 0)} before the copy"
            )
    drop: list[str] = []
    copy: list[str] = []
    for pid, rows in sorted(expected.items()):
        found = now.get(pid, 0)
        if before.get(pid, 0) > 0 or found > rows:
            raise ValueError(
                f"partition {pid} has {found} rows, {before.get(pid, 0)} before the copy and {rows} copied into it"
            )
        if found == rows:
            continue
        if found:
            drop.append(pid)
        copy.append(pid)
    return drop, copy


def copied_parts(
    rounds: Sequence[dict[str, Any]], exchanged: Sequence[Sequence[Any]]
) -> tuple[list[Part], list[Part]]:
    """From a rebuild's recorded progress: the source's parts its rounds copied (``"parts"``: partition
    id to ``[name, rows]``), and the copy's block range per partition when it was swapped in
    (``[partition id, lowest block, highest block]``), as guards take them
    (:func:`k2_migrations.decisions.guards.carry_copied`)."""
    copied = [
        Part.named(str(name), str(partition), int(rows))
        for round_ in rounds
        for partition, parts in round_["parts"].items()
        for name, rows in parts
    ]
    return copied, [Part("", str(pid), int(low), int(high), 0) for pid, low, high in exchanged]
