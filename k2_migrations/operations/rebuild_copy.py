"""The copy half of a rebuild (:class:`~k2_migrations.operations.rebuild.RebuildTable`): rounds that
copy the live table's new parts through a stage table into the new one, and the progress they
record in the snapshots table, one row per durable point.

Kept apart from the swap for length: :class:`CopyRounds` is a base of ``RebuildTable`` and works on
its fields and its recorded progress (``_state``); nothing else uses it.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from k2_migrations import failpoints
from k2_migrations.decisions.rebuild import copy_units, unattached
from k2_migrations.errors import GuardFailed
from k2_migrations.introspection.parts import common_columns, partition_counts, parts_after
from k2_migrations.sqltext.quoting import literal, qualified

if TYPE_CHECKING:
    from k2_migrations.engine.context import StepContext


class CopyRounds:
    """Copy rounds and their recorded progress, for :class:`~k2_migrations.operations.rebuild.RebuildTable`."""

    database: str
    name: str
    unit_rows: int
    _state: dict[str, Any]

    @property
    def table(self) -> str:
        return qualified(self.database, self.name)

    @property
    def table_key(self) -> str:
        return f"{self.database}.{self.name}"

    @property
    def progress_key(self) -> str:
        return f"{self.table_key}#rebuild"

    def _load(self, rt: StepContext) -> dict[str, Any]:
        assert rt.snapshots is not None
        saved = rt.snapshots.latest(rt.revision, self.progress_key, rt.attempt_id)
        state: dict[str, Any] = json.loads(saved) if saved else {"rounds": []}
        return state

    def _save(self, rt: StepContext) -> None:
        assert rt.snapshots is not None
        rt.snapshots.save(
            rt.revision, rt.attempt_id, {self.progress_key: json.dumps(self._state, sort_keys=True)}
        )

    def _round(self, rt: StepContext, new: str, stage: str) -> int:
        """Copy the parts above the last round's block, a unit at a time; the rows copied."""
        rounds: list[dict[str, Any]] = self._state["rounds"]
        if rounds and not rounds[-1]["done"]:
            current = rounds[-1]
        else:
            since = self._last_block()
            self._check_unmixed(rt, self.name, since)
            parts = parts_after(rt.catalog, self.database, self.name, since)
            by_partition: dict[str, list[tuple[str, int]]] = {}
            for partition, _, count, part in parts:
                by_partition.setdefault(partition, []).append((part, count))
            current = {
                "upto": max((p[1] for p in parts), default=since),
                "rows": sum(p[2] for p in parts),
                "units": copy_units([(p[0], p[2]) for p in parts], self.unit_rows),
                "parts": by_partition,
                "next": 0,
                "landing": None,
                "done": False,
            }
            rounds.append(current)
            self._save(rt)
        columns = common_columns(rt.catalog, self.database, self.name, new)
        began = time.perf_counter()
        while current["next"] < len(current["units"]):
            staged = current["landing"]  # by the interrupted run: its attaches are read from the counts
            landing = staged or self._stage(rt, new, stage, current, columns)
            self._attach(
                rt, new, stage, landing, partition_counts(rt.catalog, self.database, new) if staged else None
            )
            current["next"] += 1
            current["landing"] = None
        current["done"] = True
        current["seconds"] = round(float(current.get("seconds", 0)) + time.perf_counter() - began, 3)
        self._save(rt)
        return int(current["rows"])

    def _stage(
        self, rt: StepContext, new: str, stage: str, current: dict[str, Any], columns: list[str]
    ) -> dict[str, Any]:
        """One unit's rows (its partitions' parts in this round) in a stage table of the new structure,
        counted against the parts' own row counts, then recorded: what a resumed run attaches from."""
        unit: list[str] = current["units"][current["next"]]
        # The rows the round saw in these parts: a part merged away since (after a restart) is missed
        # by the INSERT below, and the count then says so instead of copying fewer rows.
        recorded = [
            (str(name), int(count)) for partition in unit for name, count in current["parts"][partition]
        ]
        parts = [name for name, _ in recorded]
        expected = sum(count for _, count in recorded)
        staged = self._fresh_stage(rt, stage, new)
        names = ", ".join(f"`{c}`" for c in columns)
        rt.execute(
            f"INSERT INTO {staged} ({names}) SELECT {names} FROM {self.table}"
            f" WHERE _partition_id IN ({', '.join(literal(p) for p in unit)})"
            f" AND _part IN ({', '.join(literal(p) for p in parts)})"
        )
        failpoints.reached("rebuild-staged", rt.client.command)
        adds = self._count_stage(rt, stage, expected, f"partition(s) {', '.join(unit)} of {self.table}")
        current["landing"] = {"before": partition_counts(rt.catalog, self.database, new), "adds": adds}
        self._save(rt)
        return dict(current["landing"])

    def _attach(
        self, rt: StepContext, new: str, stage: str, landing: dict[str, Any], counts: dict[str, int] | None
    ) -> None:
        """Attach the staged partitions into the new table, which nothing else writes: its rows per
        partition tell a resumed run (``counts``) which of them the interrupted one attached. All of
        them in one statement; partition by partition the ones left by a run that died inside it."""
        target, staged = qualified(self.database, new), qualified(self.database, stage)
        try:
            left = unattached(landing["before"], landing["adds"], counts)
        except ValueError as exc:
            raise GuardFailed(
                f"guard: {target}: {exc}; nothing was dropped — {self.table} is untouched"
            ) from None
        if left and len(left) == len(landing["adds"]):
            rt.execute(f"ALTER TABLE {target} ATTACH PARTITION ALL FROM {staged}")
            failpoints.reached("rebuild-attached", rt.client.command)
            return
        for pid in left:
            rt.execute(f"ALTER TABLE {target} ATTACH PARTITION ID {literal(pid)} FROM {staged}")
            failpoints.reached("rebuild-attached", rt.client.command)

    def _fresh_stage(self, rt: StepContext, stage: str, like: str | None = None) -> str:
        """An empty stage table of the new structure (``like``: the table that has it; default the live one)."""
        staged = qualified(self.database, stage)
        rt.execute(f"DROP TABLE IF EXISTS {staged}")
        rt.execute(f"CREATE TABLE {staged} AS {qualified(self.database, like or self.name)}")
        rt.execute(f"SYSTEM STOP MERGES {staged}")
        return staged

    def _count_stage(self, rt: StepContext, stage: str, expected: int, what: str) -> dict[str, int]:
        """The stage's rows per partition id, checked to add up to ``expected``."""
        adds = partition_counts(rt.catalog, self.database, stage)
        if sum(adds.values()) != expected:
            raise GuardFailed(
                f"guard: staging {what} copied {sum(adds.values())} rows of {expected}; nothing was dropped — "
                f"{self.database}.{stage} holds the copy, compare it before re-running"
            )
        return adds

    def _check_unmixed(self, rt: StepContext, table: str, after: int) -> None:
        """A part holding blocks on both sides of ``after`` cannot be split: merges ran between a
        restart and this run stopping them again. Say so rather than guess."""
        mixed = rt.catalog.scalar(
            "SELECT count() FROM system.parts WHERE database = {d:String} AND table = {t:String} AND active"
            " AND min_block_number <= {a:Int64} AND max_block_number > {a:Int64}",
            {"d": self.database, "t": table, "a": after},
        )
        if mixed:
            raise GuardFailed(
                f"rebuild of {self.table}: merges after a restart mixed copied and uncopied rows of "
                f"{self.database}.{table} (block {after}); nothing was dropped — drop the copy"
                f" {self.database}.{self.name}__new_{rt.attempt_id[:8]} if {self.table} is still the old table,"
                " and run again"
            )

    def _arrived(self, rt: StepContext) -> int:
        """The rows in the live table's parts above the last round's block: arrived since it began."""
        return sum(p[2] for p in parts_after(rt.catalog, self.database, self.name, self._last_block()))

    def _last_block(self) -> int:
        rounds: list[dict[str, Any]] = self._state["rounds"]
        return int(rounds[-1]["upto"]) if rounds else -1
