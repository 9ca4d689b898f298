"""What k2-migrate costs on top of the SQL it runs, at 1x: two comparisons, side by side.

Every arm is a whole process on an identically seeded database (a fresh clone of one closed template):

- ``k2-migrate upgrade head`` from k2_001 to k2_004, against a plain script (``python -m bench.worker
  replay``) that opens the database with ``clickhouse_connect.get_client(dsn="chdb:///DIR")`` and
  k2-migrate's engine configuration (``k2_migrations/backends/chdb.xml``) and runs the same statements
  in the same order, taken from the journal of a reference k2-migrate run (``k2-migrate log --json``),
  plus the guard counts, the verify queries and a wait for each mutation (:func:`bench.common.plain_plan`);
- a no-op ``k2-migrate upgrade head`` (the database already at head: a clone of the reference run's
  result), against a script that only opens that database the same way, runs ``SELECT 1`` and exits:
  what any k2-migrate command costs before and after its own work.

The arms take turns (the order rotates each round), and each run notes the 1-minute load average.
Reported: each comparison's medians, their difference in seconds and their ratio. Bars: upgrade head at
most 0.6 s over the plain script, the no-op at most 0.3 s over opening the engine. With
``--baseline-tree DIR`` (a checkout of another revision, e.g. a ``git worktree``), the same two k2-migrate
arms run from that tree too, in the same rounds: before/after figures taken under the same load. With
``--noop-only``, only the no-op arms and the open-only script run (the no-op fast path's figure, quickly).
When a bar is missed, one more ``upgrade head`` is sampled with py-spy (``--idle``: sleeping counts too) and its
main thread's time is split by what it was doing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import common
from bench.common import Bar, Options, Report, Table, Template
from bench.profiling import profile

RUNS = 5
QUICK_RUNS = 2
UPGRADE_BAR_S = 0.6
"""Seconds ``upgrade head`` may add over the plain script (issue 15)."""
NOOP_BAR_S = 0.3
"""Seconds a no-op ``upgrade head`` may add over opening the engine (issue 15)."""

OPEN_ONLY = """
import json, sys, time
started = time.perf_counter()
import clickhouse_connect
imported = time.perf_counter()
client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1], chdb_options={"config-file": sys.argv[2]})
opened = time.perf_counter()
client.query("SELECT 1")
queried = time.perf_counter()
client.close()
closed = time.perf_counter()
print(json.dumps({"import_s": imported - started, "open_s": opened - imported,
                  "select_s": queried - opened, "close_s": closed - queried}))
"""
"""The open-only arm: the plain script's imports, the engine opened as k2-migrate configures it, one
``SELECT 1``, closed; the engine's configuration file is passed in, so the script imports nothing of
k2_migrations."""


@dataclass
class Arm:
    """The runs of one arm: which process it runs (``kind``), from which tree, and what each run gave."""

    name: str
    kind: str  # "upgrade", "noop", "plain" or "open-only"
    tree: Path = common.ROOT
    wall_s: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    details: list[dict[str, float]] = field(default_factory=list)

    @property
    def median(self) -> float:
        """The median wall time."""
        return common.median(self.wall_s)

    @property
    def without_close(self) -> list[float]:
        """Each run's wall time less its engine's close (the same engine in every arm; see
        :data:`TIMED_K2_MIGRATE`)."""
        return [wall - detail["close_s"] for wall, detail in zip(self.wall_s, self.details, strict=True)]


TIMED_K2_MIGRATE = """
import os, sys, time
from k2_migrations import backends
spent = []
def timed(cls):
    closing = cls.close
    def close(self):
        started = time.perf_counter()
        try:
            closing(self)
        finally:
            spent.append(time.perf_counter() - started)
            with open(os.environ["K2_BENCH_CLOSE_FILE"], "w") as out:
                out.write(repr(sum(spent)))
    cls.close = close
timed(backends.Backend)
try:
    from k2_migrations.backends.embedded import EmbeddedClient
except ImportError:
    pass  # a tree without the no-op fast path's client
else:
    timed(EmbeddedClient)
