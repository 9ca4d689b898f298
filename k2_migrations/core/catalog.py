"""Reading the live state from system tables.

Every operation decides what to do from what this module reads, never from what a journal or a
revision believes: that is what makes re-running a half-applied revision safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

#: Engines whose background merges collapse rows: count() shrinks without any row being lost.
COLLAPSING_ENGINES = frozenset(
    {
        "ReplacingMergeTree",
        "AggregatingMergeTree",
        "SummingMergeTree",
        "CollapsingMergeTree",
        "VersionedCollapsingMergeTree",
        "GraphiteMergeTree",
        "CoalescingMergeTree",
    }
)

_TO_TARGET = re.compile(r"\bTO\s+((?:`[^`]+`|\w+)\.(?:`[^`]+`|\w+))", re.IGNORECASE)


@dataclass(frozen=True)
class TableInfo:
    """One row of system.tables, reduced to what migrations need."""

    database: str
    name: str
    engine: str
    create_query: str
    engine_full: str
    sorting_key: str
    partition_key: str
    primary_key: str
    as_select: str
    total_rows: int | None

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.name}"

    @property
    def is_view(self) -> bool:
        return self.engine in {"MaterializedView", "View", "LiveView", "WindowView"}

    @property
    def is_merge_tree(self) -> bool:
        return self.engine.endswith("MergeTree")

    @property
    def collapses(self) -> bool:
        return self.engine.removeprefix("Replicated").removeprefix("Shared") in COLLAPSING_ENGINES

    @property
    def view_target(self) -> str | None:
        """``db.table`` a materialized view writes to, read from its definition."""
        if self.engine != "MaterializedView":
            return None
        head = self.create_query.split(" AS SELECT", 1)[0].split(" AS\nSELECT", 1)[0]
        match = _TO_TARGET.search(head)
        return match.group(1).replace("`", "") if match else None


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str
    position: int
    default_kind: str
    default_expression: str


@dataclass(frozen=True)
class MutationInfo:
    mutation_id: str
    command: str
    is_done: bool
    parts_to_do: int
    latest_fail_reason: str
    create_time: Any


class Catalog:
    """Typed queries on system tables, bound to one client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.client.query(sql, parameters=parameters or {}).result_rows]

    def scalar(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        rows = self.rows(sql, parameters)
        return rows[0][0] if rows else None

    def database_engine(self, database: str) -> str | None:
        engine = self.scalar("SELECT engine FROM system.databases WHERE name = {d:String}", {"d": database})
        return str(engine) if engine is not None else None

    def database_exists(self, database: str) -> bool:
        return self.database_engine(database) is not None

    def table_names(self, database: str) -> list[str]:
        return [
            str(row[0])
            for row in self.rows(
                "SELECT name FROM system.tables WHERE database = {d:String} ORDER BY name", {"d": database}
            )
        ]

    def table(self, database: str, name: str) -> TableInfo | None:
        rows = self.rows(
            "SELECT database, name, engine, create_table_query, engine_full, sorting_key, partition_key,"
            " primary_key, as_select, total_rows FROM system.tables"
            " WHERE database = {d:String} AND name = {n:String}",
            {"d": database, "n": name},
        )
        if not rows:
            return None
        row = rows[0]
        return TableInfo(
            database=row[0],
            name=row[1],
            engine=row[2],
            create_query=row[3],
            engine_full=row[4],
            sorting_key=row[5],
            partition_key=row[6],
            primary_key=row[7],
            as_select=row[8],
            total_rows=None if row[9] is None else int(row[9]),
        )

    def exists(self, database: str, name: str) -> bool:
        return bool(
            self.scalar(
                "SELECT count() FROM system.tables WHERE database = {d:String} AND name = {n:String}",
                {"d": database, "n": name},
            )
        )

    def databases_holding(self, name: str) -> list[str]:
        return [
            str(row[0])
            for row in self.rows("SELECT database FROM system.tables WHERE name = {n:String}", {"n": name})
        ]

    def columns(self, database: str, table: str) -> list[ColumnInfo]:
        return [
            ColumnInfo(name=r[0], type=r[1], position=int(r[2]), default_kind=r[3], default_expression=r[4])
            for r in self.rows(
                "SELECT name, type, position, default_kind, default_expression FROM system.columns"
                " WHERE database = {d:String} AND table = {t:String} ORDER BY position",
                {"d": database, "t": table},
            )
        ]

    def views_reading(self, database: str, table: str) -> list[str]:
        """Materialized views (``db.name``) whose source is ``database.table``."""
        info = self.rows(
            "SELECT dependencies_database, dependencies_table FROM system.tables"
            " WHERE database = {d:String} AND name = {n:String}",
            {"d": database, "n": table},
        )
        if not info:
            return []
        databases, names = info[0]
        return [f"{d}.{n}" for d, n in zip(databases, names, strict=True)]

    def mutations(self, database: str, table: str) -> list[MutationInfo]:
        return [
            MutationInfo(
                mutation_id=r[0],
                command=r[1],
                is_done=bool(r[2]),
                parts_to_do=int(r[3]),
                latest_fail_reason=r[4],
                create_time=r[5],
            )
            for r in self.rows(
                "SELECT mutation_id, command, is_done, parts_to_do, latest_fail_reason, create_time"
                " FROM system.mutations WHERE database = {d:String} AND table = {t:String}"
                " ORDER BY create_time",
                {"d": database, "t": table},
            )
        ]

    def count(self, database: str, table: str) -> int:
        """``count()``: O(1) from part metadata on MergeTree tables."""
        from k2_migrations.core.sql import qualified

        return int(self.scalar(f"SELECT count() FROM {qualified(database, table)}"))
