"""Progress on a terminal and off it, ``--json`` and ``-q``: what a real ``k2-migrate`` prints where.

A project whose second revision runs a mutation of about two seconds (2,000 rows at 1 ms each), so
that its bar is drawn, and — in the failing variant — whose ``done_when`` still fails after it, so that
the error comes while the bar holds the terminal's line. Each case is its own process on its own
embedded database; stderr goes to a pseudo-terminal (:mod:`pty`) where a terminal matters.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from k2_migrations.errors import ExitCode
from k2_migrations.output.progress import Progress
from tests.support.kill_harness import environment

TABLE = "m.trades_binance_spot"
BAR = f"    mutation on {TABLE} ["
MUTATION = "UPDATE v = 1 + sleepEachRow(0.001) WHERE v = 0"
#: The mutation leaves v = 1 everywhere: the first check passes after it, the second never does.
PASSES = "SELECT countIf(v = 0) = 0 FROM m.trades_binance_spot"
FAILS = "SELECT countIf(v = 2) = count() FROM m.trades_binance_spot"


def write_project(root: Path, done_when: str) -> Path:
    """m1 creates and fills the table; m2 runs the mutation with ``done_when``. Returns alembic.ini."""
    create = (
        f"CREATE TABLE {TABLE} (id UInt64, v UInt8) ENGINE = MergeTree ORDER BY id "
        "SETTINGS index_granularity = 64"
    )
    fill = f"INSERT INTO {TABLE} SELECT number, 0 FROM numbers(2000)"
    revisions = {
        "m1": (
            None,
            [
                "op.create_database('m')",
                f"op.create_object('m', 'trades_binance_spot', {create!r})",
                f"op.execute_sql({fill!r}, done_when='SELECT count() = 2000 FROM {TABLE}')",
            ],
        ),
        "m2": ("m1", [f"op.run_mutation('m', 'trades_binance_spot', {MUTATION!r}, done_when={done_when!r})"]),
    }
    (root / "versions").mkdir(parents=True)
    ini = root / "alembic.ini"
    ini.write_text(
        "[alembic]\nscript_location = k2_migrations:alembic_env\nversion_locations = %(here)s/versions\n"
    )
    for rev, (down, body) in revisions.items():
        (root / "versions" / f"{rev}.py").write_text(
            f'"""{rev}"""\nfrom alembic import op\n\nrevision = {rev!r}\ndown_revision = {down!r}\n'
            "branch_labels = None\ndepends_on = None\n\n\ndef upgrade() -> None:\n"
            + "".join(f"    {line}\n" for line in body)
            + "\n\ndef downgrade() -> None:\n    pass\n"
        )
    return ini


def command(ini: Path, *args: str) -> list[str]:
    url = f"chdb://{ini.parent}/engine"
    return [sys.executable, "-m", "k2_migrations", "-c", str(ini), "--url", url, *args]


def run(ini: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run k2-migrate with stdout and stderr on pipes: off a terminal."""
    return subprocess.run(
        command(ini, *args), check=False, capture_output=True, text=True, env=environment(), timeout=180
    )