sys.argv[0] = "k2-migrate"
from k2_migrations.cli import main
main()
"""
"""``k2-migrate`` as ``python -m k2_migrations`` runs it, with the time its engine took to close written to
``K2_BENCH_CLOSE_FILE``: every arm closes the same engine, whose close takes 0.02, ~1 or ~2 s at random
(its Kafka consumers), so the comparison is also made without it. The engine is closed by a backend's
close or, on the no-op fast path, by its client's (``EmbeddedClient``, where the tree has it)."""


def _reference(template: Template, work: Path) -> tuple[Path, Path, int]:
    """A k2-migrate run whose journal gives the plain script its statements; returns the plan file,
    the database it left at head (closed: the template of the no-op arms) and the statement count."""
    at_head = work / "at-head"
    common.clone(template.path, at_head)
    plan_document = common.k2_migrate(at_head, "plan", "head", "--json").json()
    document = common.k2_migrate(at_head, "upgrade", "head", "--json").json()
    journal = common.journal_of_last_run(at_head, common.UNREACHABLE_BROKERS)
    items = common.plain_plan(document, journal, plan_document)
    plan_file = work / "plain-plan.json"
    plan_file.write_text(json.dumps(items, indent=1))
    statements = sum(1 for item in items if item["kind"] == "sql")
    return plan_file, at_head, statements


def _k2_migrate(tree: Path, directory: Path, *args: str, close_file: Path | None = None) -> common.Completed:
    """``k2-migrate -q ARGS`` on ``directory`` with the code, alembic.ini and revisions of ``tree``.

    ``python -m k2_migrations`` run in ``tree`` with only ``tree`` on PYTHONPATH, so that the package
    imported is that tree's even where another checkout is installed in the environment.
    """
    command = [
        sys.executable,
        "-c",
        TIMED_K2_MIGRATE,
        "-c",
        str(tree / "alembic.ini"),
        "--url",
        common.chdb_url(directory),
        "-q",
        *args,
    ]
    env = common.child_env(
        K2_KAFKA_BROKERS=common.UNREACHABLE_BROKERS,
        K2_SOURCE_DATABASE="default",
        K2_TARGET_DATABASE="k2",
        PYTHONPATH=str(tree),
        K2_BENCH_CLOSE_FILE=str(close_file or directory.parent / "close.txt"),
    )
    started = time.perf_counter()
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
    result = common.Completed(
        tuple(command), done.returncode, done.stdout, done.stderr, time.perf_counter() - started
    )
    if done.returncode != 0:
        raise common.BenchError(f"{result.describe()} exited {done.returncode}: {done.stderr[-1500:]}")
    return result


def _run_k2(arm: Arm, source: Path, work: Path) -> tuple[float, dict[str, float]]:
    """One ``k2-migrate upgrade head`` on a fresh clone of ``source``: wall time and what it reports."""
    clone = work / "k2"
    close_file = work / "k2-close.txt"
    common.clone(source, clone)
    try:
        done = _k2_migrate(arm.tree, clone, "upgrade", "head", "--json", close_file=close_file)
    finally:
        common.remove(clone)
    document = done.json()
    steps_ms = sum(float(s["elapsed_ms"]) for r in document["revisions"] for s in r["steps"])
    return done.seconds, {
        "elapsed_s": float(document["elapsed_s"]),
        "steps_s": steps_ms / 1000,
        "close_s": float(close_file.read_text()),
    }


def _run_plain(template: Template, work: Path, plan_file: Path) -> tuple[float, dict[str, float]]:
    """One plain-script replay on a fresh clone: wall time and its own open/statements/close split."""
    clone = work / "plain"
    common.clone(template.path, clone)
    try:
        report, done = common.worker("replay", str(clone), str(plan_file))
    finally:
        common.remove(clone)
    return done.seconds, {
        "open_s": float(report["open_s"]),
        "statements_s": float(report["statements_s"]),
        "close_s": float(report["close_s"]),
    }


def _run_open_only(at_head: Path, work: Path) -> tuple[float, dict[str, float]]:
    """One open-only script on a fresh clone of the database at head: wall time and its split."""
    clone = work / "open-only"
    common.clone(at_head, clone)
    config = common.ROOT / "k2_migrations" / "backends" / "chdb.xml"
    try:
        done = common.run_process(
            [sys.executable, "-c", OPEN_ONLY, str(clone.resolve()), str(config)], env=common.child_env()
        )
    finally:
        common.remove(clone)
    return done.seconds, {key: float(value) for key, value in done.json().items()}


