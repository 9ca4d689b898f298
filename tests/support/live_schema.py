"""The live schema of an embedded database, read from system tables only, as JSON.

Tests compare it with a schema written down by hand, so it must not come from k2-migrations' own
catalog or shape code: those are what is under test. It reads the names of the databases, the name
and engine of every table and view outside the engine's own databases and the migrations database,
the name and type of each of their columns in order, and how many mutations the migrations database
has ever had (a version change must never be one).

The test process cannot open a walk's data path itself (chDB: one path per process, and the test
process already has the shared one), so this runs in another process:
``python -m tests.support.live_schema PATH MIGRATIONS_DATABASE`` prints it; the walk server calls
:func:`read` in the process that has just run ``k2-migrate current --json``.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

#: The databases every engine has; what a migration does never shows there.
ENGINE_DATABASES = ("system", "information_schema", "INFORMATION_SCHEMA")


def read(client: Client, migrations_database: str) -> dict[str, Any]:
    """``databases`` (names, sorted), ``tables`` ({db: {name: engine}}), ``columns`` ({"db.t": [[name,
    type], ...]}) and ``migration_mutations`` (count in the migrations database)."""
    hidden = {"hidden": [*ENGINE_DATABASES, migrations_database]}
    databases = sorted(str(r[0]) for r in client.query("SELECT name FROM system.databases").result_rows)
    tables: dict[str, dict[str, str]] = {}
    for database, name, engine in client.query(
        "SELECT database, name, engine FROM system.tables WHERE database NOT IN {hidden:Array(String)}",
        parameters=hidden,
    ).result_rows:
        tables.setdefault(str(database), {})[str(name)] = str(engine)
    columns: dict[str, list[list[str]]] = {}
    for database, table, name, type_ in client.query(
        "SELECT database, table, name, type FROM system.columns WHERE database NOT IN {hidden:Array(String)}"
        " ORDER BY database, table, position",
        parameters=hidden,
    ).result_rows:
        columns.setdefault(f"{database}.{table}", []).append([str(name), str(type_)])
    mutations = client.query(
        "SELECT count() FROM system.mutations WHERE database = {d:String}",
        parameters={"d": migrations_database},
    ).result_rows[0][0]
    return {
        "databases": databases,
        "tables": tables,
        "columns": columns,
        "migration_mutations": int(mutations),
    }


def main(path: str, migrations_database: str) -> None:
    import clickhouse_connect

    print(json.dumps(read(clickhouse_connect.get_client(dsn=f"chdb://{path}"), migrations_database)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
