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
    from k2_migrations.state.journal import Attempt, Identity, Journal
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

    @property
    def client(self) -> Any:
        return self.backend.client

    def ensure_metadata(self) -> None:
        from clickhouse_connect.driver.exceptions import DatabaseError

        try:
            self.client.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
            self.journal.ensure()
            self.snapshots.ensure()
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

        return ensure_version_state(self.client, self.database, self.project.script, attempt, self.identity)


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
