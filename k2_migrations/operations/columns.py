"""Adding and dropping columns, with types compared as the engine names them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alembic.operations import Operations

from k2_migrations.engine.context import Payload
from k2_migrations.errors import DriftDetected, UsageError
from k2_migrations.operations.base import ClickHouseOperation, _register
from k2_migrations.sqltext.ddl import render_type
from k2_migrations.sqltext.quoting import ident, qualified

if TYPE_CHECKING:
    from sqlalchemy.types import TypeEngine

    from k2_migrations.engine.context import StepContext

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

    @classmethod
    def drop_column_if_exists(cls, operations: Operations, database: str, table: str, column: str) -> None:
        operations.invoke(cls(database, table, column))

    def describe(self) -> str:
        return f"drop column {self.column} from {self.database}.{self.table}"

    def render(self) -> list[str]:
        return [
            f"ALTER TABLE {qualified(self.database, self.table)} DROP COLUMN IF EXISTS {ident(self.column)}"
        ]

    def apply(self, rt: StepContext) -> Payload:
        if not any(c.name == self.column for c in rt.catalog.columns(self.database, self.table)):
            return {"note": "already gone"}
        rt.execute(self.render()[0])
        return {}
