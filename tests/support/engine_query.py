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

_CODE = (
    "import json, sys, clickhouse_connect\n"
    "client = clickhouse_connect.get_client(dsn=sys.argv[1])\n"
    "statements = json.loads(sys.argv[2])\n"
    "for statement in statements[:-1]:\n"
    "    client.command(statement)\n"
    "print(json.dumps([list(r) for r in client.query(statements[-1]).result_rows], default=str))\n"
)


def query(path: Path, *statements: str) -> list[list[Any]]:
    """Run ``statements`` on the embedded engine at ``path``; the rows of the last one."""
    done = subprocess.run(
        [sys.executable, "-c", _CODE, f"chdb://{path}", json.dumps(statements)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment({}),
    )
    rows: list[list[Any]] = json.loads(done.stdout)
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
