"""k2-migrate's own rows (journal, snapshots, version record): appended as one block — one INSERT,
applied atomically — and read, on a cluster, after this replica has taken in what the others wrote."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from k2_migrations.sqltext.quoting import qualified

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from k2_migrations.introspection.topology import ClusterMode


def insert_rows(client: Client, table: str, columns: list[str], rows: list[list[Any]]) -> None:
    """INSERT the few rows k2-migrate writes itself (journal, snapshots) as one JSONEachRow block.

    One statement whatever the number of rows, its cost flat (about 4 ms on chDB for 1 or 100 rows):
    server-side parameter binding grows with the number of parameters (0.5 s for 100 journal rows),
    and ``client.insert`` would load pandas on first use to insert a handful of rows.
    """
    body = "\n".join(
        json.dumps(dict(zip(columns, (_json_value(v) for v in row), strict=True)), ensure_ascii=False)
        for row in rows
    )
    client.raw_insert(table, columns, body.encode(), fmt="JSONEachRow")


def _json_value(value: Any) -> Any:
    """Datetimes as ClickHouse reads them from JSON (UTC, microseconds); the rest as JSON has them."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def table_engine(client: Client, database: str, name: str) -> str | None:
    """The engine ``system.tables`` reports for ``database.name`` (None: no such table)."""
    rows = client.query(
        "SELECT engine FROM system.tables WHERE database = {d:String} AND name = {n:String}",
        parameters={"d": database, "n": name},
    ).result_rows
    return str(rows[0][0]) if rows else None


def sync_replica(client: Client, database: str, name: str, engine: str | None = None) -> None:
    """On a cluster, take in what the other replicas wrote before reading (nothing for a plain table).

    The migration lock orders the writers; a host reading after another host's run must also have
    fetched that run's rows, which ``SYSTEM SYNC REPLICA`` waits for.
    """
    engine = engine if engine is not None else table_engine(client, database, name)
    if (engine or "").startswith("Replicated"):
        client.command(f"SYSTEM SYNC REPLICA {qualified(database, name)}")


def run_state_ddl(client: Client, sql: str, cluster: ClusterMode | None) -> None:
    """Create or change a migrations table: on this server, or ON CLUSTER with every host's outcome
    checked (:meth:`ClusterMode.run`) in cluster mode."""
    if cluster is not None:
        cluster.run(client, sql)
    else:
        client.command(sql)
