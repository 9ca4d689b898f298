"""A closed stdout/stderr never changes what a run does; Ctrl-C, Ctrl-C twice and SIGTERM stop it safely.

Every case runs real ``k2-migrate`` processes on an embedded database of its own, and reads the
state back from yet another process (chDB allows one data path per process, and this one already
has the session's engine open): the version table, the journal and ``system.tables``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.kill_harness import ROOT, environment

#: r2's first step: ``rows`` rows of ``seconds`` each (sleepEachRow can be cancelled between rows).
SLOW = (
    "SELECT sum(sleepEachRow({seconds})) FROM numbers({rows}) "
    "SETTINGS max_block_size = 1, function_sleep_max_microseconds_per_block = 0"
)


def create_table(name: str) -> str:
    return f"op.execute_sql({f'CREATE TABLE IF NOT EXISTS app.{name} (x UInt32) ENGINE = MergeTree ORDER BY x'!r})"


def write_project(root: Path, seconds: float = 0.0, rows: int = 0) -> Path:
    """r1 creates app.t1; r2 runs the slow statement, then creates app.t2; r3 creates app.t3.

    Returns the project's alembic.ini.
    """
    slow = f"op.execute_sql({SLOW.format(seconds=seconds, rows=rows)!r})"
    bodies = {
        "r1": (None, ['op.create_database("app")', create_table("t1")]),
        "r2": ("r1", [slow, create_table("t2")]),
        "r3": ("r2", [create_table("t3")]),
    }
    versions = root / "versions"
    versions.mkdir(parents=True)
    for revision, (down, body) in bodies.items():
        lines = [
            f'"""revision {revision}"""',
            "from alembic import op",
            f"revision = {revision!r}",
            f"down_revision = {down!r}",
            "branch_labels = None",
            "depends_on = None",
            "def upgrade() -> None:",
            *(f"    {line}" for line in body),
            "def downgrade() -> None:",
            "    pass",
        ]
        (versions / f"{revision}.py").write_text("\n".join(lines) + "\n")
    ini = root / "alembic.ini"
    ini.write_text((ROOT / "alembic.ini").read_text())
    return ini


def command(ini: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "k2_migrations",
        "-c",
        str(ini),
        "--url",
        f"chdb://{ini.parent / 'db'}",
        *args,
    ]


def run(ini: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("capture_output", True)
    return subprocess.run(
        command(ini, *args), check=False, text=True, env=environment(), timeout=120, **kwargs
    )


def closed_pipe() -> int:
    """The write end of a pipe whose reader is already gone: every write to it fails with EPIPE."""
    reader, writer = os.pipe()
    os.close(reader)
    return writer


def engine(ini: Path, *queries: str) -> list[list[list[Any]]]:
    """The rows of each query, read by a process of its own on the project's embedded database."""
    script = (
        "import json, sys, clickhouse_connect\n"
        "client = clickhouse_connect.get_client(dsn=sys.argv[1])\n"
        "print(json.dumps([client.query(q).result_rows for q in sys.argv[2:]], default=str))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, f"chdb://{ini.parent / 'db'}", *queries],
        capture_output=True,
        text=True,
        check=True,
        env=environment(),
        timeout=60,
    )
    rows: list[list[list[Any]]] = json.loads(done.stdout)
    return rows


JOURNAL = "k2_migrations.k2_migrations_journal"
TABLES = "SELECT name FROM system.tables WHERE database = 'app' ORDER BY name"
VERSION = "SELECT version_num FROM k2_migrations.alembic_version ORDER BY version_num"
#: Each revision attempt's last status, oldest first.
ATTEMPTS = (
    f"SELECT revision, argMax(status, (at, seq)) FROM {JOURNAL} WHERE kind = 'revision' AND attempt_id != ''"
    " GROUP BY attempt_id, revision ORDER BY min(at)"
)


