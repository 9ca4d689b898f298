"""An embedded path another process has open: wait for it, name the holder, keep the engine quiet.

Every process here is a real one on a chDB path of its own (never the session's engine): the
promise is about two processes and chDB's directory lock between them. The machine may be busy
(a k2-migrate process can take seconds to start), so the holding run holds until the test lets it
go rather than for a fixed time.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT
from tests.support.engine_query import held_by_another_program
from tests.support.kill_harness import environment

#: A revision whose run, once its first step has run (the engine is open), says so in a file and
#: holds until the test removes the file ``release`` (or a minute passes).
HOLDING_REVISION = '''"""a revision whose run holds the engine until the test releases it"""

import time
from pathlib import Path

from alembic import op

revision = "b1"
down_revision = None
branch_labels = None
depends_on = None

RELEASE = Path({release!r})


def upgrade() -> None:
    op.execute_sql("SELECT 1")
    RELEASE.write_text("holding")
    deadline = time.monotonic() + 60
    while RELEASE.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    op.execute_sql("SELECT 2")


def downgrade() -> None:
    pass
'''


def k2_migrate(project: Path, path: Path, *args: str) -> list[str]:
    ini = str(project / "alembic.ini")
    return [sys.executable, "-m", "k2_migrations", "-c", ini, "--url", f"chdb://{path}", *args]


def start(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment()
    )


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, check=False, capture_output=True, text=True, env=environment(), timeout=120
    )


def holding_project(tmp_path: Path) -> tuple[Path, Path]:
    """A project of one holding revision, and the file that releases it."""
    release = tmp_path / "release"
    (tmp_path / "versions").mkdir()
    (tmp_path / "versions" / "rb1_hold.py").write_text(HOLDING_REVISION.format(release=str(release)))
    (tmp_path / "alembic.ini").write_text((ROOT / "alembic.ini").read_text())
    return tmp_path, release


def wait_for(condition_met: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition_met():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_run_holding_the_path_is_named_waited_for_and_then_followed(tmp_path: Path) -> None:
    project, release = holding_project(tmp_path)
    path = tmp_path / "db"
    holder = start(k2_migrate(project, path, "upgrade", "head"))
    waiter: subprocess.Popen[str] | None = None
    try:
        wait_for(release.exists, "the holding run to open the engine")

        refused = run(k2_migrate(project, path, "--lock-timeout", "0", "upgrade", "head"))
        assert refused.returncode == 4, refused.stderr  # another run holds the lock, in all but name
        (line,) = refused.stderr.strip().splitlines()  # no engine noise ("Code: 76 ...") before it
        assert line.startswith("k2-migrate: error: another k2-migrate run has the embedded database")
        assert f"pid {holder.pid} " in line and "upgrade head" in line

        shown = run(k2_migrate(project, path, "lock", "--json"))
        assert shown.returncode == 0 and "Code: 76" not in shown.stderr, shown.stderr
        document = json.loads(shown.stdout)
        assert document["held"] is True and document["kind"] == "embedded-path"
        assert document["holder"]["pid"] == holder.pid and document["holder"]["k2_migrate"] is True
        assert "upgrade head" in document["holder"]["command"]
        assert document["holder"]["since"].endswith("+00:00")

        # -v shows the engine's own line for the attempt that found the path held: proof that the
        # waiter met the holder before we let the holder go.
        waiter = start(k2_migrate(project, path, "-v", "--lock-timeout", "30", "upgrade", "head"))
        assert waiter.stderr is not None
        for text in waiter.stderr:
            if "Cannot lock file" in text:
                break
        time.sleep(1.0)  # held a while longer, with the waiter waiting
        # Still waiting at the release: the run takes at least the rest of the hold, not 0 s.
        assert waiter.poll() is None and holder.poll() is None
        release.unlink()
        rest, _ = waiter.communicate(timeout=60)
        assert holder.wait(timeout=60) == 0
    finally:
        for process in (holder, waiter):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    assert waiter.returncode == 0, rest
    assert "k2-migrate: error" not in rest

    current = json.loads(run(k2_migrate(project, path, "current", "--json")).stdout)
    assert current["current"] == ["b1"] and current["up_to_date"] is True and current["in_progress"] is None
    assert not (path / "k2-migrate-holder.json").exists()  # every run removed its own on close


def test_a_path_held_by_another_program_is_a_connection_error_naming_its_pid(tmp_path: Path) -> None:
    project, _ = holding_project(tmp_path)
    path = tmp_path / "db"
    path.mkdir()
    # A holder file left by a k2-migrate run that died: its pid is gone, so it must not be believed.
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True
    )
    dead_pid = int(gone.stdout)
    stale = {
        "pid": dead_pid,
        "host": socket.gethostname(),
        "os_user": "x",
        "command": "k2-migrate",
        "since": "?",
    }
    (path / "k2-migrate-holder.json").write_text(json.dumps(stale))
    with held_by_another_program(path) as other_pid:
        refused = run(k2_migrate(project, path, "upgrade", "head"))
        verbose = run(k2_migrate(project, path, "-v", "current"))
        shown = run(k2_migrate(project, path, "lock", "--json"))
    assert refused.returncode == 3
    (line,) = refused.stderr.strip().splitlines()
    assert f"the embedded database {path} is in use by another process (pid {other_pid} " in line
    assert "not a k2-migrate run" in line and str(dead_pid) not in line
    # With -v the engine's own account is shown, then our line.
    assert verbose.returncode == 3 and "Cannot lock file" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1].startswith("k2-migrate: error:")
    holder = json.loads(shown.stdout)["holder"]
    assert shown.returncode == 0 and holder["pid"] == other_pid and holder["k2_migrate"] is False
