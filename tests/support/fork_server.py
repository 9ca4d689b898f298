"""A process that imports k2-migrations once and forks a fresh ``k2-migrate`` process per request.

Killing a run at every step means starting a hundred runs, and most of a run's start is importing
SQLAlchemy, Alembic and k2-migrations. This server imports them once (:mod:`tests.support.preload`),
then for each request (a JSON line on stdin: ``{"args": [...], "env": {...}, "out": path, "err":
path}``) forks a child that is a complete ``k2-migrate`` process of its own — own pid, own embedded
engine, killed by SIGKILL like any other — and answers ``{"pid": N}`` at once (``err`` is a FIFO the
caller reads; ``out`` a file) and ``{"exit": code}`` when the child ends. It neither opens an engine
nor imports chDB (a child whose parent had loaded chDB hangs opening its engine): each child loads
chDB itself.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from k2_migrations.cli import main
from tests.support.preload import preload


def serve() -> None:
    preload()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"exit": code}), flush=True)


def _child(request: dict[str, Any]) -> None:
    code = 1
    try:
        os.environ.clear()
        os.environ.update(request["env"])
        out = os.open(str(request["out"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(str(request["err"]), os.O_WRONLY)  # a FIFO the harness reads line by line
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        try:
            main(list(request["args"]), prog_name="k2-migrate")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    serve()