def _unit_costs(work: Path, repeat: int) -> Table:
    """What one journal append and one catalog lookup cost on this engine, against SELECT 1."""
    directory = work / "unit-costs"
    common.remove(directory)
    try:
        report, _ = common.worker("unit_costs", str(directory), str(repeat))
    finally:
        common.remove(directory)
    table = Table(
        f"Unit costs on the embedded engine (a fresh process and database; median of {repeat}, ms)",
        ["statement", "median", "first call"],
    )
    for name, probe in report["probes"].items():
        table.add(name, common.fmt_ms(common.median(probe["seconds"]), 2), common.fmt_ms(probe["first_s"], 1))
    return table


#: What each arm imports before its first statement: the plain script's client, and k2-migrate's stack.
IMPORTS: tuple[tuple[str, str], ...] = (
    ("python -c pass", "pass"),
    ("the plain script's imports (clickhouse_connect, chdb)", "import clickhouse_connect, chdb"),
    (
        "k2-migrate's stack (those + alembic, sqlalchemy, the clickhouse-connect dialect)",
        "import clickhouse_connect, chdb, alembic.config, alembic.runtime.migration, "
        "clickhouse_connect.cc_sqlalchemy.dialect",
    ),
)


def _import_floor(runs: int) -> Table:
    """Process wall time of the imports alone, alternating: the part of the ratio no change here removes."""
    seconds: dict[str, list[float]] = {label: [] for label, _ in IMPORTS}
    for _ in range(runs):
        for label, code in IMPORTS:
            seconds[label].append(common.run_process([sys.executable, "-c", code]).seconds)
    base = common.median(seconds[IMPORTS[1][0]])
    table = Table(
        f"Imports alone (process wall time, seconds, median of {runs}, alternating)",
        ["imports", "median", "min-max", "above the plain script's"],
    )
    for label, _ in IMPORTS:
        table.add(
            label,
            common.fmt_s(common.median(seconds[label]), 3),
            common.spread(seconds[label]),
            common.fmt_s(common.median(seconds[label]) - base, 3),
        )
    table.notes.append(
        "Alembic runs every revision, and it needs SQLAlchemy and a dialect: what the last row adds is paid by "
        "every k2-migrate process before its first statement"
    )
    return table


def _counts_per_run(template: Template, work: Path) -> Table:
    """How many journal appends, steps and statements one ``upgrade head`` makes."""
    clone = work / "counted"
    common.clone(template.path, clone)
    try:
        document = common.k2_migrate(clone, "upgrade", "head", "--json").json()
        journal = common.journal_of_last_run(clone, common.UNREACHABLE_BROKERS)
    finally:
        common.remove(clone)
    steps = [s for r in document["revisions"] for s in r["steps"]]
    table = Table("What one `upgrade head` (k2_001 -> k2_004) does, counted", ["item", "count"])
    table.add("revisions", len(document["revisions"]))
    table.add("steps (each journaled; each reads the live state first)", len(steps))
    table.add("journal rows (k2-migrate log --json)", len(journal))
    table.add("statements executed (as journaled)", sum(len(s["sql"]) for s in steps))
    table.add(
        "steps that executed nothing (already in the wanted state, or reads only)",
        sum(1 for s in steps if not s["sql"]),
    )
    return table


def _round(
    arms: list[Arm], turn: int, template: Template, at_head: Path, plan_file: Path, work: Path, runs: int
) -> None:
    """One run of every arm, the order rotated by ``turn`` so that no arm always follows the same one."""
    shift = turn % len(arms)
    for arm in arms[shift:] + arms[:shift]:
        common.progress(f"overhead: round {turn + 1}/{runs}: {arm.name}")
        arm.loads.append(common.load_average())
        if arm.kind == "upgrade":
            wall, detail = _run_k2(arm, template.path, work)
        elif arm.kind == "noop":
            wall, detail = _run_k2(arm, at_head, work)
        elif arm.kind == "plain":
            wall, detail = _run_plain(template, work, plan_file)
        else:
            wall, detail = _run_open_only(at_head, work)
        arm.wall_s.append(wall)
        arm.details.append(detail)


