"""Run ``k2-migrate`` as a real process and kill it at a chosen point of its progress.

The process prints a line when each step starts (``  [N] operation``) and while a mutation runs
(``mutation on db.table [...]``). The harness reads its stderr as it comes and sends the signal the
moment the chosen line appears, so the process dies inside that step — between the journal's
``started`` and ``done``, in the middle of a RENAME sequence or of a partition move, or while a
mutation is running. Each process is stopped by its own pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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


def environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    env.update(extra)
    return env


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
    command = [
        sys.executable,
        "-m",
        "k2_migrations",
        "-c",
        str(ROOT / "alembic.ini"),
        "--url",
        f"chdb://{path}",
        *args,
    ]
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
