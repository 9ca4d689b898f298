"""Moving tables between databases, renaming them within one, and the captured definitions that let a
downgrade restore them."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from alembic.operations import Operations

from k2_migrations import failpoints
from k2_migrations.decisions.guards import Part, carry, judge, map_attached
from k2_migrations.engine.context import Payload
from k2_migrations.errors import DriftDetected, GuardFailed, UsageError
from k2_migrations.introspection.dependencies import refuse_dependents
from k2_migrations.operations.base import ClickHouseOperation, _register
from k2_migrations.operations.guards import carry_guards, live_parts, replay_carried
from k2_migrations.sqltext import (
    rewrite_databases,
)
from k2_migrations.sqltext.quoting import qualified

if TYPE_CHECKING:
    from k2_migrations.engine.context import StepContext


@_register("capture_definition")
@dataclass(eq=False)
class CaptureDefinition(ClickHouseOperation):
    """Store the live definitions of objects of one database, so a later step or a downgrade can
    restore them exactly. Several objects are captured in one step: one read, one append."""

    database: str
    names: tuple[str, ...]

    @classmethod
    def capture_definition(cls, operations: Operations, database: str, *names: str) -> None:
        if not names:
            raise UsageError("capture_definition needs at least one object name")
        operations.invoke(cls(database, names))

    def describe(self) -> str:
        objects = ", ".join(f"{self.database}.{name}" for name in self.names)
        return f"capture the live definition of {objects}"

    def render(self) -> list[str]:
        names = ", ".join(f"'{name}'" for name in self.names)
        return [
            f"-- SELECT name, create_table_query FROM system.tables WHERE database = '{self.database}' "
            f"AND name IN ({names})  (kept in the snapshots table)"
        ]

    def apply(self, rt: StepContext) -> Payload:
        assert rt.snapshots is not None
        wanted = [
            n for n in self.names if rt.snapshots.latest(rt.revision, self._obj(n), rt.attempt_id) is None
        ]
        live = rt.catalog.tables(self.database, wanted)
        # Gone because this revision already ran (the database was stamped back): keep that capture.
        missing = [
            n for n in wanted if n not in live and rt.snapshots.latest(rt.revision, self._obj(n)) is None
        ]
        if missing:
            objects = ", ".join(self._obj(n) for n in missing)
            raise UsageError(
                f"cannot capture {objects}: not found; the schema is not what revision {rt.revision} "
                "expects (run k2-migrate plan to see the state)"
            )
        if live:
            rt.snapshots.save(
                rt.revision, rt.attempt_id, {self._obj(n): live[n].create_query for n in wanted if n in live}
            )
        kept = len(self.names) - len(live)
        return {"note": f"{kept} captured earlier, kept"} if kept else {}

    def _obj(self, name: str) -> str:
        return f"{self.database}.{name}"


@_register("restore_definition")
@dataclass(eq=False)
class RestoreDefinition(ClickHouseOperation):
    """Re-create an object from a captured definition, with database references rewritten.

    ``captured_in`` names the revision whose capture to use (default: the running one). Only the
    database qualifiers listed in ``rewrite`` change; everything else is the definition as it was.
    ``fallback`` is DDL to use when nothing was captured (a database that was stamped, not migrated).
    """

    obj: str
    rewrite: dict[str, str] = field(default_factory=dict)
    captured_in: str | None = None
    fallback: str | None = None

    @classmethod
    def restore_definition(
        cls,
        operations: Operations,
        obj: str,
        *,
        rewrite: dict[str, str] | None = None,
        captured_in: str | None = None,
        fallback: str | None = None,
    ) -> None:
        operations.invoke(cls(obj, rewrite or {}, captured_in, fallback))

    @property
    def target(self) -> tuple[str, str]:
        database, _, name = self.obj.partition(".")
        return self.rewrite.get(database, database), name

    def touches(self) -> set[str]:
        return {self.target[0]}

    def describe(self) -> str:
        database, name = self.target
        source = f" from revision {self.captured_in}" if self.captured_in else ""
        return f"re-create {database}.{name} from the captured definition of {self.obj}{source}"

    def render(self) -> list[str]:
        mapping = ", ".join(f"{a} -> {b}" for a, b in self.rewrite.items()) or "none"
        lines = [f"-- the definition of {self.obj} captured by the revision, database references: {mapping}"]
        if self.fallback:
            lines.append(rewrite_databases(self.fallback.strip().rstrip(";"), self.rewrite))
        return lines

    def apply(self, rt: StepContext) -> Payload:
        assert rt.snapshots is not None
        database, name = self.target
        if rt.catalog.exists(database, name):
            return {"note": "exists, kept"}
        revision = self.captured_in or rt.revision
        definition = rt.snapshots.latest(revision, self.obj)
        note = ""
        if definition is None:
            if self.fallback is None:
                raise UsageError(
                    f"no captured definition of {self.obj} from revision {revision} and no fallback; "
                    "was that revision stamped instead of run?"
                )
            definition, note = self.fallback, "no capture found: used the revision's own definition"
        rt.execute(rewrite_databases(definition.strip().rstrip(";"), self.rewrite))
        return {"note": note} if note else {}


@_register("move_table")
@dataclass(eq=False)
class MoveTable(ClickHouseOperation):
    """Move a table to another database without losing or duplicating a row.

    RENAME where the engines allow it (a metadata operation). Where they do not — chDB's ``Overlay``
    ``default`` database, old ``Ordinary`` databases: ``Code: 48`` — the table is re-created with
    ``CREATE TABLE new AS old`` (the server's own copy of the definition), its partitions attached
    from the source (hard links, no data copied), every source part found among the copies, and only
    then the source dropped. Either way every row the source held before must be in the destination;
    rows inserted meanwhile (into the source before the move, into the destination after) are allowed
    (:func:`k2_migrations.decisions.guards.judge`). The attach numbers the copies in the
    destination's own block sequence: the move tells this run's guards which copy holds which source
    part (:func:`~k2_migrations.operations.guards.carry_guards`), and journals that. A run
    interrupted anywhere in between finds source and destination in the live state and finishes the
    move: the step's journal row is made durable before the copy is created, so the next run knows
    that copy as its own.
    """

    journal_eagerly = True  # the parts carried to the destination, for a resumed run's guards

    database: str
    name: str
    to_database: str

    @classmethod
    def move_table(cls, operations: Operations, database: str, name: str, to_database: str) -> None:
        operations.invoke(cls(database, name, to_database))

    @property
    def source(self) -> str:
        return qualified(self.database, self.name)

    @property
    def destination(self) -> str:
        return qualified(self.to_database, self.name)

    def describe(self) -> str:
        return f"move {self.database}.{self.name} to {self.to_database}"

    def render(self) -> list[str]:
        return [
            f"RENAME TABLE {self.source} TO {self.destination}",
            "-- where the engine refuses a RENAME between these databases (Code: 48):",
            f"--   CREATE TABLE {self.destination} AS {self.source};",
            f"--   ALTER TABLE {self.destination} ATTACH PARTITION ALL FROM {self.source};",
            f"--   DROP TABLE {self.source};  (only once the counts match)",
        ]

    def guard_notes(self) -> list[str]:
        return [
            f"every row of {self.source} before is in {self.destination} after (inserts meanwhile allowed)"
        ]

    def reverse(self) -> ClickHouseOperation:
        return MoveTable(self.to_database, self.name, self.database)

    def apply(self, rt: StepContext) -> Payload:
        catalog = rt.catalog
        found = catalog.find(self.name, [self.database, self.to_database])
        source, destination = found.get(self.database), found.get(self.to_database)
        if source is None and destination is not None:
            return {"note": "already moved"}
        if source is None:
            raise UsageError(
                f"cannot move {self.database}.{self.name}: it exists in neither {self.database} nor "
                f"{self.to_database}; the schema is not what this revision expects"
            )
        if destination is not None and not rt.resuming_step:
            raise GuardFailed(
                f"cannot move {self.database}.{self.name}: {self.to_database}.{self.name} already exists and "
                "was not created by this run; compare the two and drop the one that is not wanted"
            )
        if destination is None:  # views do not follow a move: drop them before it, re-create them after
            refuse_dependents(catalog, self.database, self.name, "move")
        hold = rt.merges_held(self.database, self.name) if source.collapses else nullcontext()
        with hold:
            before = live_parts(rt, source)
            if destination is None:
                path, renamed = self._rename_or_copy(rt, before)
            else:
                path, renamed = "partitions", self._finish_copy(rt)
            failpoints.reached("move-moved", rt.client.command)
            moved = catalog.table(self.to_database, self.name)
            baseline = before if path == "rename" else carry(before, renamed)
            verdict = judge(baseline, None if moved is None else live_parts(rt, moved))
            if not verdict.ok:
                raise GuardFailed(
                    f"guard: {self.destination} holds {verdict.kept} of the {verdict.before} rows {self.source} "
                    f"had before the move ({verdict.lost} lost); inspect both tables before re-running"
                )
            if (self.database, self.name) in rt.stopped_merges:
                rt.stopped_merges.discard((self.database, self.name))
                rt.stopped_merges.add((self.to_database, self.name))
        carried = carry_guards(rt, f"{self.to_database}.{self.name}", renamed) if path == "partitions" else {}
        rows = verdict.before
        return {**carried, "note": f"{rows} rows, by {path}", "rows": rows, "path": path}

    def replay(self, rt: StepContext, payload: Payload) -> None:
        replay_carried(rt, payload)

    def _rename_or_copy(self, rt: StepContext, before: list[Part]) -> tuple[str, dict[str, Part]]:
        """RENAME (parts keep their names: nothing to carry), or the partition move and its mapping."""
        from clickhouse_connect.driver.exceptions import DatabaseError

        try:
            rt.execute(f"RENAME TABLE {self.source} TO {self.destination}")
            return "rename", {}
        except DatabaseError as exc:
            if "Code: 48" not in str(exc) and "NOT_IMPLEMENTED" not in str(exc):
                raise
        rt.journal_now()
        rt.execute(f"CREATE TABLE {self.destination} AS {self.source}")
        if (self.database, self.name) in rt.stopped_merges:
            rt.execute(f"SYSTEM STOP MERGES {self.destination}")
        renamed = self._attach(rt, "")
        failpoints.reached("move-attached", rt.client.command)
        self._drop_source_if_complete(rt, renamed)
        return "partitions", renamed

    def _attach(self, rt: StepContext, then: str) -> dict[str, Part]:
        """``ATTACH PARTITION ALL FROM`` the source (after ``then``, if given): which copy holds
        which source part, told by the block numbers the destination gave the copies."""
        top = self._top_block(rt)
        source = rt.catalog.table(self.database, self.name)
        assert source is not None
        if then:
            rt.execute(then)
        originals = live_parts(rt, source)
        rt.execute(f"ALTER TABLE {self.destination} ATTACH PARTITION ALL FROM {self.source}")
        copies = [p for p in self._destination_parts(rt) if p.min_block > top]
        return map_attached(originals, copies)

    def _top_block(self, rt: StepContext) -> int:
        return max((p.max_block for p in self._destination_parts(rt)), default=-1)

    def _destination_parts(self, rt: StepContext) -> list[Part]:
        destination = rt.catalog.table(self.to_database, self.name)
        assert destination is not None
        return live_parts(rt, destination)

    def _finish_copy(self, rt: StepContext) -> dict[str, Part]:
        """Both tables exist: an interrupted partition move. The source is intact; make the copy whole:
        our own destination, maybe partially attached, is emptied and attached again."""
        renamed = self._attach(rt, f"TRUNCATE TABLE {self.destination}")
        self._drop_source_if_complete(rt, renamed)
        return renamed

    def _drop_source_if_complete(self, rt: StepContext, renamed: dict[str, Part]) -> None:
        """Drop the source once every part it holds now has its copy, holding its rows, in the destination."""
        source = rt.catalog.table(self.database, self.name)
        assert source is not None
        originals = live_parts(rt, source)
        left = [p for p in originals if p.name not in renamed]
        if left:
            rows = sum(p.rows for p in left)
            raise GuardFailed(
                f"guard: {len(left)} part(s) of {self.source} ({rows} rows) have no copy in {self.destination} "
                "(inserted into the source after its partitions were attached?); the source is kept — point "
                "writers at the destination, inspect both tables and run again"
            )
        verdict = judge(carry(originals, renamed), self._destination_parts(rt))
        if not verdict.ok:
            raise GuardFailed(
                f"guard: {self.destination} has {verdict.kept} of the {verdict.before} rows of {self.source} "
                f"after attaching its partitions ({verdict.lost} lost); the source is kept — inspect both tables"
            )
        rt.execute(f"DROP TABLE {self.source}")


@_register("rename_table")
@dataclass(eq=False)
class RenameTable(ClickHouseOperation):
    """Rename a table within its database (``RENAME TABLE``, metadata only); done when the old name is
    gone and the new one is there.

    Refused while a view reads or writes it: a view's source and ``TO`` target do not follow a
    RENAME (ClickHouse issues #72380, #94629), so its rows would silently stop arriving. Drop such
    views earlier in the revision and re-create them after. To another database: :class:`MoveTable`.
    """

    database: str
    name: str
    new_name: str

    @classmethod
    def rename_table(cls, operations: Operations, database: str, name: str, new_name: str) -> None:
        operations.invoke(cls(database, name, new_name))

    def describe(self) -> str:
        return f"rename {self.database}.{self.name} to {self.new_name}"

    def render(self) -> list[str]:
        return [
            f"RENAME TABLE {qualified(self.database, self.name)} TO {qualified(self.database, self.new_name)}"
        ]

    def guard_notes(self) -> list[str]:
        return ["refuses while views read or write it"]

    def apply(self, rt: StepContext) -> Payload:
        found = rt.catalog.tables(self.database, [self.name, self.new_name])
        if self.new_name in found and self.name not in found:
            return {"note": "already renamed"}
        if self.name not in found or self.new_name in found:
            state = "both exist" if self.name in found else "neither exists"
            raise DriftDetected(
                f"cannot rename {self.database}.{self.name} to {self.new_name}: {state}; "
                "the schema is not what this revision expects"
            )
        refuse_dependents(rt.catalog, self.database, self.name, "rename")
        rt.execute(self.render()[0])
        return {}

    def reverse(self) -> ClickHouseOperation:
        return RenameTable(self.database, self.new_name, self.name)
