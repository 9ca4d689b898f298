"""Row-count guards, checks and timed intervals: how a run proves it lost nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from alembic.operations import Operations

from k2_migrations.decisions.guards import Part, Verdict, carry, carry_copied, counted, judge
from k2_migrations.engine.context import Payload
from k2_migrations.errors import GuardFailed, UsageError
from k2_migrations.operations.base import ClickHouseOperation, _qualify, _register, _squash, one_statement
from k2_migrations.sqltext.quoting import qualified

if TYPE_CHECKING:
    from k2_migrations.engine.context import StepContext
    from k2_migrations.engine.results import DroppedTable, GuardResult
    from k2_migrations.introspection.catalog import TableInfo

# -- guards, checks and timed intervals ---------------------------------------------------------


@_register("take_guards")
@dataclass(eq=False)
class TakeGuards(ClickHouseOperation):
    """Record each table's active parts (name, block range, rows) before the operations a later
    :class:`CheckGuards` covers: the rows that exist at the baseline, told apart from any inserted
    later (see :mod:`k2_migrations.decisions.guards`). Read from ``system.parts``: no scan.

    On engines whose merges collapse rows (Replacing-, Aggregating-, Summing-, Collapsing-MergeTree)
    merges are stopped first and stay stopped until the check. Others keep merging (an ALTER, even
    ADD COLUMN, waits for stopped merges): a merge of a baseline part with a newer one can then hide
    a lost baseline row behind at most as many rows inserted into that part. ``relocate`` maps
    databases the tables are moving to
    (``{"default": "k2"}``): the check reads them there, and a re-run that finds a table already
    moved reads it where it is. The baseline is journaled, so a run resumed after a crash compares
    against the parts recorded before anything moved. A table without parts (not MergeTree) is
    counted.
    """

    journal_eagerly = True

    label: str
    tables: list[str]
    relocate: dict[str, str] = field(default_factory=dict)

    @classmethod
    def take_guards(
        cls, operations: Operations, label: str, tables: list[str], *, relocate: dict[str, str] | None = None
    ) -> None:
        operations.invoke(cls(label, list(tables), relocate or {}))

    def touches(self) -> set[str]:
        return {t.split(".", 1)[0] for t in self.tables} | set(self.relocate.values())

    def describe(self) -> str:
        return f"guard '{self.label}': count {len(self.tables)} table(s)"

    def render(self) -> list[str]:
        return [f"-- the active parts of {_qualify(t)} (system.parts), or its count()" for t in self.tables]

    def guard_notes(self) -> list[str]:
        return [f"baseline parts of {t}" for t in self.tables]

    def apply(self, rt: StepContext) -> Payload:
        parts: dict[str, list[Part]] = {}
        stopped: list[str] = []
        live = self._live(rt)
        for table in self.tables:
            database, name = table.split(".", 1)
            info = live.get((database, name)) or live.get((self.relocate.get(database, database), name))
            if info is None:
                raise UsageError(f"guard '{self.label}': table {table} does not exist")
            if info.collapses:
                rt.stop_merges(info.database, name)
                stopped.append(info.qualified)
            parts[table] = live_parts(rt, info)
        self._forget_earlier_drops(rt)
        rt.guard_baselines[self.label] = (parts, dict(self.relocate))
        counts = {table: sum(p.rows for p in found) for table, found in parts.items()}
        return {
            "counts": counts,
            "parts": {table: [p.as_row() for p in found] for table, found in parts.items()},
            "relocate": self.relocate,
            "stopped": stopped,
            "note": f"{sum(counts.values())} rows",
        }

    def _live(self, rt: StepContext) -> dict[tuple[str, str], TableInfo]:
        """The guarded tables where they are now, wherever ``relocate`` may have moved them."""
        by_database: dict[str, list[str]] = {}
        for table in self.tables:
            database, name = table.split(".", 1)
            for where in {database, self.relocate.get(database, database)}:
                by_database.setdefault(where, []).append(name)
        return {
            (database, name): info
            for database, names in by_database.items()
            for name, info in rt.catalog.tables(database, names).items()
        }

    def _forget_earlier_drops(self, rt: StepContext) -> None:
        """A table counted now exists now: a drop of the same name before this guard is not its own."""
        for table in self.tables:
            database, name = table.split(".", 1)
            rt.dropped_on_purpose.pop(table, None)
            rt.dropped_on_purpose.pop(f"{self.relocate.get(database, database)}.{name}", None)

    def replay(self, rt: StepContext, payload: Payload) -> None:
        recorded = payload.get("parts", {})
        parts = {  # a journal of a version that kept counts only: the count as one pseudo-part
            str(table): [Part.from_row(row) for row in recorded[table]]
            if table in recorded
            else counted(int(rows))
            for table, rows in payload.get("counts", {}).items()
        }
        self._forget_earlier_drops(rt)
        rt.guard_baselines[self.label] = (parts, dict(payload.get("relocate", {})))
        # Merges do not stay stopped across a restart: stop them again wherever the table is now.
        for table in payload.get("stopped", []):
            name = str(table).split(".", 1)[1]
            for database in rt.catalog.databases_holding(name):
                rt.stop_merges(database, name)


@_register("check_guards")
@dataclass(eq=False)
class CheckGuards(ClickHouseOperation):
    """Check that each guarded table still holds its baseline rows (where the table is now).

    Rows in parts created after the baseline were inserted meanwhile and pass ("380 inserted
    meanwhile, none lost"); a baseline row gone stops the run with the table and the numbers, before
    anything else happens (:func:`k2_migrations.decisions.guards.judge`). A guarded table that an
    ``op.drop_object`` step dropped after the guard was taken is dropped on purpose, not lost: its
    count when it was dropped is compared instead, and the summary says which step dropped it. A
    guarded table that is simply gone is a loss; the error then says so rather than that the data
    was left in place.
    """

    label: str

    @classmethod
    def check_guards(cls, operations: Operations, label: str) -> None:
        operations.invoke(cls(label))

    def describe(self) -> str:
        return f"check guard '{self.label}'"

    def render(self) -> list[str]:
        return [f"-- compare the active parts with the baseline of guard '{self.label}'"]

    def guard_notes(self) -> list[str]:
        return [
            f"every table of guard '{self.label}' still holds its baseline rows, inserts meanwhile allowed "
            "(one dropped by op.drop_object since: the count it had then)"
        ]

    def apply(self, rt: StepContext) -> Payload:

        if self.label not in rt.guard_baselines:
            raise UsageError(f"guard '{self.label}' is checked but was never taken in this revision")
        baseline, relocate = rt.guard_baselines[self.label]
        results: list[GuardResult] = []
        wanted: dict[str, list[str]] = {}
        for table in baseline:
            database, name = table.split(".", 1)
            wanted.setdefault(relocate.get(database, database), []).append(name)
        present = {
            (db, name): info
            for db, names in wanted.items()
            for name, info in rt.catalog.tables(db, names).items()
        }
        for table, parts in baseline.items():
            database, name = table.split(".", 1)
            moved_db = relocate.get(database, database)
            moved_to = f"{moved_db}.{name}"
            # Dropped on purpose since the guard was taken: the baseline ends at that drop, even if
            # a table of the same name was created again afterwards.
            dropped = rt.dropped_on_purpose.get(moved_to) or rt.dropped_on_purpose.get(table)
            info = present.get((moved_db, name))
            if dropped is not None:
                verdict = judge(counted(sum(p.rows for p in parts)), counted(dropped.rows))
            else:
                verdict = judge(parts, None if info is None else live_parts(rt, info))
            results.append(_result(self.label, table, moved_to, verdict, dropped))
        rt.guard_results.extend(results)
        bad = [r for r in results if not r.ok]
        if bad:
            raise GuardFailed(f"guard '{self.label}' failed: {_guard_failure(bad)}")
        for result in results:
            rt.start_merges(*result.moved_to.split(".", 1))
        return {
            "results": [
                [r.table, r.moved_to, r.before, r.after, _dropped_json(r.dropped), r.inserted, r.lost]
                for r in results
            ]
        }

    def replay(self, rt: StepContext, payload: Payload) -> None:
        from k2_migrations.engine.results import DroppedTable, GuardResult

        for table, moved_to, before, after, *rest in payload.get("results", []):
            dropped = DroppedTable(**rest[0]) if rest and rest[0] else None
            inserted, lost = (int(rest[1]), int(rest[2])) if len(rest) == 3 else (0, 0)
            rt.guard_results.append(
                GuardResult(self.label, table, moved_to, int(before), int(after), dropped, inserted, lost)
            )
            rt.start_merges(*str(moved_to).split(".", 1))  # replaying the guard's take held them again


@_register("verify")
@dataclass(eq=False)
class Verify(ClickHouseOperation):
    """Run a query counting violations of an invariant; any violation stops the run."""

    name: str
    sql: str

    def __post_init__(self) -> None:
        one_statement(self.sql, f"op.verify('{self.name}')")

    @classmethod
    def verify(cls, operations: Operations, name: str, sql: str) -> None:
        operations.invoke(cls(name, sql))

    def describe(self) -> str:
        return f"check: {self.name}"

    def render(self) -> list[str]:
        return [f"{self.sql.strip()}  -- must return 0"]

    def guard_notes(self) -> list[str]:
        return [f"{self.name}: 0 violations"]

    def apply(self, rt: StepContext) -> Payload:
        from k2_migrations.engine.results import CheckResult

        violations = int(rt.catalog.scalar(self.sql) or 0)
        rt.checks.append(CheckResult(self.name, violations))
        if violations:
            raise GuardFailed(f"check '{self.name}' failed: {violations} violation(s) ({_squash(self.sql)})")
        return {"violations": 0}

    def replay(self, rt: StepContext, payload: Payload) -> None:
        from k2_migrations.engine.results import CheckResult

        rt.checks.append(CheckResult(self.name, int(payload.get("violations", 0))))


@_register("begin_interval")
@dataclass(eq=False)
class BeginInterval(ClickHouseOperation):
    """Start timing a named interval (e.g. how long ingestion is paused) for the run's summary.

    Where tables are fed by streaming tables, it also reads when their last batches were flushed
    (:meth:`~k2_migrations.introspection.catalog.Catalog.stream_batches`), before the interval
    starts: :class:`EndInterval` then reports the freshness gap readers of those tables see
    (:mod:`k2_migrations.decisions.freshness`).
    """

    journal_eagerly = True

    name: str

    @classmethod
    def begin_interval(cls, operations: Operations, name: str) -> None:
        operations.invoke(cls(name))

    def describe(self) -> str:
        return f"{self.name}: begins"

    def render(self) -> list[str]:
        return [f"-- {self.name} begins"]

    def apply(self, rt: StepContext) -> Payload:
        times = rt.catalog.stream_batches()
        batches = None if times is None else (times, rt.catalog.clock())
        started = rt.now()
        rt.interval_starts[self.name] = started
        if batches is not None:
            rt.interval_batches[self.name] = batches
        return {"started": started, "batches": batches}

    def replay(self, rt: StepContext, payload: Payload) -> None:
        rt.interval_starts[self.name] = float(payload["started"])
        if payload.get("batches") is not None:
            times, clock = payload["batches"]
            rt.interval_batches[self.name] = ([int(t) for t in times], int(clock))


@_register("end_interval")
@dataclass(eq=False)
class EndInterval(ClickHouseOperation):
    name: str

    @classmethod
    def end_interval(cls, operations: Operations, name: str) -> None:
        operations.invoke(cls(name))

    def describe(self) -> str:
        return f"{self.name}: ends"

    def render(self) -> list[str]:
        return [f"-- {self.name} ends"]

    def apply(self, rt: StepContext) -> Payload:
        from k2_migrations.decisions.freshness import freshness

        now = rt.now()
        began = rt.interval_starts.get(self.name)
        if began is None:
            raise UsageError(f"interval '{self.name}' ends but never began in this revision")
        seconds = now - began
        rt.intervals[(rt.revision, self.name)] = seconds
        payload: Payload = {"seconds": seconds, "note": f"{seconds:.3f}s"}
        if self.name in rt.interval_batches:
            times, clock = rt.interval_batches[self.name]
            seen = freshness(times, clock, rt.catalog.clock())
            rt.freshness[(rt.revision, self.name)] = seen
            payload["freshness"] = asdict(seen)
            payload["note"] += f"; {seen.describe()}"
        return payload

    def replay(self, rt: StepContext, payload: Payload) -> None:
        from k2_migrations.decisions.freshness import Freshness

        rt.intervals[(rt.revision, self.name)] = float(payload["seconds"])
        if "freshness" in payload:
            rt.freshness[(rt.revision, self.name)] = Freshness(**payload["freshness"])


# -- the guard's view of parts, and what a moving operation tells it ----------------------------


def live_parts(rt: StepContext, info: TableInfo) -> list[Part]:
    """The active parts of a table now and the rows each holds; its count as one pseudo-part for a
    table without parts (and on a cluster, where a replica's parts differ from another's).

    ``system.parts`` gives them without a scan, but its ``rows`` still counts the rows a
    lightweight DELETE masked: when a part has such a mask, the rows of every part are counted
    instead, in one read of the table (a consistent set of parts).
    """
    if not info.is_merge_tree or rt.catalog.cluster is not None:
        return counted(rt.catalog.count(info.database, info.name))
    rows = rt.catalog.rows(
        "SELECT name, partition_id, min_block_number, max_block_number, rows, hash_of_all_files, "
        "has_lightweight_delete FROM system.parts "
        "WHERE database = {d:String} AND table = {t:String} AND active ORDER BY name",
        {"d": info.database, "t": info.name},
    )
    if not any(row[6] for row in rows):
        return [replace(Part.from_row(row[:5]), digest=str(row[5])) for row in rows]
    digests = {str(row[0]): str(row[5]) for row in rows}
    visible = rt.catalog.rows(
        f"SELECT _part, _partition_id, count() FROM {qualified(info.database, info.name)} "
        "GROUP BY _part, _partition_id ORDER BY _part"
    )
    return [
        replace(Part.named(str(name), str(partition), int(count)), digest=digests.get(str(name), ""))
        for name, partition, count in visible
    ]


def carry_guards(rt: StepContext, table: str, renamed: Mapping[str, Part]) -> Payload:
    """Tell this run's guards that baseline rows of ``table`` now live in other parts.

    ``table`` is ``db.name`` as a guard named it or where its ``relocate`` moves it. ``renamed``
    maps a part name of that table to the part that holds the same rows now, in the table the guard
    will read (after a partition move: the destination). A baseline part that no part named covers
    was copied nowhere and is judged lost (:func:`~k2_migrations.decisions.guards.carry`). Call it
    once the rows are in place, and put the returned payload in the step's own, so that the step's
    ``replay`` gives it to :func:`replay_carried` on a resumed run.
    """
    for baselines, relocate in rt.guard_baselines.values():
        for guarded, parts in baselines.items():
            database, name = guarded.split(".", 1)
            if table in (guarded, f"{relocate.get(database, database)}.{name}"):
                baselines[guarded] = carry(parts, renamed)
    return {"carried": {"table": table, "parts": {old: new.as_row() for old, new in renamed.items()}}}


def carry_guards_copied(rt: StepContext, table: str, copied: list[Part], copies: list[Part]) -> Payload:
    """Tell this run's guards that ``table`` was replaced by a copy of it under its name (a rebuild).

    ``copied`` are the parts of the replaced table that the copy read, ``copies`` the ranges of the
    table under the name now that hold those rows (:func:`~k2_migrations.decisions.guards.carry_copied`).
    Call it and journal the payload as :func:`carry_guards` says.
    """
    for baselines, relocate in rt.guard_baselines.values():
        for guarded, parts in baselines.items():
            database, name = guarded.split(".", 1)
            if table in (guarded, f"{relocate.get(database, database)}.{name}"):
                baselines[guarded] = carry_copied(parts, copied, copies, f"copy of {table}")
    return {
        "copied": {
            "table": table,
            "from": [p.as_row() for p in copied],
            "to": [p.as_row() for p in copies],
        }
    }


def replay_carried(rt: StepContext, payload: Payload) -> None:
    """Carry the guards' baselines again from a step's journaled payload (see :func:`carry_guards`
    and :func:`carry_guards_copied`)."""
    carried = payload.get("carried")
    if carried:
        renamed = {str(old): Part.from_row(row) for old, row in carried["parts"].items()}
        carry_guards(rt, str(carried["table"]), renamed)
    copied = payload.get("copied")
    if copied:
        carry_guards_copied(
            rt,
            str(copied["table"]),
            [Part.from_row(row) for row in copied["from"]],
            [Part.from_row(row) for row in copied["to"]],
        )


# -- helpers ------------------------------------------------------------------------------------


def _baseline_count(rt: StepContext, table: str) -> int | None:
    """The rows a guard of this run found in ``table`` (``db.name``, wherever ``relocate`` moved it)."""
    for baselines, relocate in reversed(list(rt.guard_baselines.values())):
        for guarded, parts in baselines.items():
            database, name = guarded.split(".", 1)
            if table in (guarded, f"{relocate.get(database, database)}.{name}"):
                return sum(p.rows for p in parts)
    return None


def _result(
    label: str, table: str, moved_to: str, verdict: Verdict, dropped: DroppedTable | None
) -> GuardResult:
    from k2_migrations.engine.results import GuardResult

    return GuardResult(
        label, table, moved_to, verdict.before, verdict.after, dropped, verdict.inserted, verdict.lost
    )


def _guard_failure(bad: list[GuardResult]) -> str:
    """What a failed guard found, and what became of the data: only a table still there kept its rows."""
    details: list[str] = []
    for r in bad:
        if r.dropped is not None:
            details.append(
                f"{r.moved_to}: before {r.before}, {r.after} when step {r.dropped.step} dropped it"
            )
        elif r.after < 0:
            details.append(f"{r.moved_to}: before {r.before}, missing")
        else:
            details.append(f"{r.moved_to}: before {r.before}, after {r.after}: {r.accounting}")
    gone = [r.moved_to for r in bad if r.dropped is not None or r.after < 0]
    if not gone:
        return "; ".join(details) + "; the data was left where it is"
    missing = [r.moved_to for r in bad if r.dropped is None and r.after < 0]
    hint = (
        f"; {', '.join(missing)} was not dropped by op.drop_object after the guard was taken (dropped by "
        "other SQL, or moved outside the guard's relocate=)"
        if missing
        else ""
    )
    return (
        "; ".join(details)
        + f"; the run stopped here, but {', '.join(gone)} no longer exist(s): those rows are not in place"
        + hint
    )


def _dropped_json(dropped: DroppedTable | None) -> dict[str, Any] | None:
    return None if dropped is None else asdict(dropped)
