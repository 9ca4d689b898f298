"""The run lock: at most one upgrade, downgrade or stamp against a database at a time.

ClickHouse has no row locks and no transactions, but DDL on one table name is atomic: of several
``CREATE TABLE x`` (without IF NOT EXISTS) racing for the same name, exactly one succeeds and the
others fail with ``TABLE_ALREADY_EXISTS``. The lock is that table: whoever creates
``<migrations db>.k2_migrations_lock`` holds the lock; its rows say who (host, pid, users, command,
start) and carry heartbeats. Releasing drops the table.

A holder that dies cannot hold the lock forever: a background thread inserts a heartbeat row every
``heartbeat_s`` seconds, and a lock whose newest heartbeat is older than ``expiry_s`` (judged by the
server's clock, so client clocks do not matter) is stale. So is a lock whose holder is a dead process
on this host, and any lock found on the embedded engine (chDB's own directory lock already proves
that no other process can be using it). A stale lock is broken by renaming the table away — a
single-table RENAME is atomic, so of two breakers only one succeeds — and taking it anew. The
heartbeat thread also checks that the lock table still carries its owner id; if not (a lock broken
by ``unlock --force`` or expiry during a long network partition), the run stops at its next step
boundary instead of going on unprotected.

On a cluster, a table created without ON CLUSTER lives on one replica only and would not exclude a
run that lands on another. Point the migrations database at a ``Replicated`` database there: its DDL
is serialised through Keeper, so the same CREATE race has one winner cluster-wide (see docs/safety.md).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from k2_migrations.core.sql import qualified
from k2_migrations.errors import LockHeld

if TYPE_CHECKING:
    from collections.abc import Callable

    from clickhouse_connect.driver.client import Client

    from k2_migrations.core.journal import Identity

LOCK_TABLE = "k2_migrations_lock"
DEFAULT_EXPIRY_S = 60.0
DEFAULT_HEARTBEAT_S = 10.0


@dataclass(frozen=True)
class LockState:
    """What the lock table says about its holder."""

    owner_id: str
    host: str
    pid: int
    os_user: str
    db_user: str
    command: str
    started_at: datetime | None
    heartbeat_age_s: float

    def describe(self) -> str:
        started = self.started_at.strftime("%Y-%m-%d %H:%M:%S UTC") if self.started_at else "?"
        return (
            f"{self.os_user}@{self.host} pid {self.pid} ({self.command!r}, started {started}, "
            f"last heartbeat {self.heartbeat_age_s:.0f}s ago)"
        )


class MigrationLock:
    def __init__(
        self,
        client: Client,
        database: str,
        identity: Identity,
        *,
        embedded: bool,
        expiry_s: float = DEFAULT_EXPIRY_S,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        client_factory: Callable[[], Client] | None = None,
    ) -> None:
        self.client = client
        self.database = database
        self.identity = identity
        self.embedded = embedded
        self.expiry_s = expiry_s
        self.heartbeat_s = heartbeat_s
        self.owner_id = uuid.uuid4().hex
        self._client_factory = client_factory
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False
        self.broken_stale: LockState | None = None

    @property
    def table(self) -> str:
        return qualified(self.database, LOCK_TABLE)

    def read(self) -> LockState | None:
        """The current holder, or None when the lock is free."""
        if not self._table_exists():
            return None
        rows = self.client.query(
            f"SELECT argMin(owner_id, seq), argMin(host, seq), argMin(pid, seq), argMin(os_user, seq),"
            f" argMin(db_user, seq), argMin(command, seq), min(started_at),"
            f" dateDiff('millisecond', max(heartbeat_at), now64(3)) / 1000.0, count()"
            f" FROM {self.table}"
        ).result_rows
        owner, host, pid, os_user, db_user, command, started, age, n = rows[0]
        if not n:
            # Created but not yet written: either being acquired right now, or its creator died in
            # between. The table's own age tells which.
            age = self._table_age_s()
            return LockState("", "?", 0, "?", "?", "(acquiring)", None, age)
        return LockState(owner, host, int(pid), os_user, db_user, command, started, float(age))

    def is_stale(self, state: LockState) -> bool:
        if self.embedded:
            return True
        if state.heartbeat_age_s > self.expiry_s:
            return True
        return state.host == self.identity.host and state.pid > 0 and not _pid_alive(state.pid)

    def acquire(self, timeout_s: float = 0.0) -> None:
        """Take the lock, waiting up to ``timeout_s``; raise :class:`LockHeld` naming the holder."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._try_create():
                self._write_heartbeat()
                self._start_heartbeat()
                return
            state = self.read()
            if state is None:
                continue  # released between our CREATE and our read: try again at once
            if self.is_stale(state):
                self._break(state)
                continue
            if time.monotonic() >= deadline:
                raise LockHeld(
                    f"another migration run holds the lock on {self.database}: {state.describe()}; "
                    "wait for it (--lock-timeout SECONDS) or, if it is dead, k2-migrate unlock --force"
                )
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        state = self.read()
        if state is not None and state.owner_id == self.owner_id:
            self.client.command(f"DROP TABLE IF EXISTS {self.table}")

    def force_break(self) -> LockState | None:
        """Break the lock whoever holds it (``unlock --force``); returns the holder it broke."""
        state = self.read()
        if state is not None:
            self._break(state)
        return state

    def _try_create(self) -> bool:
        from clickhouse_connect.driver.exceptions import DatabaseError

        try:
            self.client.command(
                f"CREATE TABLE {self.table} (seq UInt64, owner_id String, host String, pid UInt32,"
                f" os_user String, db_user String, command String, started_at DateTime64(3, 'UTC'),"
                f" heartbeat_at DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY seq"
            )
        except DatabaseError as exc:
            if "TABLE_ALREADY_EXISTS" in str(exc) or "Code: 57" in str(exc):
                return False
            raise
        return True

    def _write_heartbeat(self, client: Client | None = None) -> None:
        ident = self.identity
        (client or self.client).command(
            f"INSERT INTO {self.table} SELECT toUInt64(toUnixTimestamp64Micro(now64(6))),"
            " {o:String}, {h:String}, {p:UInt32}, {u:String}, {d:String}, {c:String},"
            " now64(3), now64(3)",
            parameters={
                "o": self.owner_id,
                "h": ident.host,
                "p": ident.pid,
                "u": ident.os_user,
                "d": ident.db_user,
                "c": ident.command,
            },
        )

    def _start_heartbeat(self) -> None:
        if self.embedded or self._client_factory is None:
            return  # no other process can reach an embedded database: nothing to heartbeat for
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat_loop, name="k2-migrate-lock", daemon=True)
        self._thread.start()

    def _heartbeat_loop(self) -> None:
        assert self._client_factory is not None
        client = self._client_factory()
        try:
            while not self._stop.wait(self.heartbeat_s):
                owner = client.command(f"SELECT argMin(owner_id, seq) FROM {self.table}")
                if owner != self.owner_id:
                    self.lost = True
                    return
                self._write_heartbeat(client=client)
        except Exception:
            self.lost = True
        finally:
            client.close()

    def _break(self, state: LockState) -> None:
        from clickhouse_connect.driver.exceptions import DatabaseError

        graveyard = qualified(self.database, f"{LOCK_TABLE}_broken_{uuid.uuid4().hex[:12]}")
        try:
            self.client.command(f"RENAME TABLE {self.table} TO {graveyard}")
        except DatabaseError:
            return  # someone else broke or released it first; the caller simply tries again
        self.client.command(f"DROP TABLE IF EXISTS {graveyard}")
        self.broken_stale = state

    def _table_exists(self) -> bool:
        return bool(
            self.client.command(
                "SELECT count() FROM system.tables WHERE database = {d:String} AND name = {n:String}",
                parameters={"d": self.database, "n": LOCK_TABLE},
            )
        )

    def _table_age_s(self) -> float:
        value: Any = self.client.command(
            "SELECT dateDiff('second', metadata_modification_time, now()) FROM system.tables"
            " WHERE database = {d:String} AND name = {n:String}",
            parameters={"d": self.database, "n": LOCK_TABLE},
        )
        try:
            return float(value)
        except (TypeError, ValueError):
            return 0.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
