"""Reading the live state from system tables.

Every operation decides what to do from what this module reads, never from what a journal or a
revision believes: that is what makes re-running a half-applied revision safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from k2_migrations.sqltext.quoting import literal, qualified

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

#: The system.tables columns a :class:`TableInfo` holds, in its field order.
_TABLE_COLUMNS = (
    "database, name, engine, create_table_query, engine_full, sorting_key, partition_key, primary_key,"
    " as_select, comment"
)

#: Engines that consume from outside: dropping such a table waits for its consumers to stop.
STREAMING_ENGINES = frozenset({"Kafka", "RabbitMQ", "NATS", "FileLog", "S3Queue", "AzureQueue"})

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
    comment: str = ""

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
    def streams(self) -> bool:
        return self.engine in STREAMING_ENGINES

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
    codec: str = ""
    comment: str = ""


@dataclass(frozen=True)
class MutationInfo:
    mutation_id: str
    command: str
    is_done: bool
    parts_to_do: int
    latest_fail_reason: str
    create_time: Any


class Catalog:
    """Typed queries on system tables, bound to one client.

    With ``cluster`` (cluster mode, not Cloud), what must hold on every replica is read on every
    replica: mutations from ``clusterAllReplicas``, and a replicated table is synced with its peers
    (``SYSTEM SYNC REPLICA``) before it is counted, so a guard counts what all replicas agree on.
    """

    def __init__(self, client: Client, cluster: str | None = None) -> None:
        self.client = client
        self.cluster = cluster

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.client.query(sql, parameters=parameters or {}).result_rows]

    def scalar(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        rows = self.rows(sql, parameters)
        return rows[0][0] if rows else None

    def database_engine(self, database: str) -> str | None:
        engine = self.scalar("SELECT engine FROM system.databases WHERE name = {d:String}", {"d": database})
        return str(engine) if engine is not None else None

    def database_names(self) -> list[str]:
        return [str(row[0]) for row in self.rows("SELECT name FROM system.databases ORDER BY name")]

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
        return self.tables(database, [name]).get(name)

    def tables(self, database: str, names: list[str] | None = None) -> dict[str, TableInfo]:
        """The objects of ``database`` (only ``names``, when given) by name, in one query."""
        if names is not None and not names:
            return {}
        where = "database = {d:String}" + ("" if names is None else " AND name IN {n:Array(String)}")
        rows = self.rows(
            f"SELECT {_TABLE_COLUMNS} FROM system.tables WHERE {where} ORDER BY name",
            {"d": database, "n": names or []},
        )
        return {str(row[1]): TableInfo(*row) for row in rows}

    def exists(self, database: str, name: str) -> bool:
        """Whether a table, view or dictionary ``database.name`` exists (``EXISTS``: no system table read)."""
        return str(self.client.command(f"EXISTS {qualified(database, name)}")).strip() == "1"

    def find(self, name: str, databases: list[str]) -> dict[str, TableInfo]:
        """Where among ``databases`` an object called ``name`` exists, by database, in one query."""
        rows = self.rows(
            f"SELECT {_TABLE_COLUMNS} FROM system.tables WHERE name = {{n:String}} AND database IN {{d:Array(String)}}",
            {"n": name, "d": databases},
        )
        return {str(row[0]): TableInfo(*row) for row in rows}

    def databases_holding(self, name: str) -> list[str]:
        return [
            str(row[0])
            for row in self.rows("SELECT database FROM system.tables WHERE name = {n:String}", {"n": name})
        ]

    def columns(self, database: str, table: str) -> list[ColumnInfo]:
        return self.columns_by_table(database, [table]).get(table, [])

    def columns_by_table(self, database: str, tables: list[str] | None = None) -> dict[str, list[ColumnInfo]]:
        """The columns of the tables of ``database`` (only ``tables``, when given), in one query."""
        if tables is not None and not tables:
            return {}
        where = "database = {d:String}" + ("" if tables is None else " AND table IN {t:Array(String)}")
        out: dict[str, list[ColumnInfo]] = {}
        for r in self.rows(
            "SELECT table, name, type, position, default_kind, default_expression, compression_codec, comment"
            f" FROM system.columns WHERE {where} ORDER BY table, position",
            {"d": database, "t": tables or []},
        ):
            out.setdefault(str(r[0]), []).append(
                ColumnInfo(r[1], r[2], int(r[3]), r[4], r[5], codec=r[6], comment=r[7])
            )
        return out

    def parts_by_table(
        self, database: str, tables: list[str] | None = None
    ) -> dict[str, tuple[list[tuple[str, str, str, int]], list[tuple[str, str]]]]:
        """The data-skipping indexes (name, expression, type, granularity) and projections (name, query)
        of the tables of ``database`` (only ``tables``, when given), by table, in two queries."""
        if tables is not None and not tables:
            return {}
        where = "database = {d:String}" + ("" if tables is None else " AND table IN {t:Array(String)}")
        parameters = {"d": database, "t": tables or []}
        out: dict[str, tuple[list[tuple[str, str, str, int]], list[tuple[str, str]]]] = {}
        for table, name, expr, type_full, granularity in self.rows(
            "SELECT table, name, expr, type_full, granularity FROM system.data_skipping_indices"
            f" WHERE {where} ORDER BY table, name",
            parameters,
        ):
            out.setdefault(str(table), ([], []))[0].append(
                (str(name), str(expr), str(type_full), int(granularity))
            )
        for table, name, query in self.rows(
            f"SELECT table, name, query FROM system.projections WHERE {where} ORDER BY table, name",
            parameters,
        ):
            out.setdefault(str(table), ([], []))[1].append((str(name), str(query)))
        return out

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

    def stream_batches(self) -> list[int] | None:
        """When the batches the streaming tables flushed were written, as far as the parts show it:
        seconds since the epoch on the engine's clock (:meth:`clock`); None when no table is fed by
        a streaming table.

        The tables fed are the ``TO`` targets of the materialized views that read a streaming table
        (:data:`STREAMING_ENGINES`); a part of theirs not merged yet (level 0) is one batch, its
        ``modification_time`` when it was written (a merge folds batches into one part: those are
        no longer seen).
        """
        views = self.rows(
            f"SELECT {_TABLE_COLUMNS} FROM system.tables WHERE engine = 'MaterializedView'"
            " AND (database, name) IN (SELECT arrayJoin(arrayZip(dependencies_database, dependencies_table))"
            " FROM system.tables WHERE engine IN {e:Array(String)})",
            {"e": sorted(STREAMING_ENGINES)},
        )
        fed = sorted({tuple(t.split(".", 1)) for t in (TableInfo(*row).view_target for row in views) if t})
        if not fed:
            return None
        times = self.scalar(
            "SELECT groupUniqArray(toUnixTimestamp(modification_time)) FROM system.parts"
            " WHERE active AND level = 0 AND (database, table) IN {t:Array(Tuple(String, String))}",
            {"t": fed},
        )
        return sorted(int(t) for t in times)

    def clock(self) -> int:
        """The engine's clock now, in seconds since the epoch."""
        return int(self.scalar("SELECT toUnixTimestamp(now())"))

    def mutations(self, database: str, table: str) -> list[MutationInfo]:
        """The table's mutations, oldest first; on a cluster, one per mutation across every replica.

        A replicated table's mutation has one id on all its replicas, and is done only when every
        replica reports it done — a replica that has not fetched it yet reports nothing, so the
        count of replicas reporting it must reach the table's ``total_replicas`` too.
        """
        if self.cluster is None:
            sql = (
                "SELECT mutation_id, command, is_done, parts_to_do, latest_fail_reason, create_time"
                " FROM system.mutations WHERE database = {d:String} AND table = {t:String} ORDER BY create_time"
            )
            parameters: dict[str, Any] = {"d": database, "t": table}
        else:
            replicas = self.scalar(
                "SELECT total_replicas FROM system.replicas WHERE database = {d:String} AND table = {t:String}",
                {"d": database, "t": table},
            )
            sql = (
                "SELECT mutation_id, any(command), min(is_done) AND count() >= {n:UInt64}, sum(parts_to_do),"
                " max(latest_fail_reason), min(create_time)"
                f" FROM clusterAllReplicas({literal(self.cluster)}, system.mutations)"
                " WHERE database = {d:String} AND table = {t:String} GROUP BY mutation_id ORDER BY min(create_time)"
            )
            parameters = {"d": database, "t": table, "n": int(replicas or 1)}
        return [
            MutationInfo(
                mutation_id=r[0],
                command=r[1],
                is_done=bool(r[2]),
                parts_to_do=int(r[3]),
                latest_fail_reason=r[4],
                create_time=r[5],
            )
            for r in self.rows(sql, parameters)
        ]

    def count(self, database: str, table: str) -> int:
        """``count()``: O(1) from part metadata on MergeTree tables (a replica synced first on a cluster)."""
        if self.cluster is not None and str(
            self.scalar(
                "SELECT engine FROM system.tables WHERE database = {d:String} AND name = {t:String}",
                {"d": database, "t": table},
            )
            or ""
        ).startswith("Replicated"):
            self.client.command(f"SYSTEM SYNC REPLICA {qualified(database, table)}")
        return int(self.scalar(f"SELECT count() FROM {qualified(database, table)}"))