def _median_of(arm: Arm, key: str) -> float:
    """The median of one figure an arm's runs reported."""
    return common.median([d[key] for d in arm.details])


def _side_by_side(pairs: list[tuple[str, Arm, Arm]], runs: int, *, close: bool = True) -> Table:
    """Each comparison on one row: both medians, their difference and ratio, and the loads; with
    ``close`` False, each run's wall time less its engine's close."""
    what = "wall seconds" if close else "wall seconds less the engine's close"
    table = Table(
        f"k2-migrate against the plain scripts at 1x, {runs} rounds, arms rotating ({what}, median)",
        ["comparison", "k2-migrate", "plain script", "difference", "ratio", "load (1 min) k2 / plain"],
    )
    for label, k2, plain in pairs:
        k2_s = k2.wall_s if close else k2.without_close
        plain_s = plain.wall_s if close else plain.without_close
        k2_median, plain_median = common.median(k2_s), common.median(plain_s)
        table.add(
            label,
            f"{k2_median:.2f} ({common.spread(k2_s)})",
            f"{plain_median:.2f} ({common.spread(plain_s)})",
            f"{k2_median - plain_median:+.2f}",
            f"{k2_median / plain_median:.2f}",
            f"{common.median(k2.loads):.2f} / {common.median(plain.loads):.2f}",
        )
    return table


def _inside(arms: list[Arm]) -> Table:
    """What each process reports of its own time, to tell the engine's part from the rest."""
    table = Table("Inside the processes (seconds, median)", ["arm", "split"])
    for arm in arms:
        if arm.kind in {"upgrade", "noop"}:
            split = "migrate() {:.2f}, of which steps {:.2f}; close {:.2f}".format(
                _median_of(arm, "elapsed_s"), _median_of(arm, "steps_s"), _median_of(arm, "close_s")
            )
        elif arm.kind == "plain":
            split = "open {:.2f}, statements {:.2f}, close {:.2f}".format(
                _median_of(arm, "open_s"), _median_of(arm, "statements_s"), _median_of(arm, "close_s")
            )
        else:
            split = "import {:.2f}, open {:.2f}, SELECT 1 {:.3f}, close {:.2f}".format(
                _median_of(arm, "import_s"),
                _median_of(arm, "open_s"),
                _median_of(arm, "select_s"),
                _median_of(arm, "close_s"),
            )
        table.add(arm.name, split)
    table.notes.append(
        "closing an engine whose Kafka tables point at an unreachable broker takes either ~0.02 s or "
        "~1 s (librdkafka's consumer close waits for its next event): every arm closes such an engine"
    )
    return table


