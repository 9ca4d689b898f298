"""Plant one-line bugs in the safety-critical code and check that the tests meant to catch each one fail.

    .venv/bin/python -m tests.mutants            # every mutant (make mutants-e2e)
    .venv/bin/python -m tests.mutants -k lock    # those whose name contains "lock"
    .venv/bin/python -m tests.mutants --list

Each mutant (``tests/mutants/catalogue.py``) names one exact piece of text in one module, what it
becomes, and the tests that must catch it. The tree is copied once to a scratch directory (the
repository is never touched); for each mutant the one file is changed there, the named tests run
with that copy first on ``PYTHONPATH`` — so ``k2-migrate`` processes the tests start import the
mutated code too — and the file is put back. A mutant is *killed* when the tests fail, *survived*
when they pass; a mutant whose text is no longer in the code is *stale* and fails the run, so the
catalogue keeps up with the code. First, as a control, the same tests run on the unmutated copy and
must pass. Not part of ``make test``: each mutant runs real engines and
processes, minutes in all. (`make mutants-e2e`. `make mutants` is
mutmut over the pure decisions, every line mutated blindly against the property tests in seconds;
this catalogue aims at the lines a safety argument rests on and names the real-process tests that
must catch each.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.mutants.catalogue import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[2]
_SKIP = shutil.ignore_patterns(".venv", ".git", ".k2-migrate", "*_cache", "__pycache__", "*.egg-info")


def pytest(tree: Path, tests: tuple[str, ...], timeout_s: float) -> tuple[bool, str]:
    """Run ``tests`` in ``tree`` (first on the path, for k2-migrate processes too): (passed, last line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    env["PYTHONPATH"] = str(tree)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout_s:.0f}s"
    return done.returncode == 0, (done.stdout.strip().splitlines() or [""])[-1]


def run(mutant: Mutant, tree: Path, timeout_s: float) -> tuple[str, float, str]:
    """Plant ``mutant`` in ``tree``, run its tests, restore the file: (outcome, seconds, last line)."""
    path = tree / mutant.path
    original = path.read_text()
    if original.count(mutant.original) != 1:
        return "stale", 0.0, f"{mutant.original!r} occurs {original.count(mutant.original)} times"
    path.write_text(original.replace(mutant.original, mutant.mutated))
    started = time.monotonic()
    try:
        passed, tail = pytest(tree, mutant.tests, timeout_s)
    finally:
        path.write_text(original)
    return ("survived" if passed else "killed"), time.monotonic() - started, tail


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--select", default="", help="only mutants whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutants and their tests")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if args.select in m.name]
    if args.list:
        for m in chosen:
            print(f"{m.name}\n    {m.path}: {m.why}\n    tests: {' '.join(m.tests)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="k2-mutants-") as scratch:
        tree = Path(scratch) / "tree"
        shutil.copytree(ROOT, tree, ignore=_SKIP)
        # The control: unmutated, every test named must pass in the copy, or a "killed" proves nothing.
        control = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        passed, tail = pytest(tree, control, args.timeout * 2)
        print(f"control   the unmutated code passes the {len(control)} test selections: {tail}", flush=True)
        if not passed:
            return 2
        results: list[tuple[Mutant, str]] = []
        for m in chosen:
            outcome, seconds, tail = run(m, tree, args.timeout)
            results.append((m, outcome))
            print(f"{outcome:9} {seconds:6.1f}s  {m.name}  ({tail})", flush=True)
    killed = sum(1 for _, o in results if o == "killed")
    stale = [m.name for m, o in results if o == "stale"]
    print(f"\nmutation score: {killed}/{len(results)} killed", end="")
    print(f"; stale (fix the catalogue): {', '.join(stale)}" if stale else "")
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
