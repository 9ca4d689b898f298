"""Rebuilding a table under a definition ClickHouse cannot ALTER to, while rows keep arriving.

ORDER BY beyond appending new columns, PARTITION BY, PRIMARY KEY, SAMPLE BY, the engine, a column
type that needs a rewrite: none of these has an ALTER. :class:`RebuildTable` copies the table into a
new one, swaps the two with ``EXCHANGE TABLES`` and keeps the replaced table. It copies first and
swaps last, so readers always see the whole table, and every row reaches the new table exactly once:

1. The new table ``<t>__new_<id>`` is created from the wanted DDL (``<id>``: the attempt's, so a
   resumed run finds its own tables). Merges on the live table stop: an INSERT takes the next block
   number, so, while no merge mixes parts, the rows in parts above a block number came after it.
2. Copy rounds. Each round copies, partition by partition, the parts whose blocks are above the
   last round's and at most the highest block now: INSERT ... SELECT into a stage table of the new
   structure (the INSERT casts a column whose type changed), counted against the parts' rows, then
   attached partition by partition into the new table. Nothing reads the new or the stage table,
   so the copy fires no materialized view. Nothing writes the new table either, so its counts tell
   exactly which partitions a resumed run still has to attach.
3. When a round copies fewer than ``LAST_ROUND_ROWS``, ``EXCHANGE TABLES t AND <t>__new_<id>``: from
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

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alembic.operations import Operations

from k2_migrations import failpoints
from k2_migrations.engine.context import Payload
from k2_migrations.errors import GuardFailed, UsageError
from k2_migrations.operations.base import ClickHouseOperation, _register
from k2_migrations.sqltext.quoting import literal, qualified
from k2_migrations.sqltext.tokens import Kind, tokenize

if TYPE_CHECKING:
    from k2_migrations.engine.context import StepContext
    from k2_migrations.introspection.catalog import TableInfo

#: Database engines whose tables EXCHANGE TABLES swaps (measured on chDB: Atomic and its Overlay ``default``).
EXCHANGES = frozenset({"Atomic", "Overlay", "Replicated"})
#: A round that copies fewer rows than this is the last before the swap.
LAST_ROUND_ROWS = 10_000
#: Rounds and swaps before the run gives up on a table that never stops receiving rows in the gap.
MAX_ROUNDS = 20


@_register("rebuild_table")
@dataclass(eq=False)
class RebuildTable(ClickHouseOperation):
    """Rebuild ``database.name`` as ``ddl`` says (``CREATE TABLE database.name ...``), keeping every row.

    With ``ddl=None`` the table is rebuilt as it was before revision ``captured_in`` (default: the
    running one) rebuilt it: what a downgrade calls, and what :meth:`reverse` returns.
    """

    database: str
    name: str
    ddl: str | None = None
    captured_in: str | None = None
    _state: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def rebuild_table(
        cls,
        operations: Operations,
        database: str,
        name: str,
        ddl: str | None = None,
        *,
        captured_in: str | None = None,
    ) -> None:
        if ddl is not None:
            _renamed(ddl, database, name, name)  # a DDL for another table is the author's mistake: say so now
        operations.invoke(cls(database, name, ddl, captured_in))

    @property
    def table(self) -> str:
        return qualified(self.database, self.name)

    def describe(self) -> str:
        wanted = "as its definition before the rebuild" if self.ddl is None else "to a new definition"
        return f"rebuild {self.database}.{self.name} {wanted} (copy, then EXCHANGE TABLES)"

    def render(self) -> list[str]:
        new = qualified(self.database, f"{self.name}__new_<id>")
        create = (
            _renamed(self.ddl, self.database, self.name, f"{self.name}__new_<id>")
            if self.ddl is not None
            else f"-- CREATE TABLE {new} as {self.table} was before revision {self.captured_in or 'this one'}"
        )
        return [
            create,
            f"SYSTEM STOP MERGES {self.table}",
            f"-- per partition, per round: INSERT INTO <stage> SELECT ... FROM {self.table} WHERE _part IN (...);"
            f" ALTER TABLE {new} ATTACH PARTITION ID '...' FROM <stage>",
            f"EXCHANGE TABLES {self.table} AND {new}",
            f"-- DETACH TABLE / ATTACH TABLE the replaced table (waits for INSERTs running into it), stage the"
            f" rows it got after the last round and ATTACH them into {self.table} (no view fires twice)",
            f"-- RENAME the replaced table TO {self.name}__old_<id>: kept, named in the summary",
        ]

    def guard_notes(self) -> list[str]:
        return [
            f"each copied partition: rows staged = rows of its parts in {self.table}, rows attached = rows staged",
            "after the swap: rows in the kept table = rows copied from it",
        ]

    def reverse(self) -> ClickHouseOperation:
        return RebuildTable(self.database, self.name, None, self.captured_in)

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
        if old in live and new not in live:
            return self._finished(rt, old, "rebuilt by the interrupted run")
        if self.name not in live:
            raise UsageError(
                f"cannot rebuild {self.table}: it does not exist; the schema is not what this revision expects"
            )
        self._state = self._load(rt)
        if new not in live:
            wanted = self._wanted(rt)
            rt.execute(_renamed(wanted, self.database, self.name, new))
            created = rt.catalog.tables(self.database, [new])[new]
            if _shape(created, new) == _shape(live[self.name], self.name):
                rt.execute(f"DROP TABLE {qualified(self.database, new)}")
                return {"note": "already in this shape: nothing to do"}
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
        for _ in range(MAX_ROUNDS):
            if self._round(rt, new, stage) >= LAST_ROUND_ROWS:
                continue
            failpoints.reached("rebuild-before-exchange", rt.client.command)
            rt.execute(f"EXCHANGE TABLES {self.table} AND {qualified(self.database, new)}")
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
            rt.execute(f"DETACH TABLE {replaced}")
            rt.execute(f"ATTACH TABLE {replaced}")
            rt.execute(f"SYSTEM STOP MERGES {replaced}")
            after = self._last_block()
            parts = self._parts_after(rt, new, after)
            self._check_unmixed(rt, new, after)
            rows = sum(p[2] for p in parts)
            delta = {"rows": rows, "landed": rows == 0}
            if rows:
                columns = ", ".join(f"`{c}`" for c in self._common_columns(rt, new, self.name))
                staged = self._fresh_stage(rt, stage)
                names = ", ".join(literal(p[3]) for p in parts)
                rt.execute(
                    f"INSERT INTO {staged} ({columns}) SELECT {columns} FROM {replaced} WHERE _part IN ({names})"
                )
                self._count_stage(rt, stage, rows, "the rows that reached the replaced table after the copy")
                delta["adds"] = self._partition_counts(rt, stage)
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
        rt.execute(f"SYSTEM START MERGES {self.table}")
        return self._finished(rt, old, f"{copied} rows copied")

    def _land_delta(self, rt: StepContext, stage: str, delta: dict[str, Any]) -> None:
        """Attach the staged late rows into the live table, which writers also write: a partition that
        a killed run attached is recognised by its rows (every staged row already there)."""
        staged = qualified(self.database, stage)
        columns = ", ".join(f"`{c}`" for c in self._common_columns(rt, stage, stage))
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

    def _finished(self, rt: StepContext, old: str, how: str) -> Payload:
        kept = f"{self.database}.{old}"
        return {
            "note": f"{how}; the replaced table is kept as {kept} (drop it in a later revision:"
            f" op.drop_object({self.database!r}, {old!r}, allow_rows=True))",
            "kept": kept,
        }

    # -- copy rounds ------------------------------------------------------------------------------

    def _round(self, rt: StepContext, new: str, stage: str) -> int:
        """Copy the parts above the last round's block, partition by partition; the rows copied."""
        rounds: list[dict[str, Any]] = self._state["rounds"]
        if rounds and not rounds[-1]["done"]:
            current = rounds[-1]
        else:
            since = self._last_block()
            parts = self._parts_after(rt, self.name, since)
            current = {
                "after": since,
                "upto": max((p[1] for p in parts), default=since),
                "rows": sum(p[2] for p in parts),
                "partitions": sorted({p[0] for p in parts}),
                "attached": [],
                "done": False,
            }
            rounds.append(current)
            self._save(rt)
        for partition in current["partitions"]:
            if partition not in current["attached"]:
                self._copy_partition(rt, new, stage, current, partition)
        current["done"] = True
        self._save(rt)
        return int(current["rows"])

    def _copy_partition(
        self, rt: StepContext, new: str, stage: str, current: dict[str, Any], partition: str
    ) -> None:
        landing: dict[str, Any] | None = current.get("landing")
        if landing is None or landing["partition"] != partition:
            landing = self._stage(rt, new, stage, current, partition)
        target = qualified(self.database, new)
        counts = self._partition_counts(rt, new)
        for pid, adds in sorted(landing["adds"].items()):
            before, now = int(landing["before"].get(pid, 0)), counts.get(pid, 0)
            if now == before + adds:
                continue  # attached by the run that was interrupted
            if now != before:
                raise GuardFailed(
                    f"guard: partition {pid} of {target} has {now} rows, {before} before this copy and "
                    f"{before + adds} after it; nothing was dropped — {self.table} is untouched"
                )
            rt.execute(
                f"ALTER TABLE {target} ATTACH PARTITION ID {literal(pid)} FROM {qualified(self.database, stage)}"
            )
            failpoints.reached("rebuild-attached", rt.client.command)
        current["attached"].append(partition)
        current["landing"] = None
        self._save(rt)

    def _stage(
        self, rt: StepContext, new: str, stage: str, current: dict[str, Any], partition: str
    ) -> dict[str, Any]:
        """The rows of one partition's parts in the round, in a stage table of the new structure, counted."""
        parts = [
            p
            for p in self._parts_after(rt, self.name, current["after"])
            if p[0] == partition and p[1] <= current["upto"]
        ]
        self._check_unmixed(rt, self.name, int(current["after"]))
        expected = sum(p[2] for p in parts)
        staged = self._fresh_stage(rt, stage, new)
        names = ", ".join(f"`{c}`" for c in self._common_columns(rt, self.name, new))
        part_list = ", ".join(literal(p[3]) for p in parts)
        rt.execute(
            f"INSERT INTO {staged} ({names}) SELECT {names} FROM {self.table}"
            f" WHERE _partition_id = {literal(partition)} AND _part IN ({part_list})"
        )
        failpoints.reached("rebuild-staged", rt.client.command)
        self._count_stage(rt, stage, expected, f"partition {partition} of {self.table}")
        landing = {
            "partition": partition,
            "before": self._partition_counts(rt, new),
            "adds": self._partition_counts(rt, stage),
        }
        current["landing"] = landing
        self._save(rt)
        return landing

    def _fresh_stage(self, rt: StepContext, stage: str, like: str | None = None) -> str:
        """An empty stage table of the new structure (``like``: the table that has it; default the live one)."""
        staged = qualified(self.database, stage)
        rt.execute(f"DROP TABLE IF EXISTS {staged}")
        rt.execute(f"CREATE TABLE {staged} AS {qualified(self.database, like or self.name)}")
        rt.execute(f"SYSTEM STOP MERGES {staged}")
        return staged

    def _count_stage(self, rt: StepContext, stage: str, expected: int, what: str) -> None:
        got = rt.catalog.count(self.database, stage)
        if got != expected:
            raise GuardFailed(
                f"guard: staging {what} copied {got} rows of {expected}; nothing was dropped — "
                f"{self.database}.{stage} holds the copy, compare it before re-running"
            )

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

    # -- reading the live state -------------------------------------------------------------------

    def _parts_after(self, rt: StepContext, table: str, block: int) -> list[tuple[str, int, int, str]]:
        """(partition id, max block, rows, name) of the active parts holding blocks above ``block``."""
        rows = rt.catalog.rows(
            "SELECT partition_id, max_block_number, rows, name FROM system.parts WHERE database = {d:String}"
            " AND table = {t:String} AND active AND max_block_number > {b:Int64} ORDER BY partition_id, name",
            {"d": self.database, "t": table, "b": block},
        )
        return [(str(p), int(m), int(r), str(n)) for p, m, r, n in rows]

    def _partition_counts(self, rt: StepContext, table: str) -> dict[str, int]:
        rows = rt.catalog.rows(
            f"SELECT _partition_id, count() FROM {qualified(self.database, table)} GROUP BY _partition_id"
        )
        return {str(p): int(n) for p, n in rows}

    def _common_columns(self, rt: StepContext, source: str, target: str) -> list[str]:
        """The target's stored columns that the source has too, in the target's order."""
        columns = rt.catalog.columns_by_table(self.database, [source, target])
        present = {c.name for c in columns.get(source, [])}
        return [
            c.name
            for c in columns.get(target, [])
            if c.name in present and c.default_kind not in ("MATERIALIZED", "ALIAS")
        ]

    def _last_block(self) -> int:
        rounds: list[dict[str, Any]] = self._state["rounds"]
        return int(rounds[-1]["upto"]) if rounds else -1

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

    # -- progress, kept in the snapshots table -----------------------------------------------------

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


