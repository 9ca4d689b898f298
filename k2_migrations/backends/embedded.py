"""The embedded engine: chDB, in-process ClickHouse, reached through clickhouse-connect's ``chdb:`` DSN.

chDB allows one data path per process and locks the directory against other processes: it holds an
exclusive ``flock`` on ``<path>/status`` while a process has the path open. A second run while the
first is still going is the common case, so it is handled here rather than reported raw:

- chDB's Python exception only says ``Error initializing EmbeddedServer``; the reason (``Cannot lock
  file``) goes straight to file descriptor 2 from C++. The open runs with fd 2 captured, so that
  engine noise reaches the user only with ``-v`` or when the failure is one we cannot translate.
- With a wait (``--lock-timeout``), a busy path is polled with a cheap ``flock`` probe of
  ``status`` — not by opening chDB again — and opened once it is free.
- The process that opens a path writes :data:`HOLDER_FILE` in it (who, what command, since when),
  so that a waiter that gives up, and ``k2-migrate lock``, can name the run holding the path. A
  path held by another k2-migrate run is that run holding the lock (exit 4); a path held by some
  other program is a connection problem (exit 3).
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from k2_migrations.backends import Backend, ClientHandle, connect
from k2_migrations.config import Target, mask_secrets
from k2_migrations.errors import ConnectionFailed, K2MigrateError, LockHeld
from k2_migrations.processes import pid_alive

if TYPE_CHECKING:
    from collections.abc import Callable

    from clickhouse_connect.driver.client import Client

#: Written inside the data directory, which chDB does not scan (checked with chdb-core 26.1: a
#: foreign file at the top of the path survives open, DDL, close and reopen without a message).
#: Inside rather than beside it, so it moves with the directory and needs no writable parent.
HOLDER_FILE = "k2-migrate-holder.json"

#: How often a waiter probes a busy path: a probe is an open and two flock calls, microseconds.
POLL_S = 0.1

#: Paths this process has open through :func:`open_embedded`, with how many backends each: the
#: holder file is written by the first and removed by the last (tests open one path several times).
_OPEN: dict[Path, int] = {}


@dataclass(frozen=True)
class PathHolder:
    """The process holding an embedded path, from its holder file or, failing that, chDB's own."""

    pid: int
    host: str
    os_user: str
    command: str
    since: str | None  # ISO 8601 UTC; unknown for a process that is not k2-migrate
    k2_migrate: bool  # False: some other program has the path open (its pid comes from chDB)

    def describe(self) -> str:
        if not self.k2_migrate:
            return f"pid {self.pid} on {self.host} ({self.command!r}), not a k2-migrate run"
        return f"{self.os_user}@{self.host} pid {self.pid} ({self.command!r}, since {self.since})"

    def document(self) -> dict[str, Any]:
        return asdict(self)


class EmbeddedPathHeld(LockHeld):
    """Another k2-migrate run has the embedded path open: it holds the lock in all but name."""

    def __init__(self, message: str, holder: PathHolder) -> None:
        super().__init__(message)
        self.holder = holder


class EmbeddedPathBusy(ConnectionFailed):
    """Another process has the embedded path open; ``holder`` names it when chDB's status file does."""

    def __init__(self, message: str, holder: PathHolder | None) -> None:
        super().__init__(message)
        self.holder = holder


class EmbeddedBackend(Backend):
    """A backend on an embedded path; closing it removes the holder file this process wrote."""

    def close(self) -> None:
        # Removed before the engine lets go of the path, so a file on disk never outlives its
        # holder's flock and we never remove the file of the next run that opened the path.
        _release(self.target)
        super().close()


def open_embedded(
    target: Target, *, wait_s: float = 0.0, command: str = "", verbose: bool = False
) -> Backend:
    """Open ``target``'s path, waiting up to ``wait_s`` while another process has it open."""
    backend = _open_path(
        target, wait_s, command, verbose, lambda: connect(target, _connect_args(target), _carry)
    )
    return EmbeddedBackend(backend.target, backend.client, backend.engine, backend.connection)


class EmbeddedClient(ClientHandle):
    """A client alone on an embedded path. Another client or backend this process opens on the same
    path shares its engine; closing the last of them stops the engine."""

    def close(self) -> None:
        _release(self.target)  # before the engine lets go of the path, as EmbeddedBackend.close
        self.client.close()


