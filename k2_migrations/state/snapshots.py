"""Captured object definitions, so a downgrade can restore exactly what an upgrade replaced.

When a revision drops a view or a Kafka table to re-create it elsewhere, the definition that existed
before is the one a downgrade must bring back — not the revision author's idea of it, and not a
definition reformatted by hand. The live ``create_table_query`` is stored here, keyed by the revision
that captured it and the object's qualified name, in an append-only table: a capture is never
overwritten within an attempt (a resumed run must not capture the half-migrated state), and the
newest capture wins across attempts. The same table keeps the schema each run left, for ``check``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from k2_migrations.sqltext.quoting import qualified
from k2_migrations.state.rows import insert_rows, run_state_ddl, sync_replica

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from k2_migrations.introspection.topology import ClusterMode

SNAPSHOT_TABLE = "k2_migrations_snapshots"

#: The object name under which a run records the schema it left (keyed by the heads, not a revision).
SCHEMA_RECORD = "__schema__"


def snapshots_ddl(database: str, cluster: ClusterMode | None = None) -> str:
    order_by = "(revision, object, at)"
    engine = cluster.state_engine(database, order_by) if cluster else f"MergeTree\nORDER BY {order_by}"
    return f"""CREATE TABLE IF NOT EXISTS {qualified(database, SNAPSHOT_TABLE)}
(
    at DateTime64(6, 'UTC'),
    revision String,
    object String,
    attempt_id String,
    definition String
)
ENGINE = {engine}"""


class Snapshots:
    """The snapshots table, read once per revision: a run holds the migration lock, so the captures
    it has not written itself cannot change under it."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database
        #: revision -> its captures, oldest first: (object, attempt id, definition)
        self._by_revision: dict[str, list[tuple[str, str, str]]] = {}
        self._synced = False

    @property
    def table(self) -> str:
        return qualified(self.database, SNAPSHOT_TABLE)

    def ensure(self, cluster: ClusterMode | None = None) -> None:
        run_state_ddl(self.client, snapshots_ddl(self.database, cluster), cluster)

    def save(self, revision: str, attempt_id: str, definitions: dict[str, str]) -> None:
        """Append one capture per object (``{"db.name": create query}``), all in one INSERT."""
        now = datetime.now(UTC)
        insert_rows(
            self.client,
            self.table,
            ["at", "revision", "object", "attempt_id", "definition"],
            [[now, revision, obj, attempt_id, definition] for obj, definition in definitions.items()],
        )
        if revision in self._by_revision:
            self._by_revision[revision].extend(
                (obj, attempt_id, definition)
                for obj, definition in definitions.items()
                if obj != SCHEMA_RECORD
            )

    def latest(self, revision: str, obj: str, attempt_id: str | None = None) -> str | None:
        """The newest capture of ``obj`` by ``revision`` (within one attempt when given)."""
        for captured, attempt, definition in reversed(self._captures(revision)):
            if captured == obj and attempt_id in (None, attempt):
                return definition
        return None

    def record_schema(self, heads: str, run_id: str, document: str) -> None:
        """Keep the schema a run left at ``heads`` (what ``check`` compares the live schema with)."""
        self.save(heads, run_id, {SCHEMA_RECORD: document})

    def recorded_schema(self, heads: str | None = None) -> str | None:
        """The newest schema record at ``heads``, or at any heads."""
        where, params = "object = {o:String}", {"o": SCHEMA_RECORD}
        if heads is not None:
            where += " AND revision = {r:String}"
            params["r"] = heads
        self._sync()
        rows = self.client.query(
            f"SELECT definition FROM {self.table} WHERE {where} ORDER BY at DESC LIMIT 1", parameters=params
        ).result_rows
        return str(rows[0][0]) if rows else None

    def _sync(self) -> None:
        """On a cluster, take in the other replicas' captures once: later ones are this run's own."""
        if not self._synced:
            sync_replica(self.client, self.database, SNAPSHOT_TABLE)
            self._synced = True

    def _captures(self, revision: str) -> list[tuple[str, str, str]]:
        """Every capture by ``revision``, oldest first."""
        if revision not in self._by_revision:
            self._sync()
            rows = self.client.query(
                f"SELECT object, attempt_id, definition FROM {self.table}"
                " WHERE revision = {r:String} AND object != {o:String} ORDER BY at",
                parameters={"r": revision, "o": SCHEMA_RECORD},
            ).result_rows
            self._by_revision[revision] = [(str(o), str(a), str(d)) for o, a, d in rows]
        return self._by_revision[revision]
