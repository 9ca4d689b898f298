"""Reach an embedded engine that a test's ``k2-migrate`` processes use, from a process of its own.

The pytest process already has the shared engine open, and chDB allows one data path per process,
so a test reads its own path through :func:`query` (the state it asserts on comes from the engine
itself), and holds one open with :func:`held_by_another_program`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.kill_harness import ROOT, environment

_CLIENT = "import json, sys, clickhouse_connect\nc = clickhouse_connect.get_client(dsn=sys.argv[1])\n"

_QUERY = (
    "statements = json.loads(sys.argv[2])\n"
    "for statement in statements[:-1]:\n"
    "    c.command(statement)\n"
    "print(json.dumps([list(r) for r in c.query(statements[-1]).result_rows], default=str))\n"
)

_READS = (
    "selects = json.loads(sys.argv[2])\n"
    "print(json.dumps([[list(r) for r in c.query(q).result_rows] for q in selects], default=str))\n"
)


def run_with_client(path: Path, code: str, *args: str, timeout: float | None = None) -> Any:
    """Run ``code`` in a Python process of its own, where ``c`` is a client of the embedded engine at
    ``path`` and ``sys.argv[2:]`` are ``args``; what it printed, read as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", _CLIENT + code, f"chdb://{path}", *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment(),
        timeout=timeout,
    )
    return json.loads(done.stdout)


def query(path: Path, *statements: str) -> list[list[Any]]:
    """Run ``statements`` on the embedded engine at ``path``; the rows of the last one."""
    rows: list[list[Any]] = run_with_client(path, _QUERY, json.dumps(statements))
    return rows


def reads(path: Path, *selects: str) -> list[list[list[Any]]]:
    """The rows of each of ``selects`` on the embedded engine at ``path``, read in one process (one
    engine start for all)."""
    rows: list[list[list[Any]]] = run_with_client(path, _READS, json.dumps(selects))
    return rows


@contextmanager
def held_by_another_program(path: Path) -> Iterator[int]:
    """Keep the embedded path open in a plain clickhouse-connect process (not k2-migrate); its pid."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, clickhouse_connect; c = clickhouse_connect.get_client(dsn='chdb://{path}');"
            " c.command('SELECT 1'); print('ready', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield holder.pid
    finally:
        holder.communicate("", timeout=60)
