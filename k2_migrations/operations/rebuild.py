"""Rebuilding a table under a definition ClickHouse cannot ALTER to, while rows keep arriving.

ORDER BY beyond appending new columns, PARTITION BY, PRIMARY KEY, SAMPLE BY, the engine, a column
type that needs a rewrite: none of these has an ALTER. :class:`RebuildTable` copies the table into a
new one, swaps the two with ``EXCHANGE TABLES`` and keeps the replaced table. It copies first and
swaps last, so readers always see the whole table, and every row reaches the new table exactly once:

1. The new table ``<t>__new_<id>`` is created from the wanted DDL (``<id>``: the attempt's, so a
   resumed run finds its own tables). Merges on the live table stop: an INSERT takes the next block
   number, so, while no merge mixes parts, the rows in parts above a block number came after it.
2. Copy rounds. Each round copies, in units of whole partitions, the parts whose blocks are above
   the last round's and at most the highest block now, with INSERT ... SELECT (which casts a column
   whose type changed), counted per partition against the parts' rows. A unit whose partitions are
   empty in the new table, and the same partitions there (the partition key and its columns'
   types unchanged), goes straight into it: the first round, nearly all the rows. A run killed
   inside that INSERT finds each partition whole, empty or part-written, and drops only the last
   (everything in it came from that INSERT) before copying again. Any other unit (a later round's,
   into partitions holding rows, or with a new partitioning) goes into a stage table of the new
   structure and is attached whole (``ATTACH PARTITION ALL FROM`` the stage). Nothing reads the new
   or the stage table, so the copy fires no materialized view; nothing else writes them either, so
   their counts tell exactly what a resumed run still has to copy or attach.
3. When a round copies fewer than ``LAST_ROUND_ROWS``, or fewer than that arrived while it copied
   (those are landed after the swap, below: one round less), ``EXCHANGE TABLES t AND <t>__new_<id>``: from
   then on writers, materialized views reading ``t`` and views writing into it reach the new table by
   name (measured: a view follows the name across EXCHANGE). The replaced table is detached and
   attached again, which waits for INSERTs that were still running into it; the rows that reached it
   after the last round (they fired the views already) are staged and attached into the live table.
   That one landing happens where writers write too, so a run killed inside it recognises what it
   attached by the rows themselves. The replaced table is renamed ``<t>__old_<id>``, kept, and named
   in the summary: a later revision drops it with ``op.drop_object(..., allow_rows=True)``.

Progress (the rounds, which partitions were attached) is appended to the snapshots table, one row
per durable point, next to the captured definition that a downgrade rebuilds back to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alembic.operations import Operations

from k2_migrations import failpoints
from k2_migrations.decisions.rebuild import UNIT_ROWS, copied_parts
from k2_migrations.engine.context import Payload
from k2_migrations.errors import GuardFailed, UsageError
from k2_migrations.introspection.parts import block_ranges, common_columns, partitioned_alike, parts_after
from k2_migrations.operations.base import ClickHouseOperation, _register
from k2_migrations.operations.guards import carry_guards_copied, replay_carried
from k2_migrations.operations.rebuild_copy import CopyRounds
from k2_migrations.sqltext.created import renamed_create
from k2_migrations.sqltext.quoting import literal, qualified

if TYPE_CHECKING:
    from k2_migrations.engine.context import StepContext
    from k2_migrations.introspection.catalog import TableInfo

#: Database engines whose tables EXCHANGE TABLES swaps (measured on chDB: Atomic and its Overlay ``default``).
EXCHANGES = frozenset({"Atomic", "Overlay", "Replicated"})
#: A round that copies fewer rows than this is the last before the swap.
LAST_ROUND_ROWS = 10_000
#: Keep the replaced table's parts as they are across DETACH/ATTACH and restarts, until it is kept.
_MERGE_LIMITS = ("max_bytes_to_merge_at_max_space_in_pool", "max_bytes_to_merge_at_min_space_in_pool")
_NO_MERGES = "ALTER TABLE {table} MODIFY SETTING " + ", ".join(f"{s} = 1" for s in _MERGE_LIMITS)
#: Rounds and swaps before the run gives up on a table that never stops receiving rows in the gap.
MAX_ROUNDS = 20
#: How long the swap waits for INSERTs still running into the replaced table, and how often it looks.
DRAIN_TIMEOUT_S = 300.0
DRAIN_POLL_S = 0.02


@_register("rebuild_table")
@dataclass(eq=False)
class RebuildTable(CopyRounds, ClickHouseOperation):
    """Rebuild ``database.name`` as ``ddl`` says (``CREATE TABLE database.name ...``), keeping every row.

    With ``ddl=None`` the table is rebuilt as it was before revision ``captured_in`` (default: the
    running one) rebuilt it: what a downgrade calls, and what :meth:`reverse` returns. Partitions
    are copied in units of at least ``unit_rows`` rows (a partition at a time when they are larger):
    each unit is one INSERT and one durable record, the granularity at which a killed run resumes.
    """

    database: str
    name: str
    ddl: str | None = None
    captured_in: str | None = None
    unit_rows: int = UNIT_ROWS
    _state: dict[str, Any] = field(default_factory=dict, repr=False)
    same_partitions: bool = field(default=False, repr=False)

    @classmethod
    def rebuild_table(
        cls,
        operations: Operations,
        database: str,
        name: str,
        ddl: str | None = None,
        *,
        captured_in: str | None = None,
        unit_rows: int = UNIT_ROWS,
    ) -> None:
        if ddl is not None:
            renamed_create(
                ddl, database, name, name
            )  # a DDL for another table is the author's mistake: say so now
        operations.invoke(cls(database, name, ddl, captured_in, unit_rows))

    def describe(self) -> str:
        wanted = "as its definition before the rebuild" if self.ddl is None else "to a new definition"
        return f"rebuild {self.database}.{self.name} {wanted} (copy, then EXCHANGE TABLES)"

    def render(self) -> list[str]:
        new = qualified(self.database, f"{self.name}__new_<id>")
        create = (
            renamed_create(self.ddl, self.database, self.name, f"{self.name}__new_<id>")
            if self.ddl is not None
            else f"-- CREATE TABLE {new} as {self.table} was before revision {self.captured_in or 'this one'}"
        )
        return [
            create,
            f"SYSTEM STOP MERGES {self.table}",
            f"-- per unit of partitions, per round: INSERT INTO {new} SELECT ... FROM {self.table} WHERE _part"
            f" IN (...) while the unit's partitions are empty there and the partition key is the same (the"
            f" first round); else INSERT INTO <stage> SELECT ...; ALTER TABLE {new} ATTACH PARTITION ALL FROM <stage>",
            f"EXCHANGE TABLES {self.table} AND {new}",
            f"-- DETACH TABLE / ATTACH TABLE the replaced table (waits for INSERTs running into it), stage the"
            f" rows it got after the last round and ATTACH them into {self.table} (no view fires twice)",
            f"-- RENAME the replaced table TO {self.name}__old_<id>: kept, named in the summary; ALTER TABLE it"
            f" RESET SETTING {', '.join(_MERGE_LIMITS)} (it merges again)",
        ]

    def guard_notes(self) -> list[str]:
        return [
            f"each copied partition: rows copied (straight, or staged then attached) = rows of its parts in {self.table}",
            "after the swap: rows in the kept table = rows copied from it",
        ]

    def reverse(self) -> ClickHouseOperation:
        return RebuildTable(self.database, self.name, None, self.captured_in, self.unit_rows)

    # -- apply ------------------------------------------------------------------------------------

    def apply(self, rt: StepContext) -> Payload:
        assert rt.snapshots is not None
        suffix = rt.attempt_id[:8]
        new, stage, old = (
            f"{self.name}__new_{suffix}",
            f"{self.name}__stage_{suffix}",
            f"{self.name}__old_{suffix}",
        )
        self._check_database(rt)
        live = rt.catalog.tables(self.database, [self.name, new, old])
        self._state = self._load(rt)
        if old in live and new not in live:
            return self._finished(rt, old, "rebuilt by the interrupted run")
        if self.name not in live:
            raise UsageError(
                f"cannot rebuild {self.table}: it does not exist; the schema is not what this revision expects"
            )
        if new not in live and "new_shape" in self._state:
            # This attempt created it and never drops it: killed while it was detached (a server keeps
            # it so; the embedded engine attaches it again when it opens).
            self._attach_when_unused(rt, new)
            live = rt.catalog.tables(self.database, [self.name, new, old])
        if new not in live:
            wanted = self._wanted(rt)
            rt.execute(renamed_create(wanted, self.database, self.name, new))
            created = rt.catalog.tables(self.database, [new])[new]
            if _shape(created, new) == _shape(live[self.name], self.name):
                rt.execute(f"DROP TABLE {qualified(self.database, new)}")
                return self._unchanged(rt)
            self._state = {
                "old_ddl": live[self.name].create_query,
                "new_shape": _shape(created, new),
                "rounds": [],
            }
            self._save(rt)
            live[new] = created
        if self._swapped(live[self.name], live[new], new):
            # Killed after the exchange: the replaced table is under the new table's name.
            return self._settle(rt, new, stage, old)
        self._stop_merges(rt, live[new])
        self.same_partitions = partitioned_alike(rt.catalog, self.database, live[self.name], live[new])
        for _ in range(MAX_ROUNDS):
            if self._round(rt, new, stage) >= LAST_ROUND_ROWS and self._arrived(rt) >= LAST_ROUND_ROWS:
                continue
            copied = sum(int(r["rows"]) for r in self._state["rounds"])
            if rt.catalog.count(self.database, new) != copied:
                raise GuardFailed(
                    f"guard: {self.database}.{new} has {rt.catalog.count(self.database, new)} rows, {copied} were"
                    f" copied into it from {self.table}; nothing was swapped — {self.table} is untouched"
                )
            # What the copy holds, by block range: what this run's guards judge after the swap.
            self._state["exchanged"] = [list(r) for r in block_ranges(rt.catalog, self.database, new)]
            self._save(rt)
            failpoints.reached("rebuild-before-exchange", rt.client.command)
            rt.execute(f"EXCHANGE TABLES {self.table} AND {qualified(self.database, new)}")
            rt.execute(_NO_MERGES.format(table=qualified(self.database, new)))
            failpoints.reached("rebuild-exchanged", rt.client.command)
            return self._settle(rt, new, stage, old)
        raise GuardFailed(
            f"rebuild of {self.table}: rows kept arriving after {MAX_ROUNDS} copy rounds; nothing was swapped — "
            f"{self.database}.{new} holds a partial copy (safe to drop), {self.table} is untouched"
        )

    def _settle(self, rt: StepContext, new: str, stage: str, old: str) -> Payload:
        """After the exchange: wait for INSERTs still running into the replaced table, then land the
        rows that reached it after the last round (they fired the views already) through the stage."""
        replaced = qualified(self.database, new)
        delta: dict[str, Any] | None = self._state.get("delta")
        if delta is None:
            # SYSTEM STOP MERGES does not survive DETACH/ATTACH (measured: 30 parts merged into one
            # within 3 s); merge size limits of 1 byte, a setting of the table, do.
            rt.execute(_NO_MERGES.format(table=replaced))
            rt.execute(f"DETACH TABLE {replaced}")
            self._attach_when_unused(rt, new)
            after = self._last_block()
            parts = parts_after(rt.catalog, self.database, new, after)
            self._check_unmixed(rt, new, after)
            rows = sum(p[2] for p in parts)
            delta = {"rows": rows, "landed": rows == 0}
            if rows:
                columns = ", ".join(
                    f"`{c}`" for c in common_columns(rt.catalog, self.database, new, self.name)
                )
                staged = self._fresh_stage(rt, stage)
                names = ", ".join(literal(p[3]) for p in parts)
                rt.execute(
                    f"INSERT INTO {staged} ({columns}) SELECT {columns} FROM {replaced} WHERE _part IN ({names})"
                )
                delta["adds"] = self._count_stage(
                    rt, stage, rows, "the rows that reached the replaced table after the copy"
                )
            self._state["delta"] = delta
            self._save(rt)
        if not delta["landed"]:
            self._land_delta(rt, stage, delta)
        kept = rt.catalog.count(self.database, new)
        copied = sum(int(r["rows"]) for r in self._state["rounds"]) + int(delta["rows"])
        if kept != copied:
            raise GuardFailed(
                f"guard: the replaced table {replaced} has {kept} rows, {copied} were copied from it into "
                f"{self.table}; nothing was dropped — compare the two before re-running"
            )
        rt.execute(f"DROP TABLE IF EXISTS {qualified(self.database, stage)}")
        rt.execute(f"RENAME TABLE {replaced} TO {qualified(self.database, old)}")
        # A guard holding merges on the table (a collapsing engine) holds them on the rebuilt one too.
        held = (self.database, self.name) in rt.stopped_merges
        rt.execute(f"SYSTEM {'STOP' if held else 'START'} MERGES {self.table}")
        return self._finished(rt, old, f"{copied} rows copied")

    def _land_delta(self, rt: StepContext, stage: str, delta: dict[str, Any]) -> None:
        """Attach the staged late rows into the live table, which writers also write: a partition that
        a killed run attached is recognised by its rows (every staged row already there)."""
        staged = qualified(self.database, stage)
        columns = ", ".join(f"`{c}`" for c in common_columns(rt.catalog, self.database, stage, stage))
        for pid, adds in sorted(delta["adds"].items()):
            there = int(
                rt.catalog.scalar(
                    f"SELECT count() FROM {self.table} WHERE _partition_id = {literal(pid)} AND ({columns}) IN"
                    f" (SELECT {columns} FROM {staged} WHERE _partition_id = {literal(pid)})"
                )
            )
            if there >= adds:
                continue
            if there:
                raise GuardFailed(
                    f"guard: {there} of the {adds} late rows of partition {pid} are in {self.table} already; "
                    f"nothing was dropped — {staged} holds them, compare before re-running"
                )
            rt.execute(f"ALTER TABLE {self.table} ATTACH PARTITION ID {literal(pid)} FROM {staged}")
            failpoints.reached("rebuild-attached", rt.client.command)
        delta["landed"] = True
        self._save(rt)

    def _unchanged(self, rt: StepContext) -> Payload:
        """Nothing to rebuild. A copy left by a rebuild that was interrupted and then reverted before
        its swap is named (it holds copies only), and the merges it stopped on the table restart."""
        prefix = f"{self.name}__new_"
        left = [n for n in rt.catalog.table_names(self.database) if n.startswith(prefix)]
        if not left:
            return {"note": "already in this shape: nothing to do"}
        rt.execute(f"SYSTEM START MERGES {self.table}")
        copies = ", ".join(f"{self.database}.{n}" for n in left)
        return {
            "note": f"already in this shape; {copies}: partial copy of an interrupted rebuild, safe to drop"
        }

    def _attach_when_unused(self, rt: StepContext, table: str) -> None:
        """ATTACH a table this step detached. DETACH returns at once, but ATTACH is refused while a
        query still uses the detached table (measured: ``Code: 57 ... detached but still used by
        some query``): retrying until it succeeds is what waits for INSERTs begun before the swap."""
        from clickhouse_connect.driver.exceptions import DatabaseError

        deadline = rt.now() + DRAIN_TIMEOUT_S
        while True:
            try:
                rt.execute(f"ATTACH TABLE {qualified(self.database, table)}")
                return
            except DatabaseError as exc:
                if "still used by some query" not in str(exc) or rt.now() > deadline:
                    raise
            time.sleep(DRAIN_POLL_S)

    def _finished(self, rt: StepContext, old: str, how: str) -> Payload:
        """The step's result; this run's guards of the table now judge the copy (which took its name)."""
        kept = f"{self.database}.{old}"
        extra: Payload = {}
        rounds: list[dict[str, Any]] = self._state.get("rounds", [])
        if rounds:  # the copy's own time (the rounds), beside the step's: what a copy rate is taken over
            seconds = round(sum(float(r.get("seconds", 0)) for r in rounds), 3)
            extra["copy_s"] = seconds
            how += f" in {len(rounds)} round(s), {seconds:.2f} s of copying"
        if "exchanged" in self._state:
            copied, copies = copied_parts(rounds, self._state["exchanged"])
            extra |= carry_guards_copied(rt, self.table_key, copied, copies)
            # The kept table merges again: the limits the swap set go, unless it had them before.
            if reset := [s for s in _MERGE_LIMITS if s not in self._state["old_ddl"]]:
                rt.execute(f"ALTER TABLE {qualified(self.database, old)} RESET SETTING {', '.join(reset)}")
        return {
            **extra,
            "note": f"{how}; the replaced table is kept as {kept} (drop it in a later revision:"
            f" op.drop_object({self.database!r}, {old!r}, allow_rows=True))",
            "kept": kept,
        }

    def replay(self, rt: StepContext, payload: Payload) -> None:
        replay_carried(rt, payload)

    def _swapped(self, live: TableInfo, other: TableInfo, new: str) -> bool:
        return _shape(live, self.name) == self._state.get("new_shape") != _shape(other, new)

    def _check_database(self, rt: StepContext) -> None:
        engine = rt.catalog.database_engine(self.database)
        if rt.catalog.cluster is not None:
            raise UsageError(
                f"rebuild_table does not run in cluster mode: {self.table} would be swapped on one replica; "
                "rebuild it on each shard's Replicated database, or with a migration of its own"
            )
        if engine not in EXCHANGES:
            raise UsageError(
                f"cannot rebuild {self.table}: its database has the {engine} engine, which has no EXCHANGE TABLES; "
                f"move the table into an Atomic database first (op.move_table)"
            )

    def _stop_merges(self, rt: StepContext, new: TableInfo) -> None:
        rt.execute(f"SYSTEM STOP MERGES {self.table}")
        if new.collapses:
            rt.execute(f"SYSTEM STOP MERGES {qualified(self.database, new.name)}")

    def _wanted(self, rt: StepContext) -> str:
        if self.ddl is not None:
            assert rt.snapshots is not None
            if rt.snapshots.latest(rt.revision, self.table_key, rt.attempt_id) is None:
                info = rt.catalog.table(self.database, self.name)
                assert info is not None
                rt.snapshots.save(rt.revision, rt.attempt_id, {self.table_key: info.create_query})
            return self.ddl
        revision = self.captured_in or rt.revision
        assert rt.snapshots is not None
        captured = rt.snapshots.latest(revision, self.table_key)
        if captured is None:
            raise UsageError(
                f"no definition of {self.table} captured by revision {revision}: it did not rebuild this table "
                "(or was stamped); give rebuild_table the DDL to rebuild to"
            )
        return captured


def _shape(info: TableInfo, name: str) -> str:
    """The table's definition as the engine renders it, its own name taken out (to compare two tables)."""
    return info.create_query.replace(qualified(info.database, name), "<table>").replace(
        f"{info.database}.{name}", "<table>"
    )
