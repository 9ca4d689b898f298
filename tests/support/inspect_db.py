"""Print the K2 schema and logical row counts of an embedded database as JSON (run as a subprocess).

The kill harness cannot open the database it is killing processes on from its own process (chDB
allows one data path per process, and the test process already has one), so it asks this script.
"""

from __future__ import annotations

import json
import sys

import clickhouse_connect

from k2_migrations.k2 import baseline_schema as schema

COLLAPSING = {"silver_trades", "ohlcv_1m", "ohlcv_5m", "ohlcv_1h", "ohlcv_1d"}


def main(path: str, databases: list[str]) -> None:
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    state: dict[str, object] = {}
    for database in databases:
        rows = client.query(
            "SELECT name, create_table_query FROM system.tables WHERE database = {d:String}",
            parameters={"d": database},
        ).result_rows
        definitions = {str(n): str(q) for n, q in rows if str(n) in schema.all_objects()}
        counts = {
            t: int(
                client.query(
                    f"SELECT count() FROM {database}.{t}{' FINAL' if t in COLLAPSING else ''}"
                ).result_rows[0][0]
            )
            for t in schema.DATA_TABLES
            if t in definitions
        }
        state[database] = {"definitions": definitions, "counts": counts}
    mutations = client.query(
        "SELECT database, table, count() FROM system.mutations WHERE command LIKE '%MATERIALIZE COLUMN window_end%'"
        " GROUP BY database, table"
    ).result_rows
    state["window_end_mutations"] = {f"{d}.{t}": int(n) for d, t, n in mutations}
    print(json.dumps(state, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
