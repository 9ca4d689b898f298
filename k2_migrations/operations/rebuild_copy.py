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
from k2_migrations.decisions.rebuild import copy_units, unattached, uncopied
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
    #: Both tables partition the rows alike (the same key over columns of the same types): a source
    #: partition's rows land in the new table's partition of the same id. Set by the run before copying.
    same_partitions: bool

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
            # Recorded with its first unit's landing (or when done): a run killed before that has
            # attached nothing of this round, and the next one computes it again from the same block.
            rounds.append(current)
        columns = common_columns(rt.catalog, self.database, self.name, new)
        began = time.perf_counter()
        while current["next"] < len(current["units"]):
            landing = current["landing"]  # set: by the interrupted run, which may have died inside it
            if landing is None:
                self._copy_unit(rt, new, stage, current, columns)
            elif "straight" in landing:
                self._copy_straight(rt, new, current, columns, resumed=True)
            else:  # staged: its attaches are read from the counts
                counts = partition_counts(rt.catalog, self.database, new)
                self._attach(rt, new, stage, landing, counts)
            current["next"] += 1
            current["landing"] = None
        current["done"] = True
        current["seconds"] = round(float(current.get("seconds", 0)) + time.perf_counter() - began, 3)
        # Not saved here: the next durable point (a round's landing, or the exchange) records it, and a
        # run killed before that finds its last landing done and ends the round as this one did.
        return int(current["rows"])

    def _copy_unit(
        self, rt: StepContext, new: str, stage: str, current: dict[str, Any], columns: list[str]
    ) -> None:
        """Copy one unit: straight into the new table when its partitions are empty there and are the
        same partitions in both tables (the first round's, nearly all the rows: a run that dies inside
        the INSERT is undone by dropping what it wrote), else through the stage table, attached whole
        (a later round's, into partitions holding rows; or the partitioning changed)."""
        unit: list[str] = current["units"][current["next"]]
        before = partition_counts(rt.catalog, self.database, new)
        if not self.same_partitions or any(before.get(p, 0) for p in unit):
            self._attach(rt, new, stage, self._stage(rt, new, stage, current, columns, before), None)
            return
        current["landing"] = {"straight": self._expected(current, unit), "before": before}
        self._save(rt)  # before the INSERT: what a resumed run finds in these partitions came from it
        self._copy_straight(rt, new, current, columns, resumed=False)

    def _copy_straight(
        self, rt: StepContext, new: str, current: dict[str, Any], columns: list[str], *, resumed: bool
    ) -> None:
        """INSERT the unit's recorded parts into the new table, which nothing else writes, and count
        them there. ``resumed``: the interrupted run began this; partitions it filled are kept, any it
        left part-filled are dropped first, and the rest are copied (:func:`uncopied`)."""
        landing: dict[str, Any] = current["landing"]
        target = qualified(self.database, new)
        drop: list[str] = []
        copy = sorted(landing["straight"])
        if resumed:
            drop, copy = self._uncopied(rt, new, landing)
        for pid in drop:
            rt.execute(f"ALTER TABLE {target} DROP PARTITION ID {literal(pid)}")
        if copy:
            # insert_deduplicate = 0: a partition copied again after a drop holds the same blocks,
            # which a replicated table would otherwise take for duplicates and skip.
            self._insert(rt, target, current, copy, columns, "SETTINGS insert_deduplicate = 0")
            failpoints.reached("rebuild-copied", rt.client.command)
        _, short = self._uncopied(rt, new, landing)  # every partition not whole, an empty one too
        if short:
            raise GuardFailed(
                f"guard: copying partition(s) {', '.join(short)} of {self.table} gave fewer rows than its parts"
                f" hold; nothing was dropped — {target} holds the copy, compare it before re-running"
            )

    def _uncopied(self, rt: StepContext, new: str, landing: dict[str, Any]) -> tuple[list[str], list[str]]:
        now = partition_counts(rt.catalog, self.database, new)
        try:
            return uncopied(landing["before"], landing["straight"], now)
        except ValueError as exc:
            raise GuardFailed(
                f"guard: {self.database}.{new}: {exc}; nothing was dropped — {self.table} is untouched"
            ) from None

    def _stage(
        self,
        rt: StepContext,
        new: str,
        stage: str,
        current: dict[str, Any],
        columns: list[str],
        before: dict[str, int],
    ) -> dict[str, Any]:
        """One unit's rows in a stage table of the new structure, counted against the parts' own row
        counts, then recorded with the new table's counts ``before``: what a resumed run attaches from."""
        unit: list[str] = current["units"][current["next"]]
        expected = self._expected(current, unit)
        staged = self._fresh_stage(rt, stage, new)
        self._insert(rt, staged, current, unit, columns)
        failpoints.reached("rebuild-staged", rt.client.command)
        adds = self._count_stage(
            rt, stage, sum(expected.values()), f"partition(s) {', '.join(unit)} of {self.table}"
        )
        current["landing"] = {"before": before, "adds": adds}
        self._save(rt)
        return dict(current["landing"])

    def _insert(
        self,
        rt: StepContext,
        target: str,
        current: dict[str, Any],
        partitions: list[str],
        columns: list[str],
        settings: str = "",
    ) -> None:
        """INSERT ... SELECT the round's recorded parts of ``partitions`` into ``target``. By name: a
        part merged away since (after a restart) is missed, and the count then says so instead of
        copying fewer rows; the INSERT casts a column whose type changed."""
        parts = [str(name) for partition in partitions for name, _ in current["parts"][partition]]
        names = ", ".join(f"`{c}`" for c in columns)
        rt.execute(
            f"INSERT INTO {target} ({names}) SELECT {names} FROM {self.table}"
            f" WHERE _partition_id IN ({', '.join(literal(p) for p in partitions)})"
            f" AND _part IN ({', '.join(literal(p) for p in parts)})" + (f" {settings}" if settings else "")
        )

    @staticmethod
    def _expected(current: dict[str, Any], unit: list[str]) -> dict[str, int]:
        """The rows the round saw in each of ``unit``'s partitions (its recorded parts)."""
        return {p: sum(int(count) for _, count in current["parts"][p]) for p in unit}

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