def open_embedded_client(
    target: Target, *, wait_s: float = 0.0, command: str = "", verbose: bool = False
) -> EmbeddedClient:
    """Open ``target``'s path as :func:`open_embedded` does, with a client and no SQLAlchemy."""

    def opener() -> Client:
        try:
            return embedded_client(target)
        except Exception as exc:
            raise _EngineFailure(exc) from None

    return EmbeddedClient(target, _open_path(target, wait_s, command, verbose, opener))


def _carry(target: Target, exc: BaseException) -> Exception:
    return _EngineFailure(exc)


_Opened = TypeVar("_Opened")


def _open_path(
    target: Target, wait_s: float, command: str, verbose: bool, opener: Callable[[], _Opened]
) -> _Opened:
    """``opener()`` on ``target``'s path, waiting up to ``wait_s`` while another process has it open."""
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
    started = time.monotonic()
    deadline = started + wait_s
    retried_late = False
    while True:
        try:
            opened = _open_once(target, verbose, opener)
        except _Busy:
            late = time.monotonic() >= deadline
            # Free now: the holder let go (or a faster waiter took it: the next attempt finds out).
            # Past the deadline that earns one more attempt, not a loop: a path chDB keeps
            # refusing while its flock looks free must still end in an error.
            if _free_by(target, deadline) and not (late and retried_late):
                retried_late = retried_late or late
                continue
            raise _busy_error(target, time.monotonic() - started) from None
        _claim(target, command)
        return opened


#: The engine configuration used when the URL gives no ``config-file`` (the file says why).
DEFAULT_CONFIG = Path(__file__).with_name("chdb.xml")


def _connect_args(target: Target) -> dict[str, Any]:
    options = {"config-file": str(DEFAULT_CONFIG), **dict(target.engine_options)}
    return {"dsn": f"chdb://{target.path}", "chdb_options": options}


def embedded_client(target: Target) -> Client:
    import clickhouse_connect

    client: Client = clickhouse_connect.get_client(**_connect_args(target))
    return client


class _Busy(Exception):
    """An open failed because another process holds the path."""


class _EngineFailure(Exception):
    """The driver's exception, carried out of :func:`connect` to be worded once fd 2 is back."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _open_once(target: Target, verbose: bool, opener: Callable[[], _Opened]) -> _Opened:
    """One attempt at opening the engine (``opener``, which raises :class:`_EngineFailure`), with fd
    2 captured for its duration.

    chDB writes its log lines to fd 2 from C++, below ``sys.stderr``, so only redirecting the
    descriptor itself keeps them out (no library does this for a running process; pytest's capture
    is for tests). The engine thread's output in those milliseconds goes to the same file; nothing
    else of ours runs then. A temporary file and not a pipe: a full pipe would block the engine.
    """
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            opened = opener()
        except _EngineFailure as exc:
            failure: _EngineFailure | None = exc
        else:
            failure = None
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        noise = mask_secrets(sink.read().decode("utf-8", "replace"))
    if failure is None:
        _show(noise, verbose)
        return opened
    error = _translate(target, failure.cause, noise)
    _show(noise, verbose or error is None)
    if error is None:
        first = str(failure.cause).strip().splitlines()
        reason = first[0][:200] if first else type(failure.cause).__name__
        raise ConnectionFailed(
            f"cannot open the embedded database {target.path}: {mask_secrets(reason)} "
            "(chDB's own reason, if any, is printed above)"
        )
    raise error


def _show(noise: str, wanted: bool) -> None:
    if wanted and noise:
        sys.stderr.write(noise if noise.endswith("\n") else noise + "\n")
        sys.stderr.flush()


def _translate(target: Target, exc: BaseException, noise: str) -> Exception | None:
    """The failure in words a user can act on; ``_Busy`` for a held path; None if unknown."""
    text = str(exc)
    if "Error initializing EmbeddedServer" in text and (
        "Cannot lock file" in noise or _held_by_another_process(target)
    ):
        return _Busy()
    if "already initialized with path" in text:
        return ConnectionFailed(
            f"this process already has another embedded database open; one chDB path per process ({target.path})"
        )
    return None


def _free_by(target: Target, deadline: float) -> bool:
    """Probe the path until it is free (True) or ``deadline`` passes while it is held (False)."""
    while _held_by_another_process(target):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(POLL_S, remaining))
    return True


def _busy_error(target: Target, waited_s: float) -> K2MigrateError:
    holder = path_holder(target)
    waited = f" (waited {waited_s:.0f}s)" if waited_s >= 1 else ""
    if holder is not None and holder.k2_migrate:
        return EmbeddedPathHeld(
            f"another k2-migrate run has the embedded database {target.path} open{waited}: "
            f"{holder.describe()}; wait for it (--lock-timeout SECONDS) or point --url elsewhere",
            holder,
        )
    by = f" ({holder.describe()})" if holder is not None else ""
    return EmbeddedPathBusy(
        f"the embedded database {target.path} is in use by another process{by}{waited}; "
        "stop it or wait for it (--lock-timeout SECONDS), or point --url elsewhere",
        holder,
    )


def path_holder(target: Target) -> PathHolder | None:
    """Who has ``target``'s path open, if another process has; from its holder file when that is live."""
    if not _held_by_another_process(target):
        return None
    assert target.path is not None
    chdb_pid = _status_pid(target.path)
    recorded = _read_holder(target.path, chdb_pid)
    if recorded is not None:
        return recorded
    if chdb_pid is None:
        return None
    return PathHolder(chdb_pid, socket.gethostname(), "?", _command_line(chdb_pid), None, k2_migrate=False)


