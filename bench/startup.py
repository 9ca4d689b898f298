"""How fast ``k2-migrate`` starts: ``--help``, and ``current`` on a fresh empty embedded directory.

Each command is a whole process (wall time from the parent), against ``python -c pass`` as the floor,
and against a plain script that imports chDB and opens a fresh empty directory (the floor for any
command that opens the embedded engine). "Cold" here means a fresh process and, for ``current``, a data
directory that does not exist yet; the OS page cache is not dropped (that would disturb the other
processes on the machine). Commands are interleaved round by round.

Bar: ``k2-migrate --help`` under 0.3 s. When it is missed, ``python -X importtime`` shows which imports
the time goes to.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from bench import common
from bench.common import Bar, Options, Report, Table

RUNS = 10
QUICK_RUNS = 5
HELP_BAR_S = 0.3

OPEN_FRESH = (
    "import sys, clickhouse_connect; "
    "clickhouse_connect.get_client(dsn='chdb://' + sys.argv[1]).command('SELECT 1')"
)


def _commands(directory: Path) -> dict[str, list[str]]:
    """The commands timed, by name (the fresh directory is used by the two that open the engine)."""
    k2 = common.k2_migrate_command()
    url = common.chdb_url(directory)
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "k2-migrate --help": [*k2, "--help"],
        "k2-migrate --version": [*k2, "--version"],
        "plain: import chDB, open a fresh dir, SELECT 1": [sys.executable, "-c", OPEN_FRESH, str(directory)],
        "k2-migrate current (fresh empty embedded dir)": [
            *k2,
            "-c",
            str(common.ALEMBIC_INI),
            "--url",
            url,
            "current",
        ],
    }


def _importtime() -> Table:
    """The slowest imports of ``k2-migrate --help`` (cumulative), from ``python -X importtime``."""
    code = "import sys; sys.argv = ['k2-migrate', '--help']; from k2_migrations.cli import main; main()"
    done = common.run_process(
        [sys.executable, "-X", "importtime", "-c", code], env=common.child_env(), check=False
    )
    rows: list[tuple[int, int, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cumulative_us, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        rows.append((int(cumulative_us), int(self_us), name))
    table = Table(
        "Imports of `k2-migrate --help` by cumulative time (python -X importtime, one run)",
        ["module", "cumulative ms", "self ms"],
    )
    for cumulative, own, name in sorted(rows, reverse=True)[:15]:
        table.add(name, f"{cumulative / 1000:.1f}", f"{own / 1000:.1f}")
    return table


def measure(options: Options, work: Path) -> Report:
    """Interleave the commands for ``options.runs`` rounds."""
    report = Report("bench.startup: k2-migrate start-up against python -c pass")
    times: dict[str, list[float]] = {}
    loads: list[float] = []
    for round_ in range(options.runs):
        common.progress(f"startup: round {round_ + 1}/{options.runs}")
        directory = work / f"startup-{round_}"
        common.remove(directory)
        loads.append(common.load_average())
        for name, command in _commands(directory).items():
            if name.startswith("k2-migrate current"):
                common.remove(directory)  # the plain open before it created it: start empty again
            done = common.run_process(command, env=common.child_env())
            times.setdefault(name, []).append(done.seconds)
        common.remove(directory)
    floor = common.median(times["python -c pass"])
    table = Table(
        f"Process wall time (seconds, median of {options.runs}; "
        f"load avg (1 min) median {common.median(loads):.2f})",
        ["command", "median", "min-max", "above python -c pass"],
    )
    for name, values in times.items():
        table.add(
            name,
            common.fmt_s(common.median(values)),
            common.spread(values),
            common.fmt_s(common.median(values) - floor),
        )
    report.tables.append(table)
    help_s = common.median(times["k2-migrate --help"])
    report.bars.append(Bar("k2-migrate --help", f"{help_s:.3f} s", f"< {HELP_BAR_S} s", help_s < HELP_BAR_S))
    if help_s >= HELP_BAR_S:
        report.tables.append(_importtime())
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.startup [--quick] [--runs N] [--work DIR] [--keep]``."""
    return common.run_main(
        "bench.startup",
        argv,
        measure,
        prog="python -m bench.startup",
        description=(__doc__ or "").split("\n\n")[0],
        runs=RUNS,
        quick_runs=QUICK_RUNS,
    )


if __name__ == "__main__":
    sys.exit(main())
