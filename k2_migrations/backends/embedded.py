"""The embedded engine: chDB, in-process ClickHouse, reached through clickhouse-connect's ``chdb:`` DSN.

chDB allows one data path per process and locks the directory against other processes. When the
lock is taken, chDB's Python exception only says ``Error initializing EmbeddedServer``; the reason
goes to stderr. That case is the common one (a second run while the first is still going), so it
is translated into a sentence a user can act on.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2_migrations.backends import Backend, connect
from k2_migrations.config import Target
from k2_migrations.errors import ConnectionFailed

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


def open_embedded(target: Target) -> Backend:
    assert target.path is not None
    path = target.path
    try:
        import chdb  # noqa: F401  (only to give a clear error when the extra is missing)
    except ImportError:
        raise ConnectionFailed(
            "the embedded engine (chDB) is not installed; install it with "
            "pip install 'k2-migrations[embedded]' or give a server with --url clickhouse://..."
        ) from None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConnectionFailed(
            f"cannot create the embedded data directory {path}: {exc.strerror}; choose a writable path"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConnectionFailed(f"the embedded data directory {path} is not writable; choose a writable path")
    return connect(target, _connect_args(target), _classify)


#: The engine configuration used when the URL gives no ``config-file`` (the file says why).
DEFAULT_CONFIG = Path(__file__).with_name("chdb.xml")


def _connect_args(target: Target) -> dict[str, Any]:
    options = {"config-file": str(DEFAULT_CONFIG), **dict(target.engine_options)}
    return {"dsn": f"chdb://{target.path}", "chdb_options": options}


def embedded_client(target: Target) -> Client:
    import clickhouse_connect

    client: Client = clickhouse_connect.get_client(**_connect_args(target))
    return client


def _classify(target: Target, exc: BaseException) -> ConnectionFailed:
    text = str(exc)
    if "Error initializing EmbeddedServer" in text and _held_by_another_process(target):
        return ConnectionFailed(
            f"the embedded database {target.path} is in use by another process; "
            "wait for that run to finish (k2-migrate lock shows it) or point --url elsewhere"
        )
    if "already initialized with path" in text:
        return ConnectionFailed(
            f"this process already has another embedded database open; one chDB path per process ({target.path})"
        )
    first = text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
    return ConnectionFailed(
        f"cannot open the embedded database {target.path}: {first} (chDB's own reason, if any, is printed above)"
    )


def _held_by_another_process(target: Target) -> bool:
    """chDB locks ``<path>/status`` with flock while a process has the directory open."""
    assert target.path is not None
    try:
        with open(target.path / "status", "a") as status:
            fcntl.flock(status, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(status, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False
