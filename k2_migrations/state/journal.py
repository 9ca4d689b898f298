"""The journal: an append-only table of every run, revision and operation step.

ClickHouse has no transactional DDL, so a run that dies leaves the database between two states.
The journal is how the next run knows where: a revision whose last event is ``started`` or
``failed`` is *in progress*. Each revision application is an *attempt*; every step of an attempt is
journaled ``started`` then ``done`` (or ``failed``) with what it needs to be resumed — a guard's
baseline counts, when ingestion was paused — in ``payload``. A later run resumes the attempt: steps
already ``done`` are not run again, the step that was running is re-checked against the live state.

Rows are only ever appended (a ``Log`` table: no parts to create or merge, so an append costs a few
milliseconds — the journal is written while ingestion is paused), so a crash can lose at most the
rows being written, never rewrite history. Rows may be held back and appended with the next one
that must be durable (see ``journal_eagerly`` on the operations): a crash can thus lose a step's
rows, never invent one — the step then counts as not done, and the next run re-checks it against
the live state, which every operation is built to do. SQL and errors are masked before they are
written.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from k2_migrations.config import mask_secrets
from k2_migrations.decisions import attempts
from k2_migrations.decisions.attempts import Attempt, JournalRow
from k2_migrations.sqltext.quoting import qualified
from k2_migrations.state.rows import insert_rows, run_state_ddl, sync_replica, table_engine

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from k2_migrations.introspection.topology import ClusterMode

JOURNAL_TABLE = "k2_migrations_journal"

_COLUMNS = [
    ("at", "DateTime64(6, 'UTC')"),
    ("run_id", "String"),
    ("attempt_id", "String"),
    ("seq", "UInt32"),
    ("kind", "String"),
    ("revision", "String"),
    ("direction", "String"),
    ("step", "Int32"),
    ("operation", "String"),
    ("sql", "String"),
    ("status", "String"),
    ("elapsed_ms", "Float64"),
    ("os_user", "String"),
    ("db_user", "String"),
    ("host", "String"),
    ("command", "String"),
    ("error", "String"),
    ("payload", "String"),
]


def journal_ddl(database: str, cluster: ClusterMode | None = None) -> str:
    """The journal's table: a ``Log`` on one server (appends without parts); replicated on a cluster."""
    engine = cluster.state_engine(database, "(at, run_id, seq)") if cluster else "Log"
    return f"""CREATE TABLE IF NOT EXISTS {qualified(database, JOURNAL_TABLE)}
(
    at DateTime64(6, 'UTC'),
    run_id String,
    attempt_id String,
    seq UInt32,
    kind LowCardinality(String),
    revision String,
    direction LowCardinality(String),
    step Int32,
    operation String,
    sql String,
    status LowCardinality(String),
    elapsed_ms Float64,
    os_user String,
    db_user String,
    host String,
    command String,
    error String,
    payload String
)
ENGINE = {engine}"""


@dataclass(frozen=True)
class Identity:
    """Who runs: written on every journal row and shown as a lock's holder."""

    os_user: str
    db_user: str
    host: str
    pid: int
    command: str


class Journal:
    def __init__(self, client: Client, database: str, identity: Identity) -> None:
        self.client = client
        self.database = database
        self.identity = identity
        self.run_id = uuid.uuid4().hex[:16]
        self._seq = 0
        self._pending: list[list[Any]] = []

    @property
    def table(self) -> str:
        return qualified(self.database, JOURNAL_TABLE)

    def ensure(self, cluster: ClusterMode | None = None) -> None:
        run_state_ddl(self.client, journal_ddl(self.database, cluster), cluster)

    def exists(self) -> bool:
        """Whether the journal exists; on a cluster, this replica has then taken in the others' rows."""
        engine = table_engine(self.client, self.database, JOURNAL_TABLE)
        sync_replica(self.client, self.database, JOURNAL_TABLE, engine)
        return engine is not None

    def write(
        self,
        kind: str,
        status: str,
        *,
        attempt_id: str = "",
        revision: str = "",
        direction: str = "",
        step: int = 0,
        operation: str = "",
        sql: str = "",
        elapsed_ms: float = 0.0,
        error: str = "",
        payload: dict[str, Any] | None = None,
        defer: bool = False,
    ) -> None:
        """Append one row; with ``defer`` it is written together with the next one (see above)."""
        self._seq += 1
        ident = self.identity
        row = [
            datetime.now(UTC),
            self.run_id,
            attempt_id,
            self._seq,
            kind,
            revision,
            direction,
            step,
            mask_secrets(operation),
            mask_secrets(sql),
            status,
            elapsed_ms,
            ident.os_user,
            ident.db_user,
            ident.host,
            mask_secrets(ident.command),
            mask_secrets(error),
            mask_secrets(json.dumps(payload or {}, sort_keys=True, default=str)),
        ]
        self._pending.append(row)
        if not defer:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            rows, self._pending = self._pending, []
            insert_rows(self.client, self.table, [column for column, _ in _COLUMNS], rows)

    def attempts(self) -> list[Attempt]:
        """Every attempt, oldest first, with its steps (decided by :mod:`k2_migrations.decisions.attempts`)."""
        if not self.exists():
            return []
        rows = self.client.query(
            f"SELECT run_id, seq, at, attempt_id, kind, revision, direction, step, operation, status, payload"
            f" FROM {self.table} WHERE attempt_id != ''"
        ).result_rows
        return attempts.attempts(
            JournalRow(
                str(run_id),
                int(seq),
                at,
                str(attempt_id),
                str(kind),
                str(revision),
                str(direction),
                int(step),
                str(operation),
                str(status),
                json.loads(payload or "{}"),
            )
            for run_id, seq, at, attempt_id, kind, revision, direction, step, operation, status, payload in rows
        )

    def in_progress(self) -> Attempt | None:
        """The attempt left half-applied, if any (there is at most one: runs are serialised)."""
        return attempts.in_progress(self.attempts())

    def entries(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` journal rows, newest first, for ``k2-migrate log``."""
        if not self.exists():
            return []
        result = self.client.query(
            f"SELECT at, run_id, kind, revision, direction, step, operation, status, elapsed_ms,"
            f" os_user, db_user, host, error, sql FROM {self.table}"
            f" ORDER BY at DESC, seq DESC LIMIT {int(limit)}"
        )
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
