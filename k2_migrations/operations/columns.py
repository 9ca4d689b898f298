"""Adding, changing, renaming and dropping columns, each decided by what the engine itself reports.

``modify_column`` and ``rename_column`` compare the live column (system.columns) with the wanted one
as the engine renders it: the wanted change is first made to an empty scratch copy of the table and
read back, so ``CODEC(Delta, ZSTD)``, ``DEFAULT 1+2`` and ``INT`` compare as ``CODEC(Delta(4), ZSTD(1))``,
``1 + 2`` and ``Int32``, and a definition the engine refuses stops the step before the table is
touched. A type change rewrites every part: it runs as a mutation, waited with a progress bar and
never issued twice (a resumed run finds the type already changed and waits for the running
mutation). The definition a change replaces is captured, so ``restore_column`` in the downgrade
brings back exactly what was there. Renaming and dropping a column refuse while views read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from alembic.operations import Operations

from k2_migrations.decisions.columns import Change, ColumnDefinition, column_change
from k2_migrations.engine.context import Payload
from k2_migrations.errors import DriftDetected, UsageError
from k2_migrations.introspection.dependencies import dependents_argument, refuse_dependents
from k2_migrations.operations.base import ClickHouseOperation, _register
from k2_migrations.sqltext.ddl import render_type
from k2_migrations.sqltext.quoting import ident, literal, qualified

if TYPE_CHECKING:
    from sqlalchemy.types import TypeEngine

    from k2_migrations.engine.context import StepContext

# -- columns and mutations ---------------------------------------------------------------------


@_register("add_column_if_missing")
@dataclass(eq=False)
class AddColumn(ClickHouseOperation):
    """Add a column (metadata only; existing parts get the DEFAULT computed on read), with its comment
    and codec when given (``codec`` as ``modify_column`` takes it: ``Delta(8), ZSTD(1)``)."""

    database: str
    table: str
    column: str
    type: str | TypeEngine[Any]
    default: str | None = None
    after: str | None = None
    #: How ``default`` is kept: ``DEFAULT``, ``MATERIALIZED`` or ``ALIAS``.
    default_kind: str = "DEFAULT"
    comment: str = ""
    codec: str | None = None
    #: Before every other column (``ADD COLUMN ... FIRST``); ``after`` None and not first: the last.
    first: bool = False

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
        default_kind: str = "DEFAULT",
        comment: str = "",
        codec: str | None = None,
        first: bool = False,
    ) -> None:
        if first and after is not None:
            raise UsageError(
                f"add_column_if_missing({database}.{table}.{column}): first=True and after={after!r} "
                "contradict each other; give one of them"
            )
        operations.invoke(
            cls(database, table, column, type, default, after, _kind(default_kind), comment, codec, first)
        )

    def describe(self) -> str:
        where = " first" if self.first else f" after {self.after}" if self.after else ""
        return f"add column {self.column} {render_type(self.type)} to {self.database}.{self.table}{where}"

    def render(self) -> list[str]:
        default = f" {self.default_kind} {self.default}" if self.default else ""
        # COMMENT before CODEC: the engine refuses them the other way round (ClickHouse 26.1, measured).
        comment = f" COMMENT {literal(self.comment)}" if self.comment else ""
        codec = f" CODEC({self.codec})" if self.codec else ""
        after = " FIRST" if self.first else f" AFTER {ident(self.after)}" if self.after else ""
        return [
            f"ALTER TABLE {qualified(self.database, self.table)} ADD COLUMN IF NOT EXISTS "
            f"{ident(self.column)} {render_type(self.type)}{default}{comment}{codec}{after}"
        ]

    def apply(self, rt: StepContext) -> Payload:
        columns = {c.name: c for c in rt.catalog.columns(self.database, self.table)}
        existing = columns.get(self.column)
        if existing is None:
            rt.execute(self.render()[0])
            return {}
        from k2_migrations.introspection.shape import engine_type

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
    dependents: str = "refuse"

    @classmethod
    def drop_column_if_exists(
        cls, operations: Operations, database: str, table: str, column: str, *, dependents: str = "refuse"
    ) -> None:
        operations.invoke(cls(database, table, column, dependents_argument(dependents)))

    def describe(self) -> str:
        return f"drop column {self.column} from {self.database}.{self.table}"

    def render(self) -> list[str]:
        return [
            f"ALTER TABLE {qualified(self.database, self.table)} DROP COLUMN IF EXISTS {ident(self.column)}"
        ]

    def guard_notes(self) -> list[str]:
        return [] if self.dependents == "handled" else [f"refuses while a view reads {self.column}"]

    def apply(self, rt: StepContext) -> Payload:
        if not any(c.name == self.column for c in rt.catalog.columns(self.database, self.table)):
            return {"note": "already gone"}
        if self.dependents != "handled":
            refuse_dependents(rt.catalog, self.database, self.table, "drop", self.column)
        rt.execute(self.render()[0])
        return {}


#: An attribute ``modify_column`` leaves as it is (``...``: Alembic writes each default into ``op``'s
#: generated signature, and ``Ellipsis`` is one that reads back as itself).
Keep = EllipsisType
KEEP = ...


@_register("modify_column")
@dataclass(eq=False)
class ModifyColumn(ClickHouseOperation):
    """Change a column's type, default, codec or comment to what the revision says, unless it is so.

    ``default=None`` / ``codec=None`` remove them, ``comment=""`` empties it; what is not given stays.
    """

    database: str
    table: str
    column: str
    type: str | None = None
    default: str | Keep | None = KEEP
    codec: str | Keep | None = KEEP
    comment: str | Keep = KEEP
    #: ``DEFAULT``, or ``MATERIALIZED``/``ALIAS`` when ``restore_column`` brings one of those back.
    default_kind: str = "DEFAULT"
    #: Keep what the change replaces for the downgrade; not when ``restore_column`` is the change (a
    #: re-run of the restore would then bring back what it had just replaced).
    captures: bool = True

    @classmethod
    def modify_column(
        cls,
        operations: Operations,
        database: str,
        table: str,
        column: str,
        type: str | None = None,
        *,
        default: str | Keep | None = KEEP,
        codec: str | Keep | None = KEEP,
        comment: str | Keep = KEEP,
        default_kind: str = "DEFAULT",
    ) -> None:
        operation = cls(database, table, column, type, default, codec, comment, _kind(default_kind))
        if not operation.commands():
            raise UsageError(f"modify_column({database}.{table}.{column}): say what to change")
        operations.invoke(operation)

    @property
    def obj(self) -> str:
        return f"{self.database}.{self.table}.{self.column}"

    def describe(self) -> str:
        changes = [
            f"{what} {value if value is not None else 'removed'}"
            for what, value in (
                ("type", self.type),
                (self.default_kind.lower(), self.default),
                ("codec", self.codec),
                ("comment", self.comment),
            )
            if value is not KEEP and not (what == "type" and value is None)
        ]
        return f"modify column {self.obj}: {', '.join(changes)}"

    def commands(self, live: ColumnDefinition | None = None) -> list[str]:
        """What follows ``ALTER TABLE db.t``: one MODIFY COLUMN with what is set, one per removal (only
        of what the ``live`` column has, when known: the engine refuses to remove what is not there)."""
        parts = [render_type(self.type)] if self.type else []
        if isinstance(self.default, str):
            parts.append(f"{self.default_kind} {self.default}")
        if isinstance(self.comment, str):
            parts.append(f"COMMENT {literal(self.comment)}")
        if isinstance(self.codec, str):
            parts.append(f"CODEC({self.codec})")
        column = ident(self.column)
        out = [f"MODIFY COLUMN {column} {' '.join(parts)}"] if parts else []
        removals = {
            # A MATERIALIZED or ALIAS expression is removed by its own kind's name.
            (live.default_kind if live and live.default_kind else "DEFAULT"): (
                self.default,
                live and live.default_kind,
            ),
            "CODEC": (self.codec, live and live.codec),
        }
        out += [
            f"MODIFY COLUMN {column} REMOVE {what}"
            for what, (value, present) in removals.items()
            if value is None and (live is None or present)
        ]
        return out

    def render(self) -> list[str]:
        table = qualified(self.database, self.table)
        commands = self.commands()
        if not self.type:
            return [f"ALTER TABLE {table} {c}" for c in commands]
        # A type change rewrites every part: a mutation, waited on and never issued twice.
        return mutation_step(self.database, self.table, commands[0], issue=True).render() + [
            f"ALTER TABLE {table} {c}" for c in commands[1:]
        ]

    def apply(self, rt: StepContext) -> Payload:
        live = read_column(rt, self.database, self.table, self.column)
        if live is None:
            raise DriftDetected(
                f"modify_column: {self.obj} does not exist; the schema is not what this revision expects"
            )
        wanted = self._as_engine_renders(rt, live)
        change = column_change(live, wanted)
        commands = self.commands(live)
        if self.type and change is not Change.REWRITE:
            # The type is as wanted; a rewrite a killed run issued may still be running: wait, issue nothing.
            mutation_step(self.database, self.table, commands[0], issue=False).apply(rt)
        if change is Change.NONE:
            return {"note": "already as wanted"}
        if self.captures:
            capture(rt, self.obj, column_json(live))
        if change is Change.REWRITE:
            mutation_step(self.database, self.table, commands.pop(0), issue=True).apply(rt)
        for command in commands:
            rt.execute(f"ALTER TABLE {qualified(self.database, self.table)} {command}")
        return {"previous": column_json(live), "note": f"{change.value} change"}

    def _as_engine_renders(self, rt: StepContext, live: ColumnDefinition) -> ColumnDefinition:
        """The wanted column as the engine renders it: made on an empty scratch copy, read back."""
        from clickhouse_connect.driver.exceptions import DatabaseError

        scratch = f"k2_migrations_scratch_{rt.attempt_id}"
        copy = qualified(scratch, self.table)
        try:
            # On this server only and not journaled: nothing here is the schema's, all of it is dropped.
            rt.client.command(f"CREATE DATABASE IF NOT EXISTS {ident(scratch)}")
            rt.client.command(f"DROP TABLE IF EXISTS {copy}")
            rt.client.command(
                f"CREATE TABLE {copy} AS {qualified(self.database, self.table)} ENGINE = MergeTree ORDER BY tuple()"
            )
            for command in self.commands(live):
                rt.client.command(f"ALTER TABLE {copy} {command}")
            found = read_column(rt, scratch, self.table, self.column)
        except DatabaseError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
            raise UsageError(
                f"modify_column({self.obj}): the engine refuses the wanted definition: {reason[:300]}; "
                "fix the revision"
            ) from None
        finally:
            rt.client.command(f"DROP DATABASE IF EXISTS {ident(scratch)}")
        assert found is not None
        return found

    def reverse(self) -> ClickHouseOperation:
        return RestoreColumn(self.database, self.table, self.column)


@_register("restore_column")
@dataclass(eq=False)
class RestoreColumn(ClickHouseOperation):
    """Bring a column back to the definition ``modify_column`` replaced in this revision (the downgrade's
    half of it): type, default, codec and comment as they were, read from the capture."""

    database: str
    table: str
    column: str

    @classmethod
    def restore_column(cls, operations: Operations, database: str, table: str, column: str) -> None:
        operations.invoke(cls(database, table, column))

    @property
    def obj(self) -> str:
        return f"{self.database}.{self.table}.{self.column}"

    def describe(self) -> str:
        return f"restore column {self.obj} as this revision found it"

    def render(self) -> list[str]:
        return [
            f"-- ALTER TABLE {qualified(self.database, self.table)} MODIFY COLUMN {ident(self.column)} "
            "<the type, default, codec and comment modify_column captured in this revision>"
        ]

    def apply(self, rt: StepContext) -> Payload:
        previous = captured(rt, self.obj)
        if previous is None:
            raise UsageError(
                f"restore_column({self.obj}): no definition was captured by revision {rt.revision} "
                "(was it stamped instead of run?); use modify_column with the old values"
            )
        old = ColumnDefinition(**json.loads(previous))
        return ModifyColumn(
            self.database,
            self.table,
            self.column,
            old.type,
            old.default_expression or None,
            old.codec.removeprefix("CODEC(").removesuffix(")") or None,
            old.comment,
            old.default_kind or "DEFAULT",
            captures=False,
        ).apply(rt)


@_register("rename_column")
@dataclass(eq=False)
class RenameColumn(ClickHouseOperation):
    """Rename a column (metadata only); done when the old name is gone and the new one is there.

    Refused while a view reads the column (its query names it), unless ``dependents="handled"``.
    """

    database: str
    table: str
    old: str
    new: str
    dependents: str = "refuse"

    @classmethod
    def rename_column(
        cls,
        operations: Operations,
        database: str,
        table: str,
        old: str,
        new: str,
        *,
        dependents: str = "refuse",
    ) -> None:
        operations.invoke(cls(database, table, old, new, dependents_argument(dependents)))

    def describe(self) -> str:
        return f"rename column {self.old} of {self.database}.{self.table} to {self.new}"

    def render(self) -> list[str]:
        return [
            f"ALTER TABLE {qualified(self.database, self.table)} RENAME COLUMN {ident(self.old)} TO {ident(self.new)}"
        ]

    def guard_notes(self) -> list[str]:
        return [] if self.dependents == "handled" else [f"refuses while a view reads {self.old}"]

    def apply(self, rt: StepContext) -> Payload:
        names = {c.name for c in rt.catalog.columns(self.database, self.table)}
        if self.new in names and self.old not in names:
            return {"note": "already renamed"}
        if self.old not in names or self.new in names:
            state = "both exist" if self.old in names else "neither exists"
            raise DriftDetected(
                f"cannot rename column {self.old} of {self.database}.{self.table} to {self.new}: {state}; "
                "the schema is not what this revision expects"
            )
        if self.dependents != "handled":
            refuse_dependents(rt.catalog, self.database, self.table, "rename", self.old)
        rt.execute(self.render()[0])
        return {}

    def reverse(self) -> ClickHouseOperation:
        return RenameColumn(self.database, self.table, self.new, self.old, self.dependents)


def _kind(default_kind: str) -> str:
    kind = default_kind.upper()
    if kind not in ("DEFAULT", "MATERIALIZED", "ALIAS"):
        raise UsageError(f"default_kind={default_kind!r}: say DEFAULT, MATERIALIZED or ALIAS")
    return kind


def mutation_step(database: str, table: str, command: str, *, issue: bool) -> ClickHouseOperation:
    """``command`` as :class:`~k2_migrations.operations.mutations.RunMutation` runs it: issued and waited
    for with progress; or (``issue`` False: the live state is as wanted already) only any mutation a
    killed run issued waited for, nothing issued (its ``done_when`` then holds at once)."""
    from k2_migrations.operations.mutations import RunMutation

    return RunMutation(database, table, command, done_when=None if issue else "SELECT 1")


# -- what a change replaced, for the downgrade ----------------------------------------------------


def read_column(rt: StepContext, database: str, table: str, column: str) -> ColumnDefinition | None:
    rows = rt.catalog.rows(
        "SELECT type, default_kind, default_expression, compression_codec, comment FROM system.columns"
        " WHERE database = {d:String} AND table = {t:String} AND name = {c:String}",
        {"d": database, "t": table, "c": column},
    )
    return ColumnDefinition(*(str(v) for v in rows[0])) if rows else None


def column_json(column: ColumnDefinition) -> str:
    return json.dumps(column.__dict__, sort_keys=True)


def capture(rt: StepContext, obj: str, definition: str) -> None:
    """Keep what a step is about to replace, once per attempt: a resumed run must not capture the
    half-changed state. The downgrade of the same revision reads it back (:func:`captured`)."""
    assert rt.snapshots is not None
    if rt.snapshots.latest(rt.revision, obj, rt.attempt_id) is None:
        rt.snapshots.save(rt.revision, rt.attempt_id, {obj: definition})


def captured(rt: StepContext, obj: str) -> str | None:
    assert rt.snapshots is not None
    return rt.snapshots.latest(rt.revision, obj)