def _shape(info: TableInfo, name: str) -> str:
    """The table's definition as the engine renders it, its own name taken out (to compare two tables)."""
    return info.create_query.replace(qualified(info.database, name), "<table>").replace(
        f"{info.database}.{name}", "<table>"
    )


def _renamed(ddl: str, database: str, name: str, to: str) -> str:
    """``ddl`` (``CREATE TABLE database.name ...``) creating ``database.to`` instead, every other byte unchanged."""
    tokens = tokenize(ddl)
    words = [t.upper() for t in tokens]
    if "TABLE" not in words[:4] or words[0] != "CREATE":
        raise UsageError(
            f"rebuild_table of {database}.{name} needs a CREATE TABLE statement, got: {ddl.strip()[:80]}"
        )
    at = words.index("TABLE") + 1
    if words[at : at + 3] == ["IF", "NOT", "EXISTS"]:
        at += 3
    end = at + 2 if at + 2 < len(tokens) and tokens[at + 1].value == "." else at
    said = (tokens[at].value, tokens[end].value) if end != at else (None, tokens[at].value)
    if said != (database, name) or not all(
        t.kind in (Kind.WORD, Kind.QUOTED) for t in (tokens[at], tokens[end])
    ):
        raise UsageError(
            f"rebuild_table of {database}.{name} needs DDL creating {database}.{name} (fully qualified), "
            f"got one creating {'.'.join(s for s in said if s)}"
        )
    return ddl[: tokens[at].start] + qualified(database, to) + ddl[tokens[end].end :]