def step_statuses(revision: str) -> str:
    """Each step of ``revision`` with its journal statuses in order."""
    return (
        f"SELECT step, groupArray(status) FROM (SELECT step, status FROM {JOURNAL} WHERE kind = 'step'"
        f" AND revision = '{revision}' ORDER BY at, seq) GROUP BY step ORDER BY step"
    )


def assert_at_head(ini: Path, *, ask_current: bool = True) -> None:
    """r3 applied and nothing in progress, as ``current --json`` (its own process) and the engine say."""
    if ask_current:
        current = run(ini, "current", "--json")
        assert current.returncode == 0, current.stderr
        document = json.loads(current.stdout)
        assert document["current"] == ["r3"] and document["in_progress"] is None
    tables, version, attempts = engine(ini, TABLES, VERSION, ATTEMPTS)
    assert tables == [["t1"], ["t2"], ["t3"]]
    assert version == [["r3"]]
    assert attempts[-1] == ["r3", "done"]
    assert all(status == "done" for _, status in attempts), attempts


# -- a closed stdout/stderr --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def piped_upgrade(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """``k2-migrate upgrade head 2>&1 | head -c 0``: every progress line and the summary hit EPIPE."""
    ini = write_project(tmp_path_factory.mktemp("piped"))
    writer = closed_pipe()
    try:
        upgrade = run(ini, "upgrade", "head", stdout=writer, stderr=writer, capture_output=False)
    finally:
        os.close(writer)
    return ini, upgrade.returncode


def test_a_migration_into_a_closed_pipe_runs_to_its_end(piped_upgrade: tuple[Path, int]) -> None:
    ini, code = piped_upgrade
    assert code == 0
    assert_at_head(ini)


@pytest.mark.parametrize(
    "args", [("log",), ("current", "--json"), ("lock",), ("upgrade", "head", "--sql")], ids=" ".join
)
def test_a_read_only_command_into_a_closed_pipe_exits_quietly(
    piped_upgrade: tuple[Path, int], args: tuple[str, ...]
) -> None:
    writer = closed_pipe()
    try:
        result = run(piped_upgrade[0], *args, stdout=writer, stderr=subprocess.PIPE, capture_output=False)
    finally:
        os.close(writer)
    assert result.returncode == 0
    # No traceback, no error line, no "Exception ignored" at exit.
    assert result.stderr == ""


def test_a_failing_migration_into_a_closed_pipe_keeps_its_exit_code(tmp_path: Path) -> None:
    ini = write_project(tmp_path)
    (tmp_path / "versions" / "r3.py").write_text(
        (tmp_path / "versions" / "r3.py").read_text().replace("app.t3", "nowhere.t3")
    )
    writer = closed_pipe()
    try:
        upgrade = run(ini, "upgrade", "head", "--json", stdout=writer, stderr=writer, capture_output=False)
    finally:
        os.close(writer)
    assert upgrade.returncode == 6  # the SQL error of r3, not a BrokenPipeError
    assert engine(ini, VERSION)[0] == [["r2"]]


# -- Ctrl-C and SIGTERM ------------------------------------------------------------------------------


