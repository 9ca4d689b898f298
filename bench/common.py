"""What every benchmark imports as ``common``: the options, the work directory and ``main``, and the
shared pieces, each kept in a module by purpose:

- :mod:`bench.processes` — child processes: ``k2-migrate`` and :mod:`bench.worker` actions, timed;
- :mod:`bench.templates` — prepared databases (templates), copies derived from them, clones, the broker;
- :mod:`bench.journal` — a run's ``--json`` document and journal, and the plain script's plan from them;
- :mod:`bench.tables` — medians, tables, bars and the report;
- :mod:`bench.machine` — the machine description and progress lines.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.journal import (
    PAUSE_BEGINS,
    PAUSE_ENDS,
    interval,
    interval_freshness,
    journal_of_last_run,
    journal_statements,
    pause_steps,
    plain_plan,
    revision_steps,
)
from bench.machine import load_average, print_machine, progress
from bench.processes import (
    ALEMBIC_INI,
    ROOT,
    UNREACHABLE_BROKERS,
    BenchError,
    Completed,
    PrepareTimeout,
    chdb_url,
    child_env,
    k2_env,
    k2_migrate,
    k2_migrate_command,
    run_process,
    worker,
)
from bench.tables import Bar, Report, Table, fmt_ms, fmt_s, median, one_line, spread
from bench.templates import (
    TOPICS,
    Template,
    broker_template,
    candles_template,
    clone,
    discard,
    kafka_broker,
    prepare_template,
    remove,
    scale_label,
)

__all__ = [
    "ALEMBIC_INI",
    "PAUSE_BEGINS",
    "PAUSE_ENDS",
    "ROOT",
    "TOPICS",
    "UNREACHABLE_BROKERS",
    "Bar",
    "BenchError",
    "Completed",
    "Options",
    "PrepareTimeout",
    "Report",
    "Table",
    "Template",
    "broker_template",
    "candles_template",
    "chdb_url",
    "child_env",
    "clone",
    "discard",
    "fmt_ms",
    "fmt_s",
    "interval",
    "interval_freshness",
    "journal_of_last_run",
    "journal_statements",
    "k2_env",
    "k2_migrate",
    "k2_migrate_command",
    "kafka_broker",
    "load_average",
    "median",
    "one_line",
    "pause_steps",
    "plain_plan",
    "prepare_template",
    "print_machine",
    "progress",
    "remove",
    "revision_steps",
    "run_main",
    "run_process",
    "scale_label",
    "spread",
    "worker",
    "workspace",
]

FULL_SCALES: tuple[float, ...] = (1, 10, 100)
QUICK_SCALES: tuple[float, ...] = (0.1, 1)


@dataclass(frozen=True)
class Options:
    """What every benchmark script accepts."""

    quick: bool
    runs: int
    work: Path | None
    keep: bool

    @property
    def scales(self) -> tuple[float, ...]:
        """The volumes measured: 1x, 10x and 100x the handoff's, or small ones with ``--quick``."""
        return QUICK_SCALES if self.quick else FULL_SCALES


@contextmanager
def workspace(options: Options) -> Iterator[Path]:
    """The directory templates and clones go in; a temporary one is removed afterwards unless ``--keep``."""
    if options.work is not None:
        options.work.mkdir(parents=True, exist_ok=True)
        yield options.work.resolve()
        return
    path = Path(tempfile.mkdtemp(prefix="k2-bench-"))
    try:
        yield path
    finally:
        if options.keep:
            print(f"(kept {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)


def run_main(
    title: str,
    argv: Sequence[str] | None,
    measure: Callable[[Options, Path], Report],
    *,
    prog: str,
    description: str,
    runs: int,
    quick_runs: int,
) -> int:
    """The ``main`` of a benchmark: parse ``--quick``, ``--runs``, ``--work`` and ``--keep``, describe
    the machine, measure, print the report."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run at small scales, fewer runs")
    parser.add_argument(
        "--runs", type=int, default=None, help=f"runs per figure (default {runs}, {quick_runs} with --quick)"
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="directory for templates and clones (default: a new one under the temp dir, removed after); "
        "complete templates found there are reused",
    )
    parser.add_argument("--keep", action="store_true", help="keep --work (or the temp dir) afterwards")
    args = parser.parse_args(argv)
    count = args.runs if args.runs is not None else (quick_runs if args.quick else runs)
    if count < 1:
        parser.error("--runs must be at least 1")
    options = Options(quick=args.quick, runs=count, work=args.work, keep=args.keep)
    with workspace(options) as work:
        print_machine(work)
        started = time.perf_counter()
        report = measure(options, work)
        report.seconds = time.perf_counter() - started
        print(report.render(), flush=True)
    return 0
