"""Captured object definitions, so a downgrade can restore exactly what an upgrade replaced.

When a revision drops a view or a Kafka table to re-create it elsewhere, the definition that existed
before is the one a downgrade must bring back — not the revision author's idea of it, and not a
definition reformatted by hand. The live ``create_table_query`` is stored here, keyed by the revision
that captured it and the object's qualified name, in an append-only table: a capture is never
overwritten within an attempt (a resumed run must not capture the half-migrated state), and the
newest capture wins across attempts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from k2_migrations.core.sql import insert_rows, qualified

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

SNAPSHOT_TABLE = "k2_migrations_snapshots"


def snapshots_ddl(database: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {qualified(database, SNAPSHOT_TABLE)}
(
    at DateTime64(6, 'UTC'),
    revision String,
    object String,
    attempt_id String,
    definition String
)
ENGINE = MergeTree
ORDER BY (revision, object, at)"""


class Snapshots:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database

    @property
    def table(self) -> str:
        return qualified(self.database, SNAPSHOT_TABLE)

    def ensure(self) -> None:
        self.client.command(snapshots_ddl(self.database))

    def save(self, revision: str, obj: str, attempt_id: str, definition: str) -> None:
        insert_rows(
            self.client,
            self.table,
            [
                ("at", "DateTime64(6, 'UTC')"),
                ("revision", "String"),
                ("object", "String"),
                ("attempt_id", "String"),
                ("definition", "String"),
            ],
            [[datetime.now(UTC), revision, obj, attempt_id, definition]],
        )

    def latest(self, revision: str, obj: str, attempt_id: str | None = None) -> str | None:
        """The newest capture of ``obj`` by ``revision`` (within one attempt when given)."""
        where = "revision = {r:String} AND object = {o:String}"
        params = {"r": revision, "o": obj}
        if attempt_id is not None:
            where += " AND attempt_id = {a:String}"
            params["a"] = attempt_id
        rows = self.client.query(
            f"SELECT definition FROM {self.table} WHERE {where} ORDER BY at DESC LIMIT 1", parameters=params
        ).result_rows
        return str(rows[0][0]) if rows else None

    def latest_of_kind(self, obj: str) -> str | None:
        """The newest capture of ``obj`` by any revision."""
        rows = self.client.query(
            f"SELECT definition FROM {self.table} WHERE object = {{o:String}} ORDER BY at DESC LIMIT 1",
            parameters={"o": obj},
        ).result_rows
        return str(rows[0][0]) if rows else None
