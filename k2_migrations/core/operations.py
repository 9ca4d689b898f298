"""The ClickHouse operations revision authors call on Alembic's ``op``.

Each operation is data (Snuba's idea): it says what it does (:meth:`describe`), renders the SQL it
would run (:meth:`render`, for ``plan`` and ``--sql``), knows its reverse where one exists
(:meth:`reverse`), and applies itself by first reading the live state from system tables
(:meth:`apply`), so that running it again — after a crash, on a database created by other hands, or
twice in a row — does exactly what is still missing and nothing else.

Importing this module registers every operation on ``alembic.op``::

    op.create_database("k2")
    op.move_table("default", "bronze_trades_binance", "k2")
    op.run_mutation("k2", "ohlcv_1m", "UPDATE window_end = ... WHERE ...", done_when="...")

Names that Alembic's own ``op`` already uses for SQL databases (``add_column``, ``execute``) are
not overridden: the ClickHouse versions are ``add_column_if_missing`` and ``execute_sql``.

No operation ever emits ``DROP ... SYNC``: it hangs on the embedded engine, and a plain DROP frees
the name at once on an Atomic database anyway.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from alembic.operations import MigrateOperation, Operations

from k2_migrations import failpoints
from k2_migrations.core.ddl import render_ddl, render_type
from k2_migrations.core.sql import ident, qualified
from k2_migrations.errors import DriftDetected, GuardFailed, SqlFailed, UsageError
from k2_migrations.sqltext import (
    TableName,
    could_consume_kafka,
    object_kind,
    rewrite_databases,
    view_source_and_target,
)

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import Table
    from sqlalchemy.types import TypeEngine

    from k2_migrations.core.catalog import TableInfo
    from k2_migrations.core.runtime import DroppedTable, GuardResult, Runtime
    from k2_migrations.core.shape import Difference

Payload = dict[str, Any]
MUTATION_POLL_S = 0.25


class ClickHouseOperation(MigrateOperation):
    """Base of every k2-migrations operation."""

    #: Make this step's ``done`` row durable before the next step. Most steps need not: each
    #: re-checks the live state, so a step whose rows a crash lost is simply checked again. Those
    #: whose payload a resumed run relies on (a guard's baseline, an interval's start) say so; the
    #: rest are journaled with the next durable row, which keeps appends out of the ingestion pause.
    #: A step that needs its ``started`` row durable midway calls :meth:`Runtime.journal_now`.
    journal_eagerly = False

    def describe(self) -> str:
        raise NotImplementedError

    def render(self) -> list[str]:
        raise NotImplementedError

    def apply(self, rt: Runtime) -> Payload | None:
        raise NotImplementedError

    def replay(self, rt: Runtime, payload: Payload) -> None:
        """Restore in-memory state of a step done by an earlier run (nothing, for most operations)."""

    def reverse(self) -> ClickHouseOperation:
        raise NotImplementedError(f"{self.describe()} has no reverse")

    def guard_notes(self) -> list[str]:
        """The guards this operation checks, for ``plan``."""
        return []

    def touches(self) -> set[str]:
        """The databases whose schema this operation reads or changes (what ``check`` watches)."""
        return {str(getattr(self, a)) for a in ("database", "to_database") if getattr(self, a, None)}


def runtime_of(context: MigrationContext) -> Runtime | None:
    runtime: Runtime | None = context.opts.get("k2_runtime")
    return runtime


def _execute(operations: Operations, operation: ClickHouseOperation) -> None:
    """The one implementation behind every operation: run it, plan it, or print its SQL."""
    context = operations.migration_context
    runtime = runtime_of(context)
    if runtime is not None:
        runtime.run_step(operation)
        return
    if context.as_sql:
        context.impl.static_output(f"-- {operation.describe()}")
        for statement in operation.render():
            terminator = "" if statement.startswith("--") else ";"
            context.impl.static_output(statement + terminator + "\n")
        return
    raise UsageError("k2-migrations operations run through k2-migrate (its env.py attaches the runtime)")


def _register(name: str) -> Any:
    def decorate(cls: type[ClickHouseOperation]) -> type[ClickHouseOperation]:
        Operations.register_operation(name)(cls)
        Operations.implementation_for(cls)(_execute)
        return cls

    return decorate


# -- databases ---------------------------------------------------------------------------------


@_register("create_database")
@dataclass(eq=False)
class CreateDatabase(ClickHouseOperation):
    """Create a database if it does not exist (``engine`` e.g. ``Atomic`` or ``Replicated(...)``)."""

    name: str
    engine: str | None = None

    @classmethod
    def create_database(cls, operations: Operations, name: str, engine: str | None = None) -> None:
        operations.invoke(cls(name, engine))

    def touches(self) -> set[str]:
        return {self.name}

    def describe(self) -> str:
        return f"create database {self.name}"

    def render(self) -> list[str]:
        engine = f" ENGINE = {self.engine}" if self.engine else ""
        return [f"CREATE DATABASE IF NOT EXISTS {ident(self.name)}{engine}"]

    def apply(self, rt: Runtime) -> Payload:
        existing = rt.catalog.database_engine(self.name)
        if existing is not None:
            return {"note": f"exists ({existing} engine)"}
        rt.execute(self.render()[0])
        return {}

    def reverse(self) -> ClickHouseOperation:
        return DropDatabase(self.name)


@_register("drop_database")
@dataclass(eq=False)
class DropDatabase(ClickHouseOperation):
    """Drop a database; refuses one that still holds tables (move or drop them first)."""

    name: str

    @classmethod
    def drop_database(cls, operations: Operations, name: str) -> None:
        operations.invoke(cls(name))

    def touches(self) -> set[str]:
        return {self.name}

    def describe(self) -> str:
        return f"drop database {self.name} (refused while it holds tables)"

    def render(self) -> list[str]:
        return [f"DROP DATABASE IF EXISTS {ident(self.name)}"]

    def apply(self, rt: Runtime) -> Payload:
        if not rt.catalog.database_exists(self.name):
            return {"note": "already gone"}
        tables = rt.catalog.table_names(self.name)
        if tables:
            shown = ", ".join(tables[:5]) + (" ..." if len(tables) > 5 else "")
            raise GuardFailed(
                f"refusing to drop database {self.name}: it still holds {len(tables)} table(s) ({shown}); "
                "move or drop them first"
            )
        rt.execute(self.render()[0])
        return {}

    def reverse(self) -> ClickHouseOperation:
        return CreateDatabase(self.name)


# -- tables, views, Kafka tables ---------------------------------------------------------------


@_register("create_object")
@dataclass(eq=False)
class CreateObject(ClickHouseOperation):
    """Create a table, Kafka table or (materialized) view from its DDL, unless it exists.

    The DDL is given as its author wrote it (``CREATE TABLE db.t ...``, never ``POPULATE``: a view
    only sees rows inserted after it exists; backfill with an explicit INSERT ... SELECT).
    """

    database: str
    name: str
    ddl: str | Table

    @classmethod
    def create_object(cls, operations: Operations, database: str, name: str, ddl: str | Table) -> None:
        operations.invoke(cls(database, name, ddl))

    def describe(self) -> str:
        return f"create {object_kind(render_ddl(self.ddl)) or 'object'} {self.database}.{self.name}"

    def render(self) -> list[str]:
        return [render_ddl(self.ddl)]

    def apply(self, rt: Runtime) -> Payload:
        if rt.catalog.exists(self.database, self.name):
            return {"note": "exists, kept"}
        rt.execute(self.render()[0])
        return {}

    def reverse(self) -> ClickHouseOperation:
        return DropObject(self.database, self.name)


@_register("drop_object")
@dataclass(eq=False)
class DropObject(ClickHouseOperation):
    """Drop a view, Kafka table or table. A table holding rows is refused unless ``allow_rows``.

    A table a guard of this run counted is counted again just before it goes, and remembered as
    dropped on purpose (journaled, so a resumed run knows too): the guard's check then reports the
    rows it had at this step instead of a table gone missing. That is what makes the advice "take
    guards around a drop" hold for the dropped table itself.
    """

    database: str
    name: str
    allow_rows: bool = False

    @classmethod
    def drop_object(
        cls, operations: Operations, database: str, name: str, *, allow_rows: bool = False
    ) -> None:
        operations.invoke(cls(database, name, allow_rows))

    def describe(self) -> str:
        return f"drop {self.database}.{self.name}"

    def render(self) -> list[str]:
        return [f"DROP TABLE IF EXISTS {qualified(self.database, self.name)}"]

    def guard_notes(self) -> list[str]:
        return [] if self.allow_rows else [f"refuses if {self.database}.{self.name} holds rows"]

    def apply(self, rt: Runtime) -> Payload:
        where = f"{self.database}.{self.name}"
        baseline = _baseline_count(rt, where)
        info = rt.catalog.table(self.database, self.name)
        if info is None:
            if baseline is None or not rt.resuming_step:
                return {"note": "already gone"}
            # Dropped by this step in the run that was interrupted: its count at the drop died with
            # that run, and nothing else ran since the guard counted it.
            payload: Payload = {"guarded_rows": baseline}
            self.replay(rt, payload)
            return {**payload, "note": "dropped by the interrupted run; its guard's baseline stands for it"}
        guarded = baseline is not None and not info.is_view and not info.streams
        rows = (
            rt.catalog.count(self.database, self.name)
            if guarded or (info.is_merge_tree and not self.allow_rows)
            else 0
        )
        if info.is_merge_tree and rows and not self.allow_rows:
            raise GuardFailed(
                f"refusing to drop {info.qualified}: it holds {rows} rows; move it instead, "
                "or pass allow_rows=True if losing them is intended"
            )
        keyword = "VIEW" if info.is_view else "TABLE"
        if guarded:
            rt.journal_now()  # so a run that dies after the DROP resumes knowing this step dropped it
        rt.execute(f"DROP {keyword} IF EXISTS {qualified(self.database, self.name)}")
        if not guarded:
            return {}
        payload = {"guarded_rows": rows}
        self.replay(rt, payload)
        return {**payload, "note": f"{rows} rows, dropped on purpose (guarded)"}

    def replay(self, rt: Runtime, payload: Payload) -> None:
        from k2_migrations.core.runtime import DroppedTable

        if "guarded_rows" in payload:
            where = f"{self.database}.{self.name}"
            rt.dropped_on_purpose[where] = DroppedTable(
                rt.step, int(payload["guarded_rows"]), self.allow_rows
            )
            rt.stopped_merges.discard((self.database, self.name))  # nothing left to restart


@_register("drop_objects")
@dataclass(eq=False)
class DropObjects(ClickHouseOperation):
    """Drop several views or Kafka tables in one step, the Kafka tables at the same time.

    Dropping a Kafka table waits for its consumer to stop (its poll, then the consumer's close): one
    after the other those waits add up inside an ingestion pause; dropped together, each on a
    connection of its own, they overlap. Views drop at once, so they go one by one on the run's own
    connection. Dropping a Kafka table stops consumption for every view on it at once, which is how a
    pipeline is paused without any of its views missing a message. Tables holding rows are refused.
    """

    database: str
    names: list[str]

    @classmethod
    def drop_objects(cls, operations: Operations, database: str, names: list[str]) -> None:
        operations.invoke(cls(database, list(names)))

    def describe(self) -> str:
        return f"drop {', '.join(f'{self.database}.{n}' for n in self.names)} together"

    def render(self) -> list[str]:
        return [f"DROP TABLE IF EXISTS {qualified(self.database, n)}" for n in self.names]

    def guard_notes(self) -> list[str]:
        return ["refuses tables that hold rows"]

    def apply(self, rt: Runtime) -> Payload:
        streaming: list[str] = []
        others: list[str] = []
        live = rt.catalog.tables(self.database, self.names)
        for name in self.names:
            info = live.get(name)
            if info is None:
                continue
            if info.is_merge_tree and rt.catalog.count(self.database, name):
                raise GuardFailed(f"refusing to drop {info.qualified}: it holds rows; move it instead")
            keyword = "VIEW" if info.is_view else "TABLE"
            statement = f"DROP {keyword} IF EXISTS {qualified(self.database, name)}"
            (streaming if info.streams else others).append(statement)
        rt.execute_together(streaming)
        for statement in others:
            rt.execute(statement)
        return {} if streaming or others else {"note": "already gone"}


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

    def apply(self, rt: Runtime) -> Payload:
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

    def apply(self, rt: Runtime) -> Payload:
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
    from the source (hard links, no data copied), the counts compared, and only then the source
    dropped. Either way the count before and after must match. A run interrupted anywhere in between
    finds source and destination in the live state and finishes the move: the step's journal row
    is made durable before the copy is created, so the next run knows that copy as its own.
    """

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
        return [f"count({self.source}) before = count({self.destination}) after"]

    def reverse(self) -> ClickHouseOperation:
        return MoveTable(self.to_database, self.name, self.database)

    def apply(self, rt: Runtime) -> Payload:
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
        hold = rt.merges_held(self.database, self.name) if source.collapses else nullcontext()
        with hold:
            before = catalog.count(self.database, self.name)
            if destination is None:
                path = self._rename_or_copy(rt)
            else:
                path = "partitions"
                self._finish_copy(rt, before)
            failpoints.reached("move-moved", rt.client.command)
            after = catalog.count(self.to_database, self.name)
            if after != before:
                raise GuardFailed(
                    f"guard: {self.destination} has {after} rows after the move, {self.source} had {before}; "
                    "nothing was dropped — inspect both tables before re-running"
                )
            if source.collapses and (self.database, self.name) in rt.stopped_merges:
                rt.stopped_merges.discard((self.database, self.name))
                rt.stopped_merges.add((self.to_database, self.name))
        return {"note": f"{before} rows, by {path}", "rows": before, "path": path}

    def _rename_or_copy(self, rt: Runtime) -> str:
        from clickhouse_connect.driver.exceptions import DatabaseError

        try:
            rt.execute(f"RENAME TABLE {self.source} TO {self.destination}")
            return "rename"
        except DatabaseError as exc:
            if "Code: 48" not in str(exc) and "NOT_IMPLEMENTED" not in str(exc):
                raise
        rt.journal_now()
        rt.execute(f"CREATE TABLE {self.destination} AS {self.source}")
        if (self.database, self.name) in rt.stopped_merges:
            rt.execute(f"SYSTEM STOP MERGES {self.destination}")
        rt.execute(f"ALTER TABLE {self.destination} ATTACH PARTITION ALL FROM {self.source}")
        self._drop_source_if_complete(rt, rt.catalog.count(self.database, self.name))
        return "partitions"

    def _finish_copy(self, rt: Runtime, source_rows: int) -> None:
        """Both tables exist: an interrupted partition move. The source is intact; make the copy whole."""
        copied = rt.catalog.count(self.to_database, self.name)
        if copied != source_rows:
            # Our own destination, partially attached: empty it and attach everything again.
            rt.execute(f"TRUNCATE TABLE {self.destination}")
            rt.execute(f"ALTER TABLE {self.destination} ATTACH PARTITION ALL FROM {self.source}")
        self._drop_source_if_complete(rt, source_rows)

    def _drop_source_if_complete(self, rt: Runtime, source_rows: int) -> None:
        copied = rt.catalog.count(self.to_database, self.name)
        if copied != source_rows:
            raise GuardFailed(
                f"guard: {self.destination} has {copied} rows after attaching the partitions of "
                f"{self.source} ({source_rows} rows); the source is kept — inspect both tables"
            )
        rt.execute(f"DROP TABLE {self.source}")


# -- columns and mutations ---------------------------------------------------------------------


@_register("add_column_if_missing")
@dataclass(eq=False)
class AddColumn(ClickHouseOperation):
    """Add a column (metadata only; existing parts get the DEFAULT computed on read)."""

    database: str
    table: str
    column: str
    type: str | TypeEngine[Any]
    default: str | None = None
    after: str | None = None

    @classmethod
    def add_column_if_missing(
        cls,
        operations: Operations,
        database: str,
        table: str,
        column: str,
        type: str | TypeEngine[Any],
        *,
        default: str | None = None,
        after: str | None = None,
    ) -> None:
        operations.invoke(cls(database, table, column, type, default, after))

    def describe(self) -> str:
        where = f" after {self.after}" if self.after else ""
        return f"add column {self.column} {render_type(self.type)} to {self.database}.{self.table}{where}"

    def render(self) -> list[str]:
        default = f" DEFAULT {self.default}" if self.default else ""
        after = f" AFTER {ident(self.after)}" if self.after else ""
        return [
            f"ALTER TABLE {qualified(self.database, self.table)} ADD COLUMN IF NOT EXISTS "
            f"{ident(self.column)} {render_type(self.type)}{default}{after}"
        ]

    def apply(self, rt: Runtime) -> Payload:
        columns = {c.name: c for c in rt.catalog.columns(self.database, self.table)}
        existing = columns.get(self.column)
        if existing is None:
            rt.execute(self.render()[0])
            return {}
        from k2_migrations.core.shape import engine_type

        # Compared as the engine names both types: INT is Int32, whatever the revision spelt.
        wanted = render_type(self.type)
        expected = engine_type(rt.catalog, wanted)
        if expected is None:
            raise UsageError(
                f"add_column_if_missing({self.database}.{self.table}.{self.column}): {wanted!r} is not a type "
                "this ClickHouse knows; fix the type in the revision"
            )
        found = engine_type(rt.catalog, existing.type) or existing.type
        if found != expected:
            shown = expected if expected == wanted else f"{expected} (written {wanted})"
            raise DriftDetected(
                f"column {self.column} of {self.database}.{self.table} exists with type {found}, but the "
                f"revision adds it as {shown}; the schema has drifted: change the column or the revision"
            )
        return {"note": "exists, kept"}

    def reverse(self) -> ClickHouseOperation:
        return DropColumn(self.database, self.table, self.column)


@_register("drop_column_if_exists")
@dataclass(eq=False)
class DropColumn(ClickHouseOperation):
    """Drop a column if it exists (its values are lost: use on derived columns, or capture first)."""

    database: str
    table: str
    column: str

    @classmethod
    def drop_column_if_exists(cls, operations: Operations, database: str, table: str, column: str) -> None:
        operations.invoke(cls(database, table, column))

    def describe(self) -> str:
        return f"drop column {self.column} from {self.database}.{self.table}"

    def render(self) -> list[str]:
        return [
            f"ALTER TABLE {qualified(self.database, self.table)} DROP COLUMN IF EXISTS {ident(self.column)}"
        ]

    def apply(self, rt: Runtime) -> Payload:
        if not any(c.name == self.column for c in rt.catalog.columns(self.database, self.table)):
            return {"note": "already gone"}
        rt.execute(self.render()[0])
        return {}


@_register("run_mutation")
@dataclass(eq=False)
class RunMutation(ClickHouseOperation):
    """Run an ``ALTER TABLE ... UPDATE/DELETE`` mutation and wait for it, with a progress bar.

    ``done_when`` is a query returning 1 when there is nothing (left) to do; it makes the step
    idempotent (checked before issuing) and verifiable (checked after). A mutation already running
    on the table — one this step issued before a crash — is waited for, never issued again. A
    mutation that fails stops the run with ClickHouse's ``latest_fail_reason``.
    """

    database: str
    table: str
    command: str
    done_when: str | None = None

    @classmethod
    def run_mutation(
        cls, operations: Operations, database: str, table: str, command: str, *, done_when: str | None = None
    ) -> None:
        operations.invoke(cls(database, table, command, done_when))

    def describe(self) -> str:
        return f"mutation on {self.database}.{self.table}: {_squash(self.command)}"

    def render(self) -> list[str]:
        lines = [
            f"ALTER TABLE {qualified(self.database, self.table)} {self.command.strip()} "
            "SETTINGS mutations_sync = 0",
            "-- then wait on system.mutations (is_done, parts_to_do, latest_fail_reason)",
        ]
        if self.done_when:
            lines.append(f"-- skipped when, and verified after by: {_squash(self.done_when)}")
        return lines

    def guard_notes(self) -> list[str]:
        return [f"verified by: {_squash(self.done_when)}"] if self.done_when else []

    def apply(self, rt: Runtime) -> Payload:
        if (self.database, self.table) in rt.stopped_merges:
            raise UsageError(
                f"mutation on {self.database}.{self.table} while a guard holds its merges: it would wait "
                "forever; check the guard (op.check_guards) before the mutation"
            )
        waited = self._wait_for_running(rt)
        if self.done_when and self._done(rt):
            return {"note": "waited for the running mutation" if waited else "nothing to do"}
        if not waited:
            rt.execute(self.render()[0])
            failpoints.reached("mutation-issued")
            self._wait_for_running(rt)
        if self.done_when and not self._done(rt):
            raise SqlFailed(
                f"mutation on {self.database}.{self.table} finished but its check still fails: "
                f"{_squash(self.done_when)}"
            )
        return {}

    def _done(self, rt: Runtime) -> bool:
        assert self.done_when is not None
        return bool(rt.catalog.scalar(self.done_when))

    def _wait_for_running(self, rt: Runtime) -> bool:
        """Wait for every unfinished mutation on the table; True if there was one."""
        waited = False
        label = f"mutation on {self.database}.{self.table}"
        total = 0
        polls = 0
        while True:
            running = [m for m in rt.catalog.mutations(self.database, self.table) if not m.is_done]
            if not running:
                if waited:
                    rt.progress.bar(label, total, total)
                return waited
            failed = [m for m in running if m.latest_fail_reason]
            if failed:
                m = failed[0]
                raise SqlFailed(
                    f"mutation {m.mutation_id} on {self.database}.{self.table} failed: "
                    f"{_squash(m.latest_fail_reason)}; fix the cause, then KILL MUTATION WHERE "
                    f"mutation_id = '{m.mutation_id}' and run the same command again"
                )
            waited = True
            parts_left = sum(m.parts_to_do for m in running)
            total = max(total, parts_left)
            rt.progress.bar(label, total - parts_left, total or 1)
            time.sleep(min(MUTATION_POLL_S, 0.01 * 2 ** min(polls, 5)))  # quick first looks, then 0.25 s
            polls += 1


@_register("execute_sql")
@dataclass(eq=False)
class ExecuteSql(ClickHouseOperation):
    """Run a statement the other operations do not cover; ``done_when`` makes it idempotent."""

    sql: str
    done_when: str | None = None

    @classmethod
    def execute_sql(cls, operations: Operations, sql: str, *, done_when: str | None = None) -> None:
        operations.invoke(cls(sql, done_when))

    def describe(self) -> str:
        return f"execute {_squash(self.sql, 80)}"

    def render(self) -> list[str]:
        return [self.sql.strip().rstrip(";")]

    def apply(self, rt: Runtime) -> Payload:
        if self.done_when and rt.catalog.scalar(self.done_when):
            return {"note": "nothing to do"}
        rt.execute(self.render()[0])
        return {}


# -- merges ------------------------------------------------------------------------------------


@_register("stop_merges")
@dataclass(eq=False)
class StopMerges(ClickHouseOperation):
    database: str
    table: str

    @classmethod
    def stop_merges(cls, operations: Operations, database: str, table: str) -> None:
        operations.invoke(cls(database, table))

    def describe(self) -> str:
        return f"stop merges on {self.database}.{self.table}"

    def render(self) -> list[str]:
        return [f"SYSTEM STOP MERGES {qualified(self.database, self.table)}"]

    def apply(self, rt: Runtime) -> Payload:
        # Not recorded in rt.stopped_merges: those are restarted at the end of the run, this is meant to last.
        rt.execute(self.render()[0])
        return {}

    def replay(self, rt: Runtime, payload: Payload) -> None:
        rt.execute(self.render()[0])  # merges do not stay stopped across a server restart

    def reverse(self) -> ClickHouseOperation:
        return StartMerges(self.database, self.table)


@_register("start_merges")
@dataclass(eq=False)
class StartMerges(ClickHouseOperation):
    database: str
    table: str

    @classmethod
    def start_merges(cls, operations: Operations, database: str, table: str) -> None:
        operations.invoke(cls(database, table))

    def describe(self) -> str:
        return f"start merges on {self.database}.{self.table}"

    def render(self) -> list[str]:
        return [f"SYSTEM START MERGES {qualified(self.database, self.table)}"]

    def apply(self, rt: Runtime) -> Payload:
        rt.stopped_merges.discard((self.database, self.table))
        rt.execute(self.render()[0])
        return {}

    def reverse(self) -> ClickHouseOperation:
        return StopMerges(self.database, self.table)


# -- guards, checks and timed intervals ---------------------------------------------------------


@_register("take_guards")
@dataclass(eq=False)
class TakeGuards(ClickHouseOperation):
    """Count each table before the operations a later :class:`CheckGuards` covers.

    ``count()`` on MergeTree is read from part metadata: O(1), no scan. On engines whose merges
    collapse rows (Replacing-, Aggregating-, Summing-, Collapsing-MergeTree) ``count()`` could shrink
    without any row being lost, so merges are stopped on those tables first and stay stopped until
    the check: the count is then exact and still O(1). ``relocate`` maps databases the tables are
    moving to (``{"default": "k2"}``): the check counts them there, and a re-run that finds a table
    already moved counts it where it is. The baseline is journaled, so a run resumed after a crash
    compares against the counts taken before anything moved.
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
        return [f"SELECT count() FROM {_qualify(t)}" for t in self.tables]

    def guard_notes(self) -> list[str]:
        return [f"baseline count of {t}" for t in self.tables]

    def apply(self, rt: Runtime) -> Payload:
        counts: dict[str, int] = {}
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
            counts[table] = rt.catalog.count(info.database, name)
        self._forget_earlier_drops(rt)
        rt.guard_baselines[self.label] = (counts, dict(self.relocate))
        return {
            "counts": counts,
            "relocate": self.relocate,
            "stopped": stopped,
            "note": f"{sum(counts.values())} rows",
        }

    def _live(self, rt: Runtime) -> dict[tuple[str, str], TableInfo]:
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

    def _forget_earlier_drops(self, rt: Runtime) -> None:
        """A table counted now exists now: a drop of the same name before this guard is not its own."""
        for table in self.tables:
            database, name = table.split(".", 1)
            rt.dropped_on_purpose.pop(table, None)
            rt.dropped_on_purpose.pop(f"{self.relocate.get(database, database)}.{name}", None)

    def replay(self, rt: Runtime, payload: Payload) -> None:
        counts = {str(k): int(v) for k, v in payload.get("counts", {}).items()}
        self._forget_earlier_drops(rt)
        rt.guard_baselines[self.label] = (counts, dict(payload.get("relocate", {})))
        # Merges do not stay stopped across a restart: stop them again wherever the table is now.
        for table in payload.get("stopped", []):
            name = str(table).split(".", 1)[1]
            for database in rt.catalog.databases_holding(name):
                rt.stop_merges(database, name)


@_register("check_guards")
@dataclass(eq=False)
class CheckGuards(ClickHouseOperation):
    """Compare each guarded table's count with its baseline (where the table is now).

    Any difference stops the run with the table and both counts, before anything else happens. A
    guarded table that an ``op.drop_object`` step dropped after the guard was taken is dropped on
    purpose, not lost: its count when it was dropped is compared instead, and the summary says which
    step dropped it. A guarded table that is simply gone is a loss; the error then says so rather
    than that the data was left in place.
    """

    label: str

    @classmethod
    def check_guards(cls, operations: Operations, label: str) -> None:
        operations.invoke(cls(label))

    def describe(self) -> str:
        return f"check guard '{self.label}'"

    def render(self) -> list[str]:
        return [f"-- compare counts with the baseline of guard '{self.label}'"]

    def guard_notes(self) -> list[str]:
        return [
            f"every table of guard '{self.label}' has its baseline count "
            "(one dropped by op.drop_object since: the count it had then)"
        ]

    def apply(self, rt: Runtime) -> Payload:
        from k2_migrations.core.runtime import GuardResult

        if self.label not in rt.guard_baselines:
            raise UsageError(f"guard '{self.label}' is checked but was never taken in this revision")
        baseline, relocate = rt.guard_baselines[self.label]
        results: list[GuardResult] = []
        wanted: dict[str, list[str]] = {}
        for table in baseline:
            database, name = table.split(".", 1)
            wanted.setdefault(relocate.get(database, database), []).append(name)
        present = {(db, name) for db, names in wanted.items() for name in rt.catalog.tables(db, names)}
        for table, before in baseline.items():
            database, name = table.split(".", 1)
            moved_db = relocate.get(database, database)
            moved_to = f"{moved_db}.{name}"
            # Dropped on purpose since the guard was taken: the baseline ends at that drop, even if
            # a table of the same name was created again afterwards.
            dropped = rt.dropped_on_purpose.get(moved_to) or rt.dropped_on_purpose.get(table)
            if dropped is not None:
                after = dropped.rows
            else:
                after = rt.catalog.count(moved_db, name) if (moved_db, name) in present else -1
            results.append(GuardResult(self.label, table, moved_to, before, after, dropped))
        rt.guard_results.extend(results)
        bad = [r for r in results if not r.ok]
        if bad:
            raise GuardFailed(f"guard '{self.label}' failed: {_guard_failure(bad)}")
        for result in results:
            rt.start_merges(*result.moved_to.split(".", 1))
        return {
            "results": [[r.table, r.moved_to, r.before, r.after, _dropped_json(r.dropped)] for r in results]
        }

    def replay(self, rt: Runtime, payload: Payload) -> None:
        from k2_migrations.core.runtime import DroppedTable, GuardResult

        for table, moved_to, before, after, *rest in payload.get("results", []):
            dropped = DroppedTable(**rest[0]) if rest and rest[0] else None
            rt.guard_results.append(
                GuardResult(self.label, table, moved_to, int(before), int(after), dropped)
            )
            rt.start_merges(*str(moved_to).split(".", 1))  # replaying the guard's take held them again


@_register("verify")
@dataclass(eq=False)
class Verify(ClickHouseOperation):
    """Run a query counting violations of an invariant; any violation stops the run."""

    name: str
    sql: str

    @classmethod
    def verify(cls, operations: Operations, name: str, sql: str) -> None:
        operations.invoke(cls(name, sql))

    def describe(self) -> str:
        return f"check: {self.name}"

    def render(self) -> list[str]:
        return [f"{self.sql.strip()}  -- must return 0"]

    def guard_notes(self) -> list[str]:
        return [f"{self.name}: 0 violations"]

    def apply(self, rt: Runtime) -> Payload:
        from k2_migrations.core.runtime import CheckResult

        violations = int(rt.catalog.scalar(self.sql) or 0)
        rt.checks.append(CheckResult(self.name, violations))
        if violations:
            raise GuardFailed(f"check '{self.name}' failed: {violations} violation(s) ({_squash(self.sql)})")
        return {"violations": 0}

    def replay(self, rt: Runtime, payload: Payload) -> None:
        from k2_migrations.core.runtime import CheckResult

        rt.checks.append(CheckResult(self.name, int(payload.get("violations", 0))))


@_register("begin_interval")
@dataclass(eq=False)
class BeginInterval(ClickHouseOperation):
    """Start timing a named interval (e.g. how long ingestion is paused) for the run's summary."""

    journal_eagerly = True

    name: str

    @classmethod
    def begin_interval(cls, operations: Operations, name: str) -> None:
        operations.invoke(cls(name))

    def describe(self) -> str:
        return f"{self.name}: begins"

    def render(self) -> list[str]:
        return [f"-- {self.name} begins"]

    def apply(self, rt: Runtime) -> Payload:
        started = rt.now()
        rt.interval_starts[self.name] = started
        return {"started": started}

    def replay(self, rt: Runtime, payload: Payload) -> None:
        rt.interval_starts[self.name] = float(payload["started"])


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

    def apply(self, rt: Runtime) -> Payload:
        started = rt.interval_starts.get(self.name)
        if started is None:
            raise UsageError(f"interval '{self.name}' ends but never began in this revision")
        seconds = rt.now() - started
        rt.intervals[(rt.revision, self.name)] = seconds
        return {"seconds": seconds, "note": f"{seconds:.3f}s"}

    def replay(self, rt: Runtime, payload: Payload) -> None:
        rt.intervals[(rt.revision, self.name)] = float(payload["seconds"])


# -- adopting a schema created by other hands ----------------------------------------------------


@_register("adopt_objects")
@dataclass(eq=False)
class AdoptObjects(ClickHouseOperation):
    """Create what is missing of a schema and adopt what exists, refusing only what later revisions depend on.

    ``objects`` are ``(name, ddl)`` pairs in creation order, all in ``database``. An existing object
    is compared with its DDL as the server itself renders it (see :mod:`k2_migrations.core.shape`):
    every difference is reported, and whether one stops the run follows from what the later
    revisions do with the object. ``carried`` names the objects they re-create from their live
    definitions (views and Kafka tables moved to another database): their own text travels with them,
    so only what they read, where they write and which messages they consume must match. Every other
    object is kept and acted on as it is (a data table is moved and altered), so its structure must
    match too. Refused differences stop the run with the list, before anything is created. A
    materialized view that reads one of these objects but is not among them is refused too: revisions
    that move the pipeline would leave it behind.
    """

    database: str
    objects: list[tuple[str, str]]
    carried: tuple[str, ...] = ()

    @classmethod
    def adopt_objects(
        cls,
        operations: Operations,
        database: str,
        objects: list[tuple[str, str]],
        *,
        carried: tuple[str, ...] | list[str] = (),
    ) -> None:
        unknown = sorted(set(carried) - {name for name, _ in objects})
        if unknown:
            raise UsageError(f"adopt_objects: carried names no object of the list: {', '.join(unknown)}")
        operations.invoke(cls(database, list(objects), tuple(carried)))

    def describe(self) -> str:
        return f"adopt or create {len(self.objects)} object(s) in {self.database}"

    def render(self) -> list[str]:
        lines = ["-- each object below is created only if missing; an existing one is compared instead"]
        if self.carried:
            lines.append(
                f"-- re-created later from their live definitions (only routes and Kafka identity must match): "
                f"{', '.join(self.carried)}"
            )
        lines.extend(ddl.strip().rstrip(";") for _, ddl in self.objects)
        return lines

    def guard_notes(self) -> list[str]:
        return [
            "refuses an existing schema whose data tables differ in columns, types, engine or keys, whose views "
            "read or write other tables, or whose Kafka tables differ in topic, group, format or error mode"
        ]

    def apply(self, rt: Runtime) -> Payload:
        from k2_migrations.core.shape import compare, read_shapes

        catalog = rt.catalog
        live = catalog.tables(self.database, [n for n, _ in self.objects])
        missing = [(n, d) for n, d in self.objects if n not in live]
        present = [(n, d) for n, d in self.objects if n in live]
        differences: list[Difference] = []
        if present:
            scratch = f"k2_migrations_scratch_{rt.attempt_id}"
            rt.execute(f"CREATE DATABASE IF NOT EXISTS {scratch}")
            try:
                kafka = [
                    TableName(self.database, n) for n, d in self.objects if object_kind(d) == "Kafka table"
                ]
                for name, ddl in self.objects:
                    reads_kafka = could_consume_kafka(ddl, kafka)
                    if not reads_kafka and not catalog.exists(scratch, name):
                        # Views on Kafka tables are never created, even in scratch: they would consume.
                        rt.execute(rewrite_databases(ddl.strip().rstrip(";"), {self.database: scratch}))
                names = [n for n, _ in present]
                found, built = (
                    read_shapes(catalog, self.database, names),
                    read_shapes(catalog, scratch, names),
                )
                for name, ddl in present:
                    expected = built.get(name) or _text_shape(ddl, self.database)
                    differences.extend(
                        compare(
                            f"{self.database}.{name}", expected, found[name], carried=name in self.carried
                        )
                    )
            finally:
                rt.execute(f"DROP DATABASE IF EXISTS {scratch}")
        differences.extend(self._unknown_views(rt))
        unsafe = [d for d in differences if d.unsafe]
        for difference in differences:
            rt.progress.line(
                f"      {'UNSAFE ' if difference.unsafe else ''}difference: {difference.describe()}"
            )
        if unsafe:
            raise DriftDetected(
                f"the existing schema in {self.database} differs where later revisions depend on it: "
                + "; ".join(f"{d.describe()} ({d.why})" for d in unsafe)
                + " — bring these objects in line (or adjust the revision), then run again"
            )
        for _, ddl in missing:
            rt.execute(ddl.strip().rstrip(";"))
        return {
            "note": f"{len(present)} adopted, {len(missing)} created, {len(differences)} harmless difference(s)",
            "differences": [d.describe() for d in differences],
        }

    def _unknown_views(self, rt: Runtime) -> list[Difference]:
        from k2_migrations.core.shape import Difference

        known = {name for name, _ in self.objects}
        why = "later revisions move the pipeline without it"
        out: list[Difference] = []
        for name in known:
            for view in rt.catalog.views_reading(self.database, name):
                if view.split(".", 1)[1] not in known or not view.startswith(f"{self.database}."):
                    out.append(
                        Difference(view, "reads", "no other views", f"{self.database}.{name}", True, why)
                    )
        return out


def _text_shape(ddl: str, database: str) -> Any:
    """The shape of a view we would not create even in scratch: its source and target from the DDL."""
    from k2_migrations.core.shape import HOME, Shape

    sources, target = view_source_and_target(ddl)

    def home(table: TableName) -> str:
        return str(TableName(HOME if table.database == database else table.database, table.name))

    return Shape(
        engine="MaterializedView",
        columns=(),
        defaults=(),
        sorting_key="",
        partition_key="",
        primary_key="",
        view_target=home(target) if target else "",
        view_sources=tuple(sorted({home(s) for s in sources})),
        partial=True,
    )


# -- helpers ------------------------------------------------------------------------------------


def _baseline_count(rt: Runtime, table: str) -> int | None:
    """The count a guard of this run took of ``table`` (``db.name``, wherever ``relocate`` moved it)."""
    for counts, relocate in reversed(list(rt.guard_baselines.values())):
        for guarded, rows in counts.items():
            database, name = guarded.split(".", 1)
            if table in (guarded, f"{relocate.get(database, database)}.{name}"):
                return rows
    return None


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
            details.append(f"{r.moved_to}: before {r.before}, after {r.after}")
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


def _squash(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _qualify(table: str) -> str:
    database, _, name = table.partition(".")
    return qualified(database, name)
