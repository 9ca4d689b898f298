"""What k2-migrate costs on top of the SQL it runs: ``upgrade head`` against a plain script, at 1x.

Both arms are whole processes on identically seeded databases (fresh clones of one template):

- ``k2-migrate upgrade head`` (the CLI), from k2_001 to k2_004;
- a plain script (``python -m bench.worker replay``) that opens the database with
  ``clickhouse_connect.get_client(dsn="chdb:///DIR")`` (with k2-migrate's engine configuration,
  ``k2_migrations/backends/chdb.xml``) and runs the same statements in the same order —
  taken from the journal of a reference k2-migrate run (``k2-migrate log --json``) — plus the guard
  counts, the verify queries and a wait for each mutation (see :func:`bench.common.plain_plan`).

The arms alternate (k2-migrate first in odd pairs, the plain script first in even ones). Reported: the
ratio of the medians of the process wall times. Bar: at most 1.3. When the bar is missed, one more
k2-migrate run is sampled with py-spy (``--idle``: sleeping counts too) and its main thread's time is
split by what it was doing.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common
from bench.common import Bar, Options, Report, Table, Template

RUNS = 5
QUICK_RUNS = 2
RATIO_BAR = 1.3
PROFILE_RATE = 100

CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("journal appends (rows held back, one INSERT per durable point)", ("Journal.flush",)),
    ("waiting for mutations (polls from 10 ms, backing off to 0.25 s)", ("RunMutation._wait_for_running",)),
    (
        "the migration's own statements (as in the plain script)",
        ("StepExecutor.execute ", "StepExecutor.execute_together "),
    ),
    ("guard counts and verify queries (as in the plain script)", ("Catalog.count ", "Verify.apply ")),
    ("captured definitions (snapshots table)", ("Snapshots.",)),
    ("catalog lookups before each step (system.tables...)", ("Catalog.",)),
    ("schema record after the run (for `k2-migrate check`)", ("record_schema ",)),
    ("migration lock", ("MigrationLock.",)),
    ("migrations database, journal read, reconcile", ("ensure_metadata ", "reconcile ", "Journal.")),
    ("Alembic version table", ("HeadMaintainer", "_update_version", "versions_table", "update_to_step")),
    ("closing the engine (chDB shutdown)", ("Backend.close ",)),
    ("opening the engine (chDB start)", ("open_backend ", "open_embedded ")),
    ("loading alembic.ini and the revision files", ("_load_scripts ", "Project.__init__ ")),
    ("importing Python modules", ("_find_and_load ",)),
)


@dataclass
class Arm:
    """The runs of one arm."""

    name: str
    wall_s: list[float]
    loads: list[float]
    details: list[dict[str, float]]


def _reference(template: Template, work: Path) -> tuple[Path, dict[str, Any], int]:
    """A k2-migrate run whose journal gives the plain script its statements; returns the plan file."""
    clone = work / "reference"
    common.clone(template.path, clone)
    try:
        plan_document = common.k2_migrate(clone, "plan", "head", "--json").json()
        document = common.k2_migrate(clone, "upgrade", "head", "--json").json()
        journal = common.journal_of_last_run(clone, common.UNREACHABLE_BROKERS)
    finally:
        common.remove(clone)
    items = common.plain_plan(document, journal, plan_document)
    plan_file = work / "plain-plan.json"
    plan_file.write_text(json.dumps(items, indent=1))
    statements = sum(1 for item in items if item["kind"] == "sql")
    return plan_file, document, statements


def _run_k2(template: Template, work: Path) -> tuple[float, dict[str, float]]:
    """One ``k2-migrate upgrade head`` on a fresh clone: wall time and what the run reports."""
    clone = work / "k2"
    common.clone(template.path, clone)
    try:
        done = common.k2_migrate(clone, "upgrade", "head", "--json")
    finally:
        common.remove(clone)
    document = done.json()
    steps_ms = sum(float(s["elapsed_ms"]) for r in document["revisions"] for s in r["steps"])
    return done.seconds, {"elapsed_s": float(document["elapsed_s"]), "steps_s": steps_ms / 1000}


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


def profile(template: Template, work: Path) -> tuple[Table, Table, Table] | None:
    """Sample one ``k2-migrate upgrade head`` with py-spy and split its main thread's time."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).is_file():
        return None
    clone = work / "profiled"
    raw = work / "k2-migrate.pyspy.txt"
    common.clone(template.path, clone)
    try:
        prefix = [
            py_spy,
            "record",
            "--idle",
            "--threads",
            "-r",
            str(PROFILE_RATE),
            "-o",
            str(raw),
            "-f",
            "raw",
            "--",
        ]
        done = common.k2_migrate(clone, "upgrade", "head", "--json", prefix=prefix)
    finally:
        common.remove(clone)
    stacks: list[tuple[str, int]] = []
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if "MainThread" in stack.split(";", 1)[0]:
            stacks.append((stack, int(samples)))
    total = sum(n for _, n in stacks) or 1
    seconds: dict[str, int] = {}
    paths: dict[str, dict[str, int]] = {}
    for stack, count in stacks:
        name, path = _categorize(stack)
        seconds[name] = seconds.get(name, 0) + count
        below = paths.setdefault(name, {})
        below[path] = below.get(path, 0) + count
    split = Table(
        "Where one k2-migrate `upgrade head` spends its time "
        f"(py-spy --idle, main thread, {PROFILE_RATE} Hz; "
        f"this run took {done.seconds:.2f} s under the profiler)",
        ["activity (first match, most specific first)", "seconds", "share"],
    )
    for label, _ in (*CATEGORIES, (OTHER, ())):
        if label in seconds:
            split.add(label, f"{seconds[label] / PROFILE_RATE:.2f}", f"{seconds[label] / total:.0%}")
    split.add("TOTAL sampled", f"{total / PROFILE_RATE:.2f}", "100%")
    inside = Table(
        "Inside the four largest activities: the calls below the matching frame (same profile)",
        ["activity", "call path below it", "seconds"],
    )
    for label, _ in sorted(seconds.items(), key=lambda kv: -kv[1])[:4]:
        for i, (path, count) in enumerate(sorted(paths[label].items(), key=lambda kv: -kv[1])[:4]):
            inside.add(label.split(" (")[0] if i == 0 else "", path, f"{count / PROFILE_RATE:.2f}")
    frames = Table("Top k2-migrations frames by inclusive time (same profile)", ["frame", "seconds", "share"])
    inclusive: dict[str, int] = {}
    for stack, count in stacks:
        seen = set()
        for frame in stack.split(";")[1:]:
            if "k2_migrations/" not in frame and "versions/" not in frame:
                continue
            name = frame.split(" (", 1)[0] + " (" + frame.rsplit("/", 1)[-1].split(":", 1)[0] + ")"
            if name not in seen:
                seen.add(name)
                inclusive[name] = inclusive.get(name, 0) + count
    for name, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:15]:
        frames.add(name, f"{count / PROFILE_RATE:.2f}", f"{count / total:.0%}")
    frames.notes.append(f"raw samples: {raw} (kept with --keep)")
    return split, inside, frames