def measure(options: Options, work: Path, baseline: Path | None = None, *, noop_only: bool = False) -> Report:
    """Rotate the arms through ``options.runs`` rounds and compare the medians (with ``noop_only``,
    only the no-op against opening the engine, and that tree's no-op with ``baseline``)."""
    report = Report("bench.overhead: k2-migrate against plain clickhouse-connect scripts (1x)")
    common.progress("overhead: preparing 1x")
    template = common.prepare_template(work, 1)
    common.progress("overhead: reference run (its journal gives the plain script its statements)")
    plan_file, at_head, statements = _reference(template, work)
    upgrade = Arm("k2-migrate upgrade head", "upgrade")
    noop = Arm("k2-migrate upgrade head, already at head", "noop")
    plain = Arm("plain script (same statements + guard counts)", "plain")
    open_only = Arm("open-only script (open, SELECT 1, close)", "open-only")
    arms = [upgrade, plain, noop, open_only]
    pairs = [
        ("upgrade head vs the plain script", upgrade, plain),
        ("no-op upgrade head vs opening the engine", noop, open_only),
    ]
    if noop_only:
        arms = [noop, open_only]
        pairs = [pairs[1]]
        if baseline is not None:
            before_noop = Arm(f"{noop.name} ({baseline})", "noop", baseline)
            arms.append(before_noop)
            pairs = [
                (f"before ({baseline}): no-op vs opening the engine", before_noop, open_only),
                ("after (this tree): no-op vs opening the engine", noop, open_only),
            ]
    elif baseline is not None:
        before_upgrade = Arm(f"{upgrade.name} ({baseline})", "upgrade", baseline)
        before_noop = Arm(f"{noop.name} ({baseline})", "noop", baseline)
        arms += [before_upgrade, before_noop]
        pairs = [
            (f"before ({baseline}): upgrade head vs the plain script", before_upgrade, plain),
            ("after (this tree): upgrade head vs the plain script", upgrade, plain),
            (f"before ({baseline}): no-op vs opening the engine", before_noop, open_only),
            ("after (this tree): no-op vs opening the engine", noop, open_only),
        ]
    try:
        for turn in range(options.runs):
            _round(arms, turn, template, at_head, plan_file, work, options.runs)
    finally:
        if not options.keep:
            common.remove(at_head)
    table = _side_by_side(pairs, options.runs)
    table.notes.append(
        f"the plain script runs the {statements} statements the reference run journaled, in order, plus the "
        "guard counts before and after, the 4 verify queries, and waits for the 4 mutations (polling every "
        "5 ms); it leaves out what only k2-migrate does: catalog lookups, journal, lock, captured "
        "definitions, version table, schema record"
    )
    table.notes.append(
        "the open-only script imports clickhouse_connect, opens the database at head with k2-migrate's "
        "engine configuration, runs SELECT 1 and closes it"
    )
    table.notes.append(f"the plain script's statements: {plan_file} (kept with --keep)")
    report.tables.append(table)
    report.tables.append(_side_by_side(pairs, options.runs, close=False))
    report.tables.append(_inside(arms))
    # Judged without the engine's close: it is the same engine's in both arms of each pair, and its
    # 0.02-2 s at random are wider than the differences the bars are about.
    over_upgrade = (
        0.0 if noop_only else common.median(upgrade.without_close) - common.median(plain.without_close)
    )
    over_noop = common.median(noop.without_close) - common.median(open_only.without_close)
    if not noop_only:
        report.bars.append(
            Bar(
                "upgrade head over the plain script, 1x, less the engine's close (s)",
                f"{over_upgrade:+.2f}",
                f"<= {UPGRADE_BAR_S}",
                over_upgrade <= UPGRADE_BAR_S,
            )
        )
    report.bars.append(
        Bar(
            "no-op upgrade head over opening the engine, less the engine's close (s)",
            f"{over_noop:+.2f}",
            f"<= {NOOP_BAR_S}",
            over_noop <= NOOP_BAR_S,
        )
    )
    if not noop_only and (over_upgrade > UPGRADE_BAR_S or over_noop > NOOP_BAR_S):
        common.progress("overhead: a bar missed, profiling one run with py-spy")
        tables = profile(template, work)
        if tables is None:
            report.notes.append("py-spy is not installed: no profile (pip install py-spy)")
        else:
            report.tables.extend(tables)
        report.tables.append(_import_floor(5 if options.quick else 10))
        report.tables.append(_unit_costs(work, 20 if options.quick else 50))
        report.tables.append(_counts_per_run(template, work))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.overhead [--quick] [--runs N] [--work DIR] [--keep] [--baseline-tree DIR]
    [--noop-only]``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--baseline-tree", type=Path, default=None)
    parser.add_argument("--noop-only", action="store_true")
    known, rest = parser.parse_known_args(argv)
    baseline: Path | None = known.baseline_tree.resolve() if known.baseline_tree else None
    if baseline is not None and not (baseline / "k2_migrations").is_dir():
        parser.error(f"--baseline-tree {baseline} holds no k2_migrations package")
    return common.run_main(
        "bench.overhead",
        rest,
        lambda options, work: measure(options, work, baseline, noop_only=known.noop_only),
        prog="python -m bench.overhead",
        description=(__doc__ or "").split("\n\n")[0],
        runs=RUNS,
        quick_runs=QUICK_RUNS,
    )


if __name__ == "__main__":
    sys.exit(main())
