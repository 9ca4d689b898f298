"""Run ``k2-migrate`` as a real process and kill it at a chosen point of its progress.

The process prints a line when each step starts (``  [N] operation``) and while a mutation runs
(``mutation on db.table [...]``). The harness reads its stderr as it comes and sends the signal the
moment the chosen line appears, so the process dies inside that step — between the journal's
``started`` and ``done``, in the middle of a RENAME sequence or of a partition move, or while a
mutation is running. Each process is stopped by its own pid.

:class:`Forker` starts the runs from a :mod:`tests.support.fork_server` (imports paid once);
:func:`k2_migrate` starts each as a new interpreter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    killed: bool
    returncode: int
    stderr: str
    stdout: str


#: (revision, down_revision — one, a merge's two, or None —, upgrade body, downgrade body)
Revision = tuple[str, str | tuple[str, str] | None, str, str]


def write_project(root: Path, revisions: list[Revision]) -> Path:
    """A k2-migrate project at ``root`` (``alembic.ini`` and a revision file each), for processes of
    their own; ``root``."""
    (root / "versions").mkdir(parents=True)
    (root / "alembic.ini").write_text(
        "[alembic]\nscript_location = k2_migrations:alembic_env\nversion_locations = %(here)s/versions\n"
    )
    write_revisions(root / "versions", revisions)
    return root


def write_revisions(versions: Path, revisions: list[Revision]) -> None:
    """A revision file each in the directory ``versions``."""
    for rev, down, up, back in revisions:
        (versions / f"{rev}.py").write_text(
            f'"""{rev}"""\nfrom alembic import op\n\nrevision = {rev!r}\ndown_revision = {down!r}\n'
            "branch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade() -> None:\n    {up}\n\n\ndef downgrade() -> None:\n    {back}\n"
        )


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any K2_* setting, plus ``extra``: a clean k2-migrate run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    env.update(extra or {})
    return env


def run_project(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``k2-migrate *args`` as a new interpreter, on the project :func:`write_project` wrote at ``root``
    and the embedded engine at ``root/engine``, with the K2_* settings ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "k2_migrations", "-c", str(root / "alembic.ini"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=environment({"K2_MIGRATE_URL": f"chdb://{root / 'engine'}", **env}),
    )


def k2_migrate(
    path: Path,
    *args: str,
    env: dict[str, str],
    kill_at: tuple[str, int] | None = None,
    kill_on: str | None = None,
    sig: int = signal.SIGKILL,
    timeout_s: float = 300,
) -> Outcome:
    """Run one command and send ``sig`` when step ``kill_at = (revision, N)`` starts, or when a
    stderr line contains ``kill_on``."""
    command = [sys.executable, "-m", "k2_migrations", *_arguments(path, args)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(env), bufsize=1
    )
    assert process.stderr is not None and process.stdout is not None
    lines: list[str] = []
    killed = False
    revision = ""
    deadline = time.monotonic() + timeout_s
    try:
        for line in process.stderr:
            lines.append(line)
            words = line.split()
            if len(words) > 2 and words[1] in {"applying", "resuming"}:
                revision = words[2]
            starting = (
                kill_at is not None and revision == kill_at[0] and line.startswith(f"  [{kill_at[1]}] ")
            )
            if not killed and (
                (starting and not line.rstrip().endswith("already done")) or (kill_on and kill_on in line)
            ):
                process.send_signal(sig)
                killed = True
            if time.monotonic() > deadline:
                break
        stdout = process.stdout.read()
        returncode = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return Outcome(killed, returncode, "".join(lines), stdout)


def inspect(path: Path, *databases: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.inspect_db", str(path), *databases],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=environment({}),
    )
    state: dict[str, object] = json.loads(done.stdout)
    return state


class Forker:
    """Start ``k2-migrate`` runs as children of one fork server; watch and kill them by pid."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.server_log = work / "fork_server.err"
        self.server = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fork_server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.server_log.open("w"),
            text=True,
            cwd=ROOT,
            env=environment({}),
            bufsize=1,
        )
        self.runs = 0

    def close(self) -> None:
        assert self.server.stdin is not None
        self.server.stdin.close()
        self.server.wait(timeout=30)

    def __enter__(self) -> Forker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server.poll() is None:
            self.close()

    def run(
        self,
        path: Path,
        *args: str,
        env: dict[str, str],
        kill_at: tuple[str, int] | None = None,
        sig: int = signal.SIGKILL,
        timeout_s: float = 300,
        delay_s: float = 0.0,
    ) -> Outcome:
        """``k2-migrate *args`` on the embedded engine at ``path``, forked; ``sig`` is sent when step
        ``kill_at`` starts, or ``delay_s`` seconds later (inside a statement of that step)."""
        assert self.server.stdin is not None and self.server.stdout is not None
        self.runs += 1
        out, err = self.work / f"run{self.runs}.out", self.work / f"run{self.runs}.err"
        os.mkfifo(err)  # a pipe, so each line arrives the moment it is written
        request = {
            "args": _arguments(path, args),
            "env": environment(env),
            "out": str(out),
            "err": str(err),
        }
        self.server.stdin.write(json.dumps(request) + "\n")
        answer = self.server.stdout.readline()
        if not answer:
            raise RuntimeError(f"the fork server died: {self.server_log.read_text()[-3000:]}")
        pid = int(json.loads(answer)["pid"])
        killed = False
        watcher = _Watcher(kill_at)
        lines: list[str] = []
        timer = threading.Timer(timeout_s, _kill_quietly, (pid, signal.SIGKILL))
        timer.start()
        try:
            with open(err) as stream:
                for line in stream:
                    lines.append(line)
                    if not killed and watcher.matches(line):
                        if delay_s:
                            threading.Timer(delay_s, _kill_quietly, (pid, sig)).start()
                        killed = bool(delay_s) or _kill_quietly(pid, sig)
        finally:
            timer.cancel()
        code = int(json.loads(self.server.stdout.readline())["exit"])
        err.unlink()
        return Outcome(killed, code, "".join(lines), out.read_text())

    def run_project(self, root: Path, *args: str, **env: str) -> Outcome:
        """``k2-migrate *args`` as :func:`run_project` runs it — the project :func:`write_project` wrote at
        ``root``, the embedded engine at ``root/engine``, the K2_* settings ``env`` — forked."""
        return self.run(root / "engine", "-c", str(root / "alembic.ini"), *args, env=env)


class _Watcher:
    """Recognises the line at which to signal: step N of a revision starting (not skipped)."""

    def __init__(self, kill_at: tuple[str, int] | None) -> None:
        self.kill_at = kill_at
        self.revision = ""

    def matches(self, line: str) -> bool:
        words = line.split()
        if len(words) > 2 and words[1] in {"applying", "resuming"}:
            self.revision = words[2]
        if self.kill_at is None or self.revision != self.kill_at[0]:
            return False
        return line.startswith(f"  [{self.kill_at[1]}] ") and not line.rstrip().endswith("already done")


def _arguments(path: Path, args: tuple[str, ...]) -> list[str]:
    """The project's alembic.ini and the embedded database at ``path``, then the command."""
    return ["-c", str(ROOT / "alembic.ini"), "--url", f"chdb://{path}", *args]


def _kill_quietly(pid: int, sig: int) -> bool:
    """Signal ``pid``; False if it had already ended."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True