def _held_by_another_process(target: Target) -> bool:
    """chDB holds an exclusive flock on ``<path>/status`` while a process has the directory open.

    A shared, non-blocking flock tells without waiting and without creating the file; it is held
    for microseconds, so an engine starting at that very moment is unlikely to meet it (and one
    that does sees a free path at its own probe and tries again).
    """
    assert target.path is not None
    try:
        fd = os.open(target.path / "status", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def _status_pid(path: Path) -> int | None:
    """The pid chDB wrote into ``status`` (``PID: 1234`` on its first line)."""
    try:
        first = (path / "status").read_text().splitlines()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    key, _, value = first.partition(":")
    return int(value) if key == "PID" and value.strip().isdigit() else None


def _read_holder(path: Path, chdb_pid: int | None) -> PathHolder | None:
    """The holder file, unless it is stale: its pid dead on this host, or not the pid chDB names."""
    try:
        data = json.loads((path / HOLDER_FILE).read_text())
        holder = PathHolder(
            pid=int(data["pid"]),
            host=str(data["host"]),
            os_user=str(data["os_user"]),
            command=str(data["command"]),
            since=str(data["since"]),
            k2_migrate=True,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if holder.host != socket.gethostname():
        return holder  # another host's pids cannot be checked from here; its flock is live
    if not pid_alive(holder.pid) or chdb_pid not in {None, holder.pid}:
        return None
    return holder


def _command_line(pid: int) -> str:
    """A foreign holder's command line where the OS shows it (Linux), masked; else ``?``."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return mask_secrets(" ".join(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part)) or "?"


def _claim(target: Target, command: str) -> None:
    """Record this process as the path's holder: written to a temporary file, then renamed over."""
    assert target.path is not None
    _OPEN[target.path] = _OPEN.get(target.path, 0) + 1
    if _OPEN[target.path] > 1:
        return
    try:
        os_user = getpass.getuser()
    except (KeyError, OSError):
        os_user = str(os.getuid())
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "os_user": os_user,
        "command": mask_secrets(command or " ".join(sys.argv)),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    temporary = target.path / f".{HOLDER_FILE}.{os.getpid()}"
    try:
        temporary.write_text(json.dumps(record))
        os.replace(temporary, target.path / HOLDER_FILE)
    except OSError:
        # The file only lets others name this run; the run itself is safe without it (chDB's
        # flock excludes them either way), so a full disk here must not stop it.
        temporary.unlink(missing_ok=True)


def _release(target: Target) -> None:
    assert target.path is not None
    left = _OPEN.pop(target.path, 1) - 1
    if left:
        _OPEN[target.path] = left
        return
    (target.path / HOLDER_FILE).unlink(missing_ok=True)