OTHER = "other (click, Alembic's machinery, interpreter)"


def _frame_name(frame: str) -> str:
    """A py-spy frame without its file and line."""
    return frame.split(" (", 1)[0]


def _categorize(stack: str) -> tuple[str, str]:
    """The activity a sample belongs to, and the call path (4 frames) from the frame that matched."""
    frames = stack.split(";")[1:]
    for label, markers in CATEGORIES:
        for index, frame in enumerate(frames):
            if any(m in frame + " " for m in markers):
                below = [_frame_name(f) for f in frames[index + 1 : index + 4]]
                return label, " > ".join([_frame_name(frame), *below])
    return OTHER, " > ".join(_frame_name(f) for f in frames[-3:])


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


def measure(options: Options, work: Path) -> Report:
    """Alternate the two arms and compare the medians."""
    report = Report("bench.overhead: k2-migrate upgrade head vs a plain clickhouse-connect script (1x)")
    common.progress("overhead: preparing 1x")
    template = common.prepare_template(work, 1)
    common.progress("overhead: reference run (its journal gives the plain script its statements)")
    plan_file, _, statements = _reference(template, work)
    k2 = Arm("k2-migrate upgrade head", [], [], [])
    plain = Arm("plain script (same statements + guard counts)", [], [], [])
    for pair in range(options.runs):
        order = (k2, plain) if pair % 2 == 0 else (plain, k2)
        for arm in order:
            common.progress(f"overhead: pair {pair + 1}/{options.runs}: {arm.name}")
            arm.loads.append(common.load_average())
            if arm is k2:
                wall, detail = _run_k2(template, work)
            else:
                wall, detail = _run_plain(template, work, plan_file)
            arm.wall_s.append(wall)
            arm.details.append(detail)
    ratio = common.median(k2.wall_s) / common.median(plain.wall_s)
    table = Table(
        f"Whole-process wall time at 1x, {options.runs} alternating pairs (seconds)",
        ["arm", "median", "min-max", "inside the process", "load avg (1 min)"],
    )
    table.add(
        k2.name,
        common.fmt_s(common.median(k2.wall_s), 2),
        common.spread(k2.wall_s),
        "migrate() {:.2f}, of which steps {:.2f}".format(
            common.median([d["elapsed_s"] for d in k2.details]),
            common.median([d["steps_s"] for d in k2.details]),
        ),
        f"{common.median(k2.loads):.2f}",
    )
    table.add(
        plain.name,
        common.fmt_s(common.median(plain.wall_s), 2),
        common.spread(plain.wall_s),
        "open {:.2f}, statements {:.2f}, close {:.2f}".format(
            common.median([d["open_s"] for d in plain.details]),
            common.median([d["statements_s"] for d in plain.details]),
            common.median([d["close_s"] for d in plain.details]),
        ),
        f"{common.median(plain.loads):.2f}",
    )
    table.add("ratio of medians", f"{ratio:.2f}", "", "", "")
    table.notes.append(
        f"the plain script runs the {statements} statements the reference run journaled, in order, plus the "
        "guard counts before and after, the 4 verify queries, and waits for the 4 mutations (polling every "
        "5 ms); it leaves out what only k2-migrate does: catalog lookups, journal, lock, captured "
        "definitions, "
        "version table, schema record"
    )
    table.notes.append(f"the plain script's statements: {plan_file} (kept with --keep)")
    report.tables.append(table)
    report.bars.append(
        Bar("k2-migrate / plain script, 1x", f"{ratio:.2f}", f"<= {RATIO_BAR}", ratio <= RATIO_BAR)
    )
    if ratio > RATIO_BAR:
        common.progress("overhead: bar missed, profiling one run with py-spy")
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
    """``python -m bench.overhead [--quick] [--runs N] [--work DIR] [--keep]``."""
    return common.run_main(
        "bench.overhead",
        argv,
        measure,
        prog="python -m bench.overhead",
        description=(__doc__ or "").split("\n\n")[0],
        runs=RUNS,
        quick_runs=QUICK_RUNS,
    )


if __name__ == "__main__":
    sys.exit(main())
