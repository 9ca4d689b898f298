"""Run every benchmark and print every table: ``python -m bench.run_all [--quick]``.

The benchmarks share one work directory, so each volume is prepared once (by its own processes) and
reused by every benchmark that needs it; the templates are never modified (every run works on a
clone). Order: start-up, guards, overhead, window_end, pause, live_pause. The machine is described once at the top,
the bars of all benchmarks are summed up at the end, with the total time.

Full run: 1x, 10x and 100x (preparing 100x takes ~5 min and ~5 GB; up to ~15 GB of disk in use at
once), about 40 minutes on 2 cores, of which live_pause ~15. ``--quick``: 0.1x and 1x, fewer runs,
the live broker at 1x only, no evidence replays: about 7 minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import common, guards, live_pause, overhead, pause, startup, window_end
from bench.common import Bar, Options, Report

Measure = Callable[[Options, Path], Report]

BENCHMARKS: tuple[tuple[str, Measure, int, int], ...] = (
    ("startup", startup.measure, startup.RUNS, startup.QUICK_RUNS),
    ("guards", guards.measure, guards.RUNS, guards.QUICK_RUNS),
    ("overhead", overhead.measure, overhead.RUNS, overhead.QUICK_RUNS),
    ("window_end", window_end.measure, window_end.RUNS, window_end.QUICK_RUNS),
    ("pause", pause.measure, pause.RUNS, pause.QUICK_RUNS),
    ("live_pause", live_pause.measure, live_pause.RUNS, live_pause.QUICK_RUNS),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run the chosen benchmarks in one work directory, print everything."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.run_all", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a fast smoke run at small scales, fewer runs")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure for every benchmark")
    parser.add_argument(
        "--work", type=Path, default=None, help="work directory (complete templates are reused)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    parser.add_argument(
        "--only",
        action="append",
        choices=[name for name, *_ in BENCHMARKS],
        help="run only these (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    shared = Options(quick=args.quick, runs=1, work=args.work, keep=args.keep)
    started = time.perf_counter()
    bars: list[tuple[str, Bar]] = []
    failed: list[str] = []
    with common.workspace(shared) as work:
        common.print_machine(work)
        scales = ", ".join(map(common.scale_label, shared.scales))
        print(f"Mode: {'--quick' if args.quick else 'full'}; scales {scales}")
        print()
        for name, measure, runs, quick_runs in BENCHMARKS:
            if args.only and name not in args.only:
                continue
            count = args.runs if args.runs is not None else (quick_runs if args.quick else runs)
            options = Options(quick=args.quick, runs=count, work=work, keep=True)
            common.progress(f"run_all: {name} ({count} run(s) per figure)")
            bench_started = time.perf_counter()
            try:
                report = measure(options, work)
            except Exception as exc:  # one benchmark failing must not hide the others' tables
                failed.append(name)
                print(f"## bench.{name}: FAILED: {exc}\n", flush=True)
                traceback.print_exc()
                continue
            report.seconds = time.perf_counter() - bench_started
            print(report.render(), flush=True)
            print()
            bars.extend((name, bar) for bar in report.bars)
        total = time.perf_counter() - started
        print("## All bars")
        print()
        for name, bar in bars:
            print(f"- bench.{name}: {bar.render()}")
        for name in failed:
            print(f"- bench.{name}: did not complete (see above)")
        print()
        print(f"Total: {total / 60:.1f} min; load average at the end: {common.load_average():.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