def on_terminal(ini: Path, *args: str, columns: int = 0) -> tuple[int, str, str]:
    """Run k2-migrate with stderr on a pseudo-terminal ``columns`` wide (0: unsized) and stdout on a pipe.

    Returns the exit code, stdout, and what the terminal received, its ``\\r\\n`` (the terminal's
    translation of ``\\n``) read back as ``\\n``.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    with subprocess.Popen(
        command(ini, *args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=environment()
    ) as process:
        os.close(slave)
        received = bytearray()
        deadline = time.monotonic() + 180
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 1.0)
                if not ready:
                    continue
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the process and its children closed the terminal
                    break
                if not chunk:
                    break
                received += chunk
        finally:
            os.close(master)
        assert process.stdout is not None
        stdout = process.stdout.read().decode()
        returncode = process.wait(timeout=30)
    return returncode, stdout, received.decode().replace("\r\n", "\n")


def test_an_error_after_the_bar_starts_at_column_zero_on_a_terminal(tmp_path: Path) -> None:
    returncode, stdout, terminal = on_terminal(write_project(tmp_path, FAILS), "upgrade", "head")
    assert returncode == ExitCode.SQL, terminal
    assert stdout == ""
    lines = terminal.split("\n")
    errors = [i for i, line in enumerate(lines) if "k2-migrate: error:" in line]
    assert len(errors) == 1, terminal
    error = lines[errors[0]]
    assert error.startswith("k2-migrate: error: mutation on m.trades_binance_spot finished but its check")
    # The line above is the bar, redrawn in place and left at 100% when the check failed: the error
    # was written while the bar held the line, and ended it first.
    assert "\r" + BAR in lines[errors[0] - 1], terminal
    assert lines[errors[0] - 1].endswith("] 100.0%"), terminal


def test_off_a_terminal_the_bar_is_a_line_per_quarter_and_no_carriage_return(tmp_path: Path) -> None:
    ini = write_project(tmp_path, FAILS)
    done = run(ini, "upgrade", "head")
    assert done.returncode == ExitCode.SQL, done.stderr
    assert "\r" not in done.stderr
    bars = [line for line in done.stderr.splitlines() if line.startswith(BAR)]
    percents = [line.rsplit(" ", 1)[-1] for line in bars]
    assert 1 <= len(bars) <= 5 and len(set(percents)) == len(percents), done.stderr
    assert percents[-1] == "100.0%", done.stderr
    assert done.stderr.splitlines()[-1].startswith("k2-migrate: error: mutation on m.trades_binance_spot")


def test_json_stdout_is_one_document_while_the_bar_goes_to_the_terminal(tmp_path: Path) -> None:
    ini = write_project(tmp_path, PASSES)
    returncode, stdout, terminal = on_terminal(ini, "upgrade", "head", "--json", columns=60)
    assert returncode == 0, terminal
    document = json.loads(stdout)  # one document, nothing around it
    assert document["ok"] is True and document["to"] == ["m2"]
    assert "\r" not in stdout and "%" not in stdout
    # The progress went to stderr, and each drawing of the bar fits the 60 columns (the label shortened).
    drawn = [part for line in terminal.split("\n") for part in line.split("\r")[1:]]
    assert drawn, terminal
    assert all(len(part) <= 59 and part.endswith("%") for part in drawn), drawn
    assert drawn[-1].endswith("] 100.0%"), drawn


def test_quiet_upgrade_prints_nothing_on_success(tmp_path: Path) -> None:
    ini = write_project(tmp_path, PASSES)
    returncode, stdout, terminal = on_terminal(ini, "-q", "upgrade", "head")
    assert (returncode, stdout, terminal) == (0, "", "")
    current = run(ini, "current", "--json")
    assert json.loads(current.stdout)["current"] == ["m2"], current.stderr


def test_quiet_upgrade_prints_one_error_line_on_failure(tmp_path: Path) -> None:
    returncode, stdout, terminal = on_terminal(write_project(tmp_path, FAILS), "-q", "upgrade", "head")
    assert returncode == ExitCode.SQL
    assert stdout == ""
    assert terminal.count("\n") == 1 and terminal.endswith("\n"), terminal
    assert terminal.startswith("k2-migrate: error: mutation on m.trades_binance_spot finished but its check")


def test_off_a_terminal_each_steps_bar_is_logged_even_with_the_same_label() -> None:
    # Two mutations on one table in one run: the second step's bar is logged as the first's was.
    stream = io.StringIO()
    progress = Progress(stream)
    for step in (1, 2):
        progress.line(f"  [{step}] mutation on m.t")
        for done in range(5):
            progress.bar("mutation on m.t", done, 4)
    lines = stream.getvalue().splitlines()
    assert [line.rsplit(" ", 1)[-1] for line in lines if line.startswith("    mutation")] == [
        "0.0%",
        "25.0%",
        "50.0%",
        "75.0%",
        "100.0%",
    ] * 2
