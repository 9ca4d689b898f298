"""Run timing-sensitive tests N times while the machine is loaded, and count the failures.

``python -m tests.repeat -n 20 --load 2 tests/test_output_and_signals.py::test_x ...`` starts
``--load`` busy processes (one spinning Python each; on a 2-core machine 2 of them keep every core
busy), runs pytest on the given tests N times, one process a run, stops the busy processes by their
pids and prints one line per run and a total. Exit code 1 if any run failed. ``make repeat`` runs
the tests known to depend on timing (:data:`TIMING_SENSITIVE`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

#: Tests whose outcome depends on timing: each was seen flaky once, or waits on signals or clocks.
TIMING_SENSITIVE = [
    "tests/test_output_and_signals.py::test_a_second_ctrl_c_ends_a_wait_on_a_server_at_once",
    "tests/test_output_and_signals.py::test_ctrl_c_twice_cuts_the_step_sigterm_lets_it_finish_and_the_next_run_converges",
    "tests/test_kill_points.py::test_killed_while_its_mutation_runs_the_step_waits_for_it_and_never_reissues_it",
    "tests/test_rebuild_table.py::test_killed_for_real_inside_its_straight_copy_the_rebuild_resumes_without_loss_or_duplicates",
]

_SPIN = "while True: pass"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.repeat", description=__doc__)
    parser.add_argument("-n", "--runs", type=int, default=20, help="how many times (default 20)")
    parser.add_argument("--load", type=int, default=2, help="busy processes meanwhile (default 2)")
    parser.add_argument("tests", nargs="*", help="pytest node ids (default: the timing-sensitive ones)")
    args = parser.parse_args(argv)
    tests = args.tests or TIMING_SENSITIVE
    spinners = [subprocess.Popen([sys.executable, "-c", _SPIN]) for _ in range(args.load)]
    failed = 0
    try:
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                capture_output=True,
                text=True,
                check=False,
            )
            last = (done.stdout.strip().splitlines() or [""])[-1]
            print(f"run {run}/{args.runs}: {last} ({time.monotonic() - started:.1f}s)", flush=True)
            if done.returncode != 0:
                failed += 1
                print(done.stdout[-3000:], flush=True)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    print(f"{args.runs - failed} of {args.runs} runs passed under load {args.load} ({' '.join(tests)})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
