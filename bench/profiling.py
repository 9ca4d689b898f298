"""Where one ``k2-migrate upgrade head`` spends its time: a py-spy sample of its main thread, split by activity.

``bench.overhead`` runs it when a bar is missed. ``--idle`` counts sleeping too, so waits on the engine
(a Kafka consumer closing, a mutation) show where they are. Each sampled stack goes to the first
activity whose marker frame it contains (most specific first), else to "other".
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from bench import common
from bench.common import Table, Template

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
