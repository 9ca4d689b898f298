"""A throw-away ZooKeeper for tests of what k2-migrate keeps in Keeper: Debian's, in the foreground.

Debian's ``zookeeperd`` (3.8) installs the jars but starts no service here, and no ClickHouse Keeper
is available, so the server is run directly with a ``zoo.cfg`` and a data directory of its own in a
temporary directory, on a free port of 127.0.0.1 (never another interface). It is ready when it
answers the ``ruok`` four-letter command with ``imok`` (about 5 s here), and is stopped by its pid —
its process group, so nothing the JVM started survives — when the ``with`` block ends.

:func:`chdb_config` writes the embedded engine's configuration naming it, which is what a
``chdb:///path?config-file=...`` URL then points at.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

HOST = "127.0.0.1"
JARS = Path("/usr/share/java")
#: The classpath of Debian's own start script, less its optional extras.
CLASSPATH_JARS = (
    "zookeeper.jar",
    "zookeeper-jute.jar",
    "slf4j-log4j12.jar",
    "slf4j-api.jar",
    "log4j-1.2.jar",
)
STARTUP_S = 60.0

_LOG4J = """log4j.rootLogger=WARN, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File={log}
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d %p %c{{1}}: %m%n
"""


def unavailable_reason() -> str | None:
    """Why ZooKeeper cannot be started here, or None when it can."""
    if shutil.which("java") is None:
        return "java is not installed (apt-get install zookeeperd brings it)"
    missing = [name for name in CLASSPATH_JARS if not (JARS / name).exists()]
    if missing:
        return f"ZooKeeper is not installed ({', '.join(missing)} missing from {JARS}): apt-get install zookeeperd"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def four_letter(port: int, word: str, timeout_s: float = 2.0) -> str:
    """ZooKeeper's answer to a four-letter command ('' when it does not answer)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s) as sock:
            sock.sendall(word.encode())
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError:
        return ""
    return b"".join(chunks).decode("ascii", "replace")


class ZooKeeper:
    """One standalone ZooKeeper server, started on entering and stopped on leaving a ``with``."""

    def __init__(self) -> None:
        self.port = 0
        self.workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def log(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "zookeeper.log"

    def start(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        self.workdir = Path(tempfile.mkdtemp(prefix="k2-zookeeper-"))
        self.port = _free_port()
        (self.workdir / "data").mkdir()
        (self.workdir / "log4j.properties").write_text(_LOG4J.format(log=self.log))
        config = self.workdir / "zoo.cfg"
        config.write_text(
            f"tickTime=500\ndataDir={self.workdir / 'data'}\nclientPort={self.port}\n"
            f"clientPortAddress={HOST}\nadmin.enableServer=false\n4lw.commands.whitelist=ruok\n"
            "maxClientCnxns=0\n"
        )
        classpath = ":".join([str(self.workdir), *(str(JARS / name) for name in CLASSPATH_JARS)])
        self._process = subprocess.Popen(
            [
                "java",
                "-Xmx256m",
                "-cp",
                classpath,
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                str(config),
            ],
            stdin=subprocess.DEVNULL,
            stdout=(self.workdir / "stdout.log").open("wb"),
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,  # its own process group, stopped as one
        )
        deadline = time.monotonic() + STARTUP_S
        while four_letter(self.port, "ruok") != "imok":
            if self._process.poll() is not None or time.monotonic() > deadline:
                detail = self.log.read_text()[-2000:] if self.log.exists() else ""
                self.stop()
                raise RuntimeError(f"ZooKeeper did not answer ruok on {HOST}:{self.port}: {detail}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server's process group by its pid (TERM, then KILL) and remove its files."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def chdb_config(zookeeper: ZooKeeper, path: Path, prefix: str = "/k2test") -> Path:
    """An embedded-engine configuration at ``path`` naming ``zookeeper`` (KeeperMap under ``prefix``).

    It keeps the project's default Kafka setting (k2_migrations/backends/chdb.xml), which a URL's
    ``config-file`` replaces.
    """
    path.write_text(
        "<clickhouse>\n"
        "    <kafka><statistics_interval_ms>100</statistics_interval_ms></kafka>\n"
        f"    <zookeeper><node><host>{HOST}</host><port>{zookeeper.port}</port></node></zookeeper>\n"
        f"    <keeper_map_path_prefix>{prefix}</keeper_map_path_prefix>\n"
        "</clickhouse>\n"
    )
    return path
