"""Opening a connection to a target: a ClickHouse server or the embedded engine.

Both kinds go through clickhouse-connect: one client, one SQLAlchemy dialect (``clickhousedb``) and
one Alembic impl, so the embedded engine runs the code path production runs. What differs between
them is only how the connection is opened and how its failures read; operations decide from the live
state (system tables), never from the backend's kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from clickhouse_connect.driver.client import Client
    from sqlalchemy.engine import Connection, Engine

    from k2_migrations.config import Target


@dataclass
class Backend:
    """An open connection: the clickhouse-connect client and the SQLAlchemy connection on it."""

    target: Target
    client: Client
    engine: Engine
    connection: Connection

    def new_client(self) -> Client:
        """A second client on the same target, for work on another thread (the lock's heartbeat)."""
        from k2_migrations.backends.embedded import embedded_client
        from k2_migrations.backends.server import server_client

        return embedded_client(self.target) if self.target.embedded else server_client(self.target)

    def close(self) -> None:
        self.connection.close()
        self.engine.dispose()


@dataclass
class ClientHandle:
    """A clickhouse-connect client alone, without SQLAlchemy: what the no-op fast path reads with
    (:mod:`k2_migrations.commands.fastpath`), so that it imports neither SQLAlchemy nor Alembic."""

    target: Target
    client: Client

    def close(self) -> None:
        self.client.close()


def open_client(
    target: Target, *, wait_s: float = 0.0, command: str = "", verbose: bool = False
) -> ClientHandle:
    """A client on ``target``, opened as :func:`open_backend` opens it (an embedded path another process
    has open is waited for); a server's failures are the driver's own, unworded."""
    if target.embedded:
        from k2_migrations.backends.embedded import open_embedded_client

        return open_embedded_client(target, wait_s=wait_s, command=command, verbose=verbose)
    from k2_migrations.backends.server import server_client

    return ClientHandle(target, server_client(target))


def open_backend(target: Target, *, wait_s: float = 0.0, command: str = "", verbose: bool = False) -> Backend:
    """Connect to ``target``; failures raise :class:`~k2_migrations.errors.ConnectionFailed`.

    ``wait_s``, ``command`` and ``verbose`` matter to the embedded engine only: how long to wait
    for a path another process has open, what to record as this run's command for such waiters,
    and whether to show the engine's own log lines (see :mod:`k2_migrations.backends.embedded`).
    """
    if target.embedded:
        from k2_migrations.backends.embedded import open_embedded

        return open_embedded(target, wait_s=wait_s, command=command, verbose=verbose)
    from k2_migrations.backends.server import open_server

    return open_server(target)


def connect(
    target: Target, connect_args: dict[str, Any], classify: Callable[[Target, BaseException], Exception]
) -> Backend:
    """Open the clickhousedb SQLAlchemy engine and its one connection; ``classify`` words a failure."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import StaticPool

    engine = create_engine("clickhousedb://", connect_args=connect_args, poolclass=StaticPool)
    try:
        connection = engine.connect()
    except Exception as exc:  # the driver wraps every failure differently; classify by message
        engine.dispose()
        raise classify(target, exc) from None
    return Backend(target=target, client=client_of(connection), engine=engine, connection=connection)


def client_of(connection: Connection) -> Client:
    """The clickhouse-connect client behind a SQLAlchemy connection of the clickhousedb dialect."""
    client: Client = connection.connection.dbapi_connection.client  # type: ignore[union-attr]
    return client
