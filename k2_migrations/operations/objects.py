"""Databases and objects: create and drop them, idempotently, never with ``DROP ... SYNC``.

``DROP ... SYNC`` hangs on the embedded engine, and a plain DROP frees the name at once on an Atomic
database anyway. A drop of a table that holds rows needs ``allow_rows=True``; a guard of the same
run then accounts the table as dropped on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from alembic.operations import Operations

from k2_migrations.engine.context import Payload
from k2_migrations.errors import DriftDetected, GuardFailed
from k2_migrations.introspection.dependencies import dependents_argument, refuse_dependents
from k2_migrations.operations.base import ClickHouseOperation, _register, one_statement
from k2_migrations.operations.guards import _baseline_count
from k2_migrations.sqltext import (
    object_kind,
)
from k2_migrations.sqltext.ddl import render_ddl
from k2_migrations.sqltext.quoting import ident, qualified

if TYPE_CHECKING:
    from sqlalchemy import Table

    from k2_migrations.engine.context import StepContext

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

    def apply(self, rt: StepContext) -> Payload:
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

    def apply(self, rt: StepContext) -> Payload:
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
    only sees rows inserted after it exists; backfill with an explicit INSERT ... SELECT). An object
    that exists is compared with the DDL as the engine renders both: the same is kept, another is
    drift (exit 8) — this operation never changes an existing object, and saying "kept" over a
    different one would leave the revision believing what is not so.
    """

    database: str
    name: str
    ddl: str | Table

    #: Durable before the next step: a later step of the same revision may change what this one
    #: created (a column added, a query replaced), and a resumed run that re-checked this step over
    #: that change would take it for drift. Its ``done`` row durable, a resumed run skips it instead.
    journal_eagerly = True

    @classmethod
    def create_object(cls, operations: Operations, database: str, name: str, ddl: str | Table) -> None:
        if isinstance(ddl, str):
            one_statement(ddl, "op.create_object")
        operations.invoke(cls(database, name, ddl))

    def describe(self) -> str:
        return f"create {object_kind(render_ddl(self.ddl)) or 'object'} {self.database}.{self.name}"

    def render(self) -> list[str]:
        return [render_ddl(self.ddl)]

    def apply(self, rt: StepContext) -> Payload:
        from k2_migrations.operations.views import live_differences

        info = rt.catalog.table(self.database, self.name)
        if info is None:
            rt.execute(self.render()[0])
            return {}
        differences = live_differences(rt, info, self.render()[0])
        if differences:
            raise DriftDetected(
                f"{info.qualified} exists with another definition than this create_object's: "
                + "; ".join(differences)
                + " — create_object never changes an existing object: change a view's query with "
                "op.replace_view, a table's structure with op.rebuild_table, or make the DDL match"
            )
        return {"note": "exists, kept"}

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
    #: "refuse": stop (exit 5) while views read or write it; "handled": the revision re-creates them.
    dependents: str = "refuse"

    @classmethod
    def drop_object(
        cls,
        operations: Operations,
        database: str,
        name: str,
        *,
        allow_rows: bool = False,
        dependents: str = "refuse",
    ) -> None:
        operations.invoke(cls(database, name, allow_rows, dependents_argument(dependents)))

    def describe(self) -> str:
        return f"drop {self.database}.{self.name}"

    def render(self) -> list[str]:
        return [f"DROP TABLE IF EXISTS {qualified(self.database, self.name)}"]

    def guard_notes(self) -> list[str]:
        notes = [] if self.allow_rows else [f"refuses if {self.database}.{self.name} holds rows"]
        return notes + ([] if self.dependents == "handled" else ["refuses while views depend on it"])

    def apply(self, rt: StepContext) -> Payload:
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
        if self.dependents != "handled":
            refuse_dependents(rt.catalog, self.database, self.name, "drop")
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

    def replay(self, rt: StepContext, payload: Payload) -> None:
        from k2_migrations.engine.results import DroppedTable

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

    def apply(self, rt: StepContext) -> Payload:
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
