"""An open connection and the migrations database's state on it (version record, journal, snapshots, lock)."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from k2_migrations.commands.project import Project, _alembic_message
from k2_migrations.config import (
    mask_secrets,
)
from k2_migrations.errors import K2MigrateError

if TYPE_CHECKING:
    from k2_migrations.backends import Backend
    from k2_migrations.decisions.attempts import Attempt
    from k2_migrations.introspection.topology import ClusterMode
    from k2_migrations.state.journal import Identity, Journal
    from k2_migrations.state.lock import MigrationLock
    from k2_migrations.state.snapshots import Snapshots


class Session:
    """An open connection and the migrations database's tables on it."""

    def __init__(self, project: Project, backend: Backend) -> None:
        from k2_migrations.state.journal import Journal
        from k2_migrations.state.snapshots import Snapshots

        self.project = project
        self.backend = backend
        self.database = project.migrations_database
        self.identity = _identity(backend, project.settings.command)
        self.journal: Journal = Journal(backend.client, self.database, self.identity)
        self.snapshots: Snapshots = Snapshots(backend.client, self.database)
        self._cluster: ClusterMode | None = None
        self._cluster_read = False

    @property
    def cluster(self) -> ClusterMode | None:
        """Cluster mode as the engine describes it, read once: None on one server; ClickHouse Cloud
        is detected without ``--cluster`` too (its DDL and state tables differ from a server's)."""
        if self._cluster_read:
            return self._cluster
        from k2_migrations.introspection.topology import cloud_mode, is_cloud, read_cluster_mode

        name = self.project.cluster
        if name is not None:
            self._cluster = read_cluster_mode(self.client, name)
            self._cluster.ddl_timeout_s = self.project.settings.ddl_timeout
        elif not self.backend.target.embedded and is_cloud(self.client):
            self._cluster = cloud_mode()
        self._cluster_read = True
        return self._cluster

    @property
    def client(self) -> Any:
        return self.backend.client

    def ensure_metadata(self) -> None:
        from clickhouse_connect.driver.exceptions import DatabaseError

        from k2_migrations.state.journal import JOURNAL_TABLE
        from k2_migrations.state.rows import run_state_ddl
        from k2_migrations.state.snapshots import SNAPSHOT_TABLE

        cluster = self.cluster
        try:
            if cluster is not None and cluster.state_ready(
                self.client, self.database, [JOURNAL_TABLE, SNAPSHOT_TABLE]
            ):
                return
            run_state_ddl(self.client, f"CREATE DATABASE IF NOT EXISTS {self.database}", cluster)
            self.journal.ensure(cluster)
            self.snapshots.ensure(cluster)
        except DatabaseError as exc:
            raise _privilege_error(exc, f"create the migrations database {self.database}") from None

    def lock(self) -> MigrationLock:
        from k2_migrations.state.lock import MigrationLock

        return MigrationLock(
            self.client,
            self.database,
            self.identity,
            embedded=self.backend.target.embedded,
            expiry_s=self.project.settings.lock_expiry,
            client_factory=self.backend.new_client,
        )

    def heads(self) -> tuple[str, ...]:
        """The applied heads as the engine reports them."""
        from k2_migrations.state.versions import read_heads

        return read_heads(self.client, self.database)

    def ensure_version_state(self, attempt: Attempt | None) -> tuple[str, ...]:
        """Create the version state (adopting a previous release's table) under the lock; the heads."""
        from k2_migrations.state.versions import ensure_version_state

        return ensure_version_state(
            self.client, self.database, self.project.script, attempt, self.identity, self.cluster
        )

    def check_cluster(self, lock: MigrationLock | None = None) -> None:
        """In cluster mode, before a run: no replica on this host may lag; then, under ``lock``, the
        lock must hold across hosts (a table lock lives on one host and would let another host's run
        start) and no host may still have ON CLUSTER tasks queued."""
        cluster = self.cluster
        if cluster is None or cluster.cloud:
            return
        from k2_migrations.errors import UsageError
        from k2_migrations.introspection.topology import check_ddl_queue, check_replicas

        if lock is None:
            check_replicas(self.client, cluster)
            return
        if lock.kind != "keeper":
            raise UsageError(
                f"cluster mode needs the migration lock in Keeper (a {lock.kind} lock holds on one host only): "
                "give the servers keeper_map_path_prefix (KeeperMap), see docs/clusters.md"
            )
        check_ddl_queue(self.client, cluster)


@contextmanager
def open_session(project: Project, *, wait: bool = True) -> Iterator[Session]:
    """Open the target; with ``wait``, an embedded path another run has open is waited for as
    long as the lock is (``--lock-timeout``): both mean another run is using the database."""
    from k2_migrations.backends import open_backend

    settings = project.settings
    backend = open_backend(
        project.target(),
        wait_s=settings.lock_timeout if wait else 0.0,
        command=settings.command,
        verbose=settings.verbose,
    )
    try:
        yield Session(project, backend)
    finally:
        backend.close()


def _identity(backend: Backend, command: str) -> Identity:
    from k2_migrations.state.journal import Identity

    try:
        os_user = getpass.getuser()
    except (KeyError, OSError):
        os_user = str(os.getuid())
    db_user = backend.target.username if not backend.target.embedded else "embedded"
    # Masked here, once: the lock's rows (a table or Keeper) hold the command line as well as the journal.
    return Identity(
        os_user=os_user,
        db_user=db_user,
        host=socket.gethostname(),
        pid=os.getpid(),
        command=mask_secrets(command),
    )


def _privilege_error(exc: BaseException, doing: str) -> K2MigrateError:
    from k2_migrations.errors import ConnectionFailed, SqlFailed

    text = mask_secrets(str(exc))
    if "ACCESS_DENIED" in text or "Code: 497" in text or "Not enough privileges" in text:
        needed = text.split("you need ", 1)[1].split(")")[0] + ")" if "you need " in text else "a grant"
        return ConnectionFailed(f"the migration user may not {doing}: it needs {needed}; see docs/safety.md")
    return SqlFailed(f"cannot {doing}: {_alembic_message(exc)}")
