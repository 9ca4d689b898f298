"""The run lock: at most one upgrade, downgrade or stamp against a database at a time.

Where the target has Keeper (ZooKeeper or ClickHouse Keeper, with KeeperMap enabled by
``keeper_map_path_prefix``), the lock lives there, so it excludes runs on every host of the
cluster; elsewhere it is a table. :attr:`MigrationLock.kind` says which (``keeper`` or ``table``):
the lock tries to create its KeeperMap table and falls back to the table only when the engine
says Keeper or KeeperMap is not configured — a configured Keeper that does not answer is an error,
never a reason to take a lock the other hosts cannot see.

**The lock in Keeper.** ``<migrations db>.k2_migrations_keeper_lock`` is a KeeperMap table at
``/k2_migrations/<migrations db>/lock`` (under the prefix), so every host that creates it sees the
same keys. The holder owns key ``lock``, whose value says who (owner id, host, pid, users, command,
start) and carries its heartbeat. Every write uses ``keeper_map_strict_mode = 1``: an INSERT of an
existing key then fails (of racing inserts exactly one wins — that is the acquire), and an UPDATE or
DELETE applies only if the key did not change between the engine's read and its write (a
compare-and-set on the node's version). The heartbeat is such an UPDATE of the holder's own key
(checked on chDB 26.1: ``ALTER TABLE … UPDATE`` and ``DELETE FROM`` on KeeperMap write Keeper
directly, no MergeTree mutation and nothing in ``system.mutations``). A stale holder X is broken by
whoever wins the strict INSERT of key ``break/X``: only that breaker deletes ``lock`` (where its
owner is still X), so two breakers can never delete a lock the other has just taken; then it
competes for ``lock`` like any newcomer. A ``break/`` key left by a breaker that died is itself
stale after ``expiry_s``. Nodes in KeeperMap are persistent, so expiry is what frees a crashed
holder's lock; its heartbeat is judged by the reading host's clock, so hosts' clocks must agree to
well within ``lock_expiry``. Two embedded paths sharing one Keeper are two hosts of one cluster:
their locks are real, not stale by construction.

**The lock as a table.** ClickHouse has no row locks and no transactions, but DDL on one table name
is atomic: of several ``CREATE TABLE x`` (without IF NOT EXISTS) racing for the same name, exactly
one succeeds and the others fail with ``TABLE_ALREADY_EXISTS``. The lock is that table: whoever
creates ``<migrations db>.k2_migrations_lock`` holds the lock; its rows say who and carry heartbeats.
Releasing drops the table. A stale lock is broken by renaming the table away — a single-table RENAME
is atomic, so of two breakers only one succeeds — and taking it anew. Any table lock found on the
embedded engine is stale: chDB's own directory lock already proves no other process can use it.

Either way, a holder that dies cannot hold the lock forever: a background thread refreshes the
heartbeat every ``heartbeat_s`` seconds, and a lock whose heartbeat is older than ``expiry_s`` is
stale, as is one whose holder is a dead process on this host. The heartbeat thread also checks that
the lock still carries its owner id; if not (broken by ``unlock --force``, or by expiry during a long
network partition), the run stops at its next step boundary instead of going on unprotected.

On a cluster without KeeperMap, a table created without ON CLUSTER lives on one replica only and
would not exclude a run that lands on another. Point the migrations database at a ``Replicated``
database there: its DDL is serialised through Keeper, so the same CREATE race has one winner
cluster-wide (see docs/safety.md).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from k2_migrations.config import DEFAULT_LOCK_EXPIRY_S
from k2_migrations.decisions.lock import holder_dead
from k2_migrations.errors import ConnectionFailed, LockHeld, UsageError
from k2_migrations.processes import pid_alive
from k2_migrations.sqltext.quoting import literal, qualified

if TYPE_CHECKING:
    from collections.abc import Callable

    from clickhouse_connect.driver.client import Client

    from k2_migrations.state.journal import Identity

LOCK_TABLE = "k2_migrations_lock"
KEEPER_TABLE = "k2_migrations_keeper_lock"
#: The keys of the KeeperMap table: the holder's, and one per stale holder being broken.
LOCK_KEY = "lock"
BREAK_KEY = "break/"
DEFAULT_HEARTBEAT_S = 10.0
#: Every KeeperMap write is conditional: INSERT only creates, UPDATE and DELETE compare versions.
STRICT = {"keeper_map_strict_mode": 1}

LockKind = Literal["keeper", "table"]

#: What a failed KeeperMap CREATE says when the target has no Keeper or no KeeperMap prefix:
#: chDB 26.1 and servers answer Code 36 (BAD_ARGUMENTS) naming the missing prefix, or Code 139
#: (NO_ELEMENTS_IN_CONFIG) when a prefix is set but no ``<zookeeper>`` section is.
_NO_KEEPER = ("'keeper_map_path_prefix' config is not defined", "There is no Zookeeper configuration")


#: The first session any engine opens on a Keeper registers ``/clickhouse/sessions/<name>/<server
#: uuid>`` by a plain create; chDB's server uuid is all zeros, so two embedded engines opening their
#: first sessions on a new Keeper at the same moment race for one node, and the loser's statement
#: fails with ``Node exists`` on that path (seen here; ClickHouse's ZooKeeper::initSession). The
#: node then exists, and the same statement again succeeds.
_SESSION_RACE = "path /clickhouse/sessions/"


@dataclass(frozen=True)
class LockState:
    """What the lock says about its holder."""

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
        expiry_s: float = DEFAULT_LOCK_EXPIRY_S,
        heartbeat_s: float | None = None,
        client_factory: Callable[[], Client] | None = None,
    ) -> None:
        self.client = client
        self.database = database
        self.identity = identity
        self.embedded = embedded
        self.expiry_s = expiry_s
        # Several heartbeats per expiry, so one slow write never makes a live holder look dead.
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else min(DEFAULT_HEARTBEAT_S, expiry_s / 4)
        self.owner_id = uuid.uuid4().hex
        self._client_factory = client_factory
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False
        self.broken_stale: LockState | None = None

    @property
    def table(self) -> str:
        return qualified(self.database, LOCK_TABLE)

    @property
    def keeper_table(self) -> str:
        return qualified(self.database, KEEPER_TABLE)

    @cached_property
    def kind(self) -> LockKind:
        """Where the lock lives: in Keeper when the target can reach one through KeeperMap."""
        from clickhouse_connect.driver.exceptions import DatabaseError

        create = (
            f"CREATE TABLE IF NOT EXISTS {self.keeper_table} (name String, owner_id String, host String,"
            f" pid UInt32, os_user String, db_user String, command String, started_at DateTime64(3, 'UTC'),"
            f" heartbeat_at DateTime64(3, 'UTC'))"
            f" ENGINE = KeeperMap({literal(f'/k2_migrations/{self.database}/lock')}) PRIMARY KEY name"
        )
        try:
            self._create(create)
        except DatabaseError as exc:
            text = str(exc)
            if any(marker in text for marker in _NO_KEEPER):
                return "table"
            if "KeeperMap cannot be used with" in text:
                raise UsageError(
                    f"the lock lives in Keeper, and KeeperMap needs an Atomic or Replicated database: "
                    f"{self.database} is not one; set migrations_database (or --migrations-database) to one"
                ) from None
            if "KEEPER_EXCEPTION" in text or "Code: 999" in text:
                raise ConnectionFailed(
                    f"the migration lock lives in Keeper, which did not answer: {_first_line(text)}; "
                    "check Keeper and the target's <zookeeper> configuration"
                ) from None
            raise
        return "keeper"

    def _create(self, create: str) -> None:
        """Run the KeeperMap CREATE, past the two failures that a retry cures."""
        from clickhouse_connect.driver.exceptions import DatabaseError

        for attempt in range(1, 4):
            try:
                self.client.command(create)
                return
            except DatabaseError as exc:
                text = str(exc)
                if attempt == 3 or not ("UNKNOWN_DATABASE" in text or _SESSION_RACE in text):
                    raise
                if "UNKNOWN_DATABASE" in text:
                    # `k2-migrate lock` may come before any run created the database; another
                    # host's lock in Keeper is visible only through a table here.
                    self.client.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")

    def read(self) -> LockState | None:
        """The current holder, or None when the lock is free."""
        if self.kind == "keeper":
            return self._keeper_read(LOCK_KEY)
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
        """Whether the holder is dead (:func:`k2_migrations.decisions.lock.holder_dead`)."""
        return holder_dead(
            heartbeat_age_s=state.heartbeat_age_s,
            expiry_s=self.expiry_s,
            holder_host=state.host,
            holder_pid=state.pid,
            this_host=self.identity.host,
            pid_alive=pid_alive,
            embedded_table=self.embedded and self.kind == "table",
        )

    def acquire(self, timeout_s: float = 0.0) -> None:
        """Take the lock, waiting up to ``timeout_s``; raise :class:`LockHeld` naming the holder."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._take():
                self._start_heartbeat()
                return
            state = self.read()
            if state is None:
                continue  # released between our attempt and our read: try again at once
            if self.is_stale(state):
                self._break(state)
                continue
            if time.monotonic() >= deadline:
                where = " (in Keeper)" if self.kind == "keeper" else ""
                raise LockHeld(
                    f"another migration run holds the lock on {self.database}{where}: {state.describe()}; "
                    "wait for it (--lock-timeout SECONDS) or, if it is dead, k2-migrate unlock --force"
                )
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.kind == "keeper":
            self._keeper_delete(LOCK_KEY, self.owner_id)
            return
        state = self.read()
        if state is not None and state.owner_id == self.owner_id:
            self.client.command(f"DROP TABLE IF EXISTS {self.table}")

    def force_break(self) -> LockState | None:
        """Break the lock whoever holds it (``unlock --force``); returns the holder it broke."""
        state = self.read()
        if state is not None:
            self._break(state)
        return state

    def _take(self) -> bool:
        if self.kind == "keeper":
            return self._keeper_insert(LOCK_KEY)
        if not self._try_create():
            return False
        self._write_heartbeat()
        return True

    def _break(self, state: LockState) -> None:
        if self.kind == "keeper":
            self._keeper_break(state)
        else:
            self._table_break(state)

    def _start_heartbeat(self) -> None:
        if (self.embedded and self.kind == "table") or self._client_factory is None:
            return  # no other process can reach an embedded database's table: nothing to heartbeat for
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat_loop, name="k2-migrate-lock", daemon=True)
        self._thread.start()

    def _heartbeat_loop(self) -> None:
        assert self._client_factory is not None
        client = self._client_factory()
        try:
            while not self._stop.wait(self.heartbeat_s):
                if self.kind == "keeper":
                    held = self._keeper_refresh(client)
                else:
                    held = client.command(f"SELECT argMin(owner_id, seq) FROM {self.table}") == self.owner_id
                    if held:
                        self._write_heartbeat(client=client)
                if not held:
                    self.lost = True
                    return
        except Exception:
            self.lost = True
        finally:
            client.close()

    # -- in Keeper ------------------------------------------------------------------------------

    def _keeper_insert(self, key: str) -> bool:
        """Create ``key`` with this run's identity; False when it exists (someone else won)."""
        from clickhouse_connect.driver.exceptions import DatabaseError

        ident = self.identity
        try:
            self.client.command(
                f"INSERT INTO {self.keeper_table} SELECT {{k:String}}, {{o:String}}, {{h:String}},"
                " {p:UInt32}, {u:String}, {d:String}, {c:String}, now64(3), now64(3)",
                parameters={
                    "k": key,
                    "o": self.owner_id,
                    "h": ident.host,
                    "p": ident.pid,
                    "u": ident.os_user,
                    "d": ident.db_user,
                    "c": ident.command,
                },
                settings=STRICT,
            )
        except DatabaseError as exc:
            if "Node exists" in str(exc) and _SESSION_RACE not in str(exc):
                return False
            raise ConnectionFailed(
                f"cannot write the migration lock in Keeper: {_first_line(str(exc))}; check Keeper"
            ) from None
        return True

    def _keeper_read(self, key: str) -> LockState | None:
        rows = self.client.query(
            f"SELECT owner_id, host, pid, os_user, db_user, command, started_at,"
            f" dateDiff('millisecond', heartbeat_at, now64(3)) / 1000.0"
            f" FROM {self.keeper_table} WHERE name = {{k:String}}",
            parameters={"k": key},
        ).result_rows
        if not rows:
            return None
        owner, host, pid, os_user, db_user, command, started, age = rows[0]
        return LockState(owner, host, int(pid), os_user, db_user, command, started, float(age))

    def _keeper_refresh(self, client: Client) -> bool:
        """Heartbeat: move this run's key's heartbeat on, if the key is still ours; whether it is."""
        # On KeeperMap an UPDATE is one conditional Keeper write, not a mutation of parts (nothing in
        # system.mutations); an INSERT would re-create a key a breaker had just removed.
        client.command(
            f"ALTER TABLE {self.keeper_table} UPDATE heartbeat_at = now64(3)"
            " WHERE name = {k:String} AND owner_id = {o:String}",
            parameters={"k": LOCK_KEY, "o": self.owner_id},
            settings=STRICT,
        )
        owner = client.command(
            f"SELECT owner_id FROM {self.keeper_table} WHERE name = {{k:String}}", parameters={"k": LOCK_KEY}
        )
        return bool(owner == self.owner_id)

    def _keeper_delete(self, key: str, owner_id: str) -> bool:
        """Delete ``key`` if ``owner_id`` still owns it and nobody changed it meanwhile."""
        from clickhouse_connect.driver.exceptions import DatabaseError

        try:
            self.client.command(
                f"DELETE FROM {self.keeper_table} WHERE name = {{k:String}} AND owner_id = {{o:String}}",
                parameters={"k": key, "o": owner_id},
                settings=STRICT,
            )
        except DatabaseError as exc:
            if "KEEPER_EXCEPTION" not in str(exc):
                raise
            # Changed under us (a heartbeat, a new holder), or Keeper is away: the caller looks
            # again, and a lock that could not be released expires.
            return False
        return True

    def _keeper_break(self, state: LockState) -> None:
        """Break ``state``'s lock if this run wins the right to: the INSERT of ``break/<owner>``."""
        claim = BREAK_KEY + state.owner_id
        if not self._keeper_insert(claim):
            other = self._keeper_read(claim)
            if other is not None and other.heartbeat_age_s > self.expiry_s:
                self._keeper_delete(claim, other.owner_id)  # its breaker died half-way
            return  # another breaker is at it; the caller reads the lock again
        try:
            if self._keeper_delete(LOCK_KEY, state.owner_id):
                self.broken_stale = state
        finally:
            self._keeper_delete(claim, self.owner_id)

    # -- as a table -----------------------------------------------------------------------------

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

    def _table_break(self, state: LockState) -> None:
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


def _first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0][:300] if stripped else "no detail"
