"""Many short ``k2-migrate`` runs, each a process of its own, without paying the imports each time.

A walk runs a few hundred commands on one embedded database, and most of a short command's time is
importing SQLAlchemy, Alembic and k2-migrations. This server imports them once (:mod:`tests.support.preload`) and, per request
(a JSON line on stdin), forks a child that is a complete ``k2-migrate`` process — own pid, own
engine start, free to SIGKILL itself at a failpoint — and answers ``{"exit": code}`` (``-9`` for a
process killed by SIGKILL) when the child has ended. It does what :mod:`tests.support.fork_server`
does for the kill harness, with what a walk needs instead of a stderr FIFO to watch: the child runs
in the project directory given by the request, and may, after the command, read the live schema
with :mod:`tests.support.live_schema` in the same process, so ``current --json`` and the schema read
cost one engine start, not two. The server itself never imports chDB (a child whose parent had
loaded it hangs opening its engine): each child loads it.

:class:`WalkServer` starts the server and sends it requests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.kill_harness import ROOT, environment
from tests.support.preload import preload


@dataclass
class Run:
    """One finished ``k2-migrate`` process; ``schema`` when the request asked for it."""

    returncode: int
    stdout: str
    stderr: str
    schema: dict[str, Any] | None


class WalkServer:
    """The server process, and one request at a time to it."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.log = work / "walk_server.err"
        self._log_file = self.log.open("w")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "tests.support.walk_server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
            cwd=ROOT,
            env=environment({}),
            bufsize=1,
        )
        self.runs = 0

    def __enter__(self) -> WalkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server.stdin is not None
        self.server.stdin.close()
        try:
            self.server.wait(timeout=30)
        finally:
            if self.server.poll() is None:
                self.server.kill()
                self.server.wait()
            self._log_file.close()

    def run(
        self,
        cwd: Path,
        args: list[str],
        env: dict[str, str],
        schema_of: tuple[Path, str] | None = None,
    ) -> Run:
        """Run ``k2-migrate ARGS`` in ``cwd`` with ``env`` (over a clean environment); with
        ``schema_of = (data path, migrations database)`` also read that engine's live schema."""
        assert self.server.stdin is not None and self.server.stdout is not None
        self.runs += 1
        out, err, schema = (self.work / f"walk{self.runs}.{kind}" for kind in ("out", "err", "schema"))
        request = {
            "args": args,
            "env": environment(env),
            "cwd": str(cwd),
            "out": str(out),
            "err": str(err),
            "schema": None
            if schema_of is None
            else {"path": str(schema_of[0]), "database": schema_of[1], "out": str(schema)},
        }
        self.server.stdin.write(json.dumps(request) + "\n")
        answer = self.server.stdout.readline()
        if not answer:
            raise RuntimeError(f"the walk server died: {self.log.read_text()[-3000:]}")
        code = int(json.loads(answer)["exit"])
        stdout, stderr = out.read_text(), err.read_text()
        if schema_of is not None and not schema.exists():
            raise RuntimeError(f"the schema read failed (exit {code}): {stderr[-3000:]}")
        read = json.loads(schema.read_text()) if schema_of is not None else None
        for path in (out, err, schema):
            path.unlink(missing_ok=True)
        return Run(code, stdout, stderr, read)


def serve() -> None:
    preload()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"exit": code}), flush=True)


def _child(request: dict[str, Any]) -> None:
    code = 1
    try:
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        for fd, name in ((1, "out"), (2, "err")):
            os.dup2(os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        code = _command(request["args"])
        if request["schema"] is not None:
            _write_schema(request["schema"])
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _command(args: list[str]) -> int:
    from k2_migrations.cli import main

    try:
        main(args, prog_name="k2-migrate")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def _write_schema(target: dict[str, str]) -> None:
    """The live schema, read on a client of this test's own (k2-migrate's engine is closed by now)."""
    import clickhouse_connect

    from tests.support.live_schema import read

    client = clickhouse_connect.get_client(dsn=f"chdb://{target['path']}")
    schema = read(client, target["database"])
    client.close()
    Path(target["out"]).write_text(json.dumps(schema))


if __name__ == "__main__":
    serve()