class Run:
    """An ``upgrade head`` whose progress lines are read as they come, to signal it mid-step."""

    def __init__(self, ini: Path) -> None:
        self.process = subprocess.Popen(
            command(ini, "upgrade", "head"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
            bufsize=1,
        )
        self.watchdog = threading.Timer(120, self.process.kill)
        self.watchdog.start()
        self.lines: list[str] = []

    def wait_for(self, text: str) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if text in line:
                return
        raise AssertionError(f"{text!r} never came: {''.join(self.lines)}")

    def finish(self) -> tuple[int, str, str]:
        stdout, stderr = self.process.communicate()
        self.watchdog.cancel()
        return self.process.returncode, stdout, "".join(self.lines) + stderr


def test_ctrl_c_twice_cuts_the_step_sigterm_lets_it_finish_and_the_next_run_converges(tmp_path: Path) -> None:
    ini = write_project(tmp_path, seconds=0.25, rows=20)  # r2's first step: 5 s in one statement
    # Ctrl-C twice in r2's slow step: it is cut short, and says so.
    cut = Run(ini)
    cut.wait_for("  [1] execute SELECT sum(sleepEachRow")
    step_started = time.monotonic()
    time.sleep(0.3)
    cut.process.send_signal(signal.SIGINT)
    cut.wait_for("Ctrl-C: stopping after the current step (press again to stop at once)")
    cut.process.send_signal(signal.SIGINT)
    code, _, stderr = cut.finish()
    took = time.monotonic() - step_started
    assert code == 130
    assert took < 4, (
        f"the run ended {took:.1f}s into a step of 5 s"
    )  # cut short, with room for a loaded machine
    errors = [line for line in stderr.splitlines() if line.startswith("k2-migrate: error:")]
    assert errors == [
        "k2-migrate: error: stopped at once by a second Ctrl-C in step 1 of r2: the step was cut short; "
        "run the same command again: it re-checks that step against the live state and resumes"
    ]
    assert "Traceback" not in stderr
    # The journal has r1 done, r2 in progress with its first step started and never done.
    attempts, steps = engine(ini, ATTEMPTS, step_statuses("r2"))
    assert attempts == [["r1", "done"], ["r2", "failed"]]
    assert steps == [[1, ["started"]]]

    # The next run re-checks that step; a deploy's SIGTERM during it lets it finish, then stops.
    stopped = Run(ini)
    stopped.wait_for("(re-checking the interrupted step)")
    step_started = time.monotonic()
    stopped.process.send_signal(signal.SIGTERM)
    stopped.wait_for("SIGTERM: stopping after the current step")
    code, _, stderr = stopped.finish()
    assert code == 130
    assert time.monotonic() - step_started > 4.5  # the 5 s step was let finish
    assert (
        "k2-migrate: error: stopped by SIGTERM before step 2 of r2; run the same command again to resume "
        "from this step" in stderr
    )

    # And the run after that skips the step the SIGTERM let finish, and reaches head.
    resumed = run(ini, "upgrade", "head")
    assert resumed.returncode == 0, resumed.stderr
    assert any(
        line.startswith("  [1] execute SELECT sum(sleepEachRow") and line.endswith(": already done")
        for line in resumed.stderr.splitlines()
    ), resumed.stderr
    assert "r2 up (resumed)" in resumed.stdout
    assert_at_head(ini)


#: Run in a process of its own: Ctrl-C is sent to the whole process, and a test runner's worker
#: (pytest-xdist) must not receive it.
_SERVER_WAIT = """
import json, os, signal, socket, threading, time
from k2_migrations.engine.executor import StepExecutor
from k2_migrations.errors import Interrupted
from k2_migrations.output.progress import Progress

before = repr(signal.getsignal(signal.SIGINT))  # SIG_IGN in a job started in the background by a shell
runtime = StepExecutor(client=None, journal=None, snapshots=None, lock=None, progress=Progress(quiet=True))
waiting, silent = socket.socketpair()
waiting.settimeout(10)

def ctrl_c_twice():
    for _ in range(2):
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

presses = threading.Thread(target=ctrl_c_twice)
started = time.monotonic()
presses.start()
message = ""
try:
    with runtime.interruptible():
        waiting.recv(1)
except Interrupted as exc:
    message = exc.message
presses.join()
print(json.dumps({
    "message": message,
    "elapsed": time.monotonic() - started,
    "before": before,
    "restored": repr(signal.getsignal(signal.SIGINT)),
}))
"""


def test_a_second_ctrl_c_ends_a_wait_on_a_server_at_once() -> None:
    """A server's statement is a socket wait in the main thread: the cut needs no KILL QUERY there.

    No server here: the main thread of a process of its own waits on a socket that never answers.
    """
    done = subprocess.run(
        [sys.executable, "-c", _SERVER_WAIT],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=ROOT,
        env=environment({}),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["message"].startswith("stopped at once by a second Ctrl-C")
    assert result["elapsed"] < 2
    assert result["restored"] == result["before"]  # the handler the process had, put back
