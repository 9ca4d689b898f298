"""What the benchmarks share: the machine, timing and medians, tables, and prepared embedded databases.

Preparing a database (:func:`prepare_template`) is what ``make demo`` does, in processes of its own:
``k2-migrate upgrade k2_001 --url chdb:///DIR`` (the CLI, as a subprocess) lays down the K2 baseline in
``default``, then a child process runs :func:`k2_migrations.k2.demo_data.load` at the scale. The result
is a *template* that is never opened again: every measurement works on a clone of it (a byte copy of
the closed directory), so every run of a measurement starts from the same bytes.

The Kafka tables of a template point at an unreachable broker (``127.0.0.1:9``). A clone whose Kafka
tables point at a live local Tansu broker is made by :func:`broker_template`, which re-creates the two
Kafka tables (and the views on them) with the broker's address, in a child process of its own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
"""The project root: alembic.ini, versions/ and the packages live here."""

ALEMBIC_INI = ROOT / "alembic.ini"

UNREACHABLE_BROKERS = "127.0.0.1:9"
"""Nothing listens there: librdkafka gets "connection refused" at once and keeps retrying."""

TOPICS: Mapping[str, int] = {"market.crypto.trades.binance": 3, "market.crypto.trades.kraken": 2}
"""The K2 topics and their partitions (one per symbol, as the producers key them)."""

PREPARE_TIMEOUT_S = 20 * 60
"""A template that takes longer than this to load is given up (the brief's "reasonable time")."""

MB_PER_SCALE = 60
"""Disk a template takes per unit of scale (59 MB at 1x, 558 MB at 10x on this engine)."""

FULL_SCALES: tuple[float, ...] = (1, 10, 100)
QUICK_SCALES: tuple[float, ...] = (0.1, 1)


class BenchError(RuntimeError):
    """A benchmark could not run (a child failed, no disk space, a template took too long)."""


class PrepareTimeout(BenchError):
    """Loading a template took longer than :data:`PREPARE_TIMEOUT_S`."""


# -- options --------------------------------------------------------------------------------------


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


def parse_options(
    description: str, argv: Sequence[str] | None, *, runs: int, quick_runs: int, prog: str
) -> Options:
    """Parse ``--quick``, ``--runs``, ``--work`` and ``--keep``."""
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
    return Options(quick=args.quick, runs=count, work=args.work, keep=args.keep)


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


# -- the machine ----------------------------------------------------------------------------------


def _cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _meminfo_gib(key: str) -> float:
    """A /proc/meminfo figure in GiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def _version(package: str) -> str:
    """An installed package's version."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    """A git command's output in the project root (empty if git fails)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout


def _git_revision() -> str:
    """The commit, and for a modified tree which files differ (others may be editing it)."""
    revision = _git("describe", "--always", "--dirty").strip() or "unknown"
    changed = [
        line[3:] for line in _git("status", "--porcelain").splitlines() if not line[3:].startswith("bench/")
    ]
    if changed:
        diff = hashlib.sha256(_git("diff", "HEAD", "--", *changed).encode()).hexdigest()[:10]
        revision += f" (uncommitted outside bench/: {', '.join(changed[:6])}; diff sha256 {diff})"
    return revision


def load_average() -> float:
    """The 1-minute load average now (other processes share these cores)."""
    return os.getloadavg()[0]


def machine_lines(work: Path | None = None) -> list[str]:
    """The machine and software the figures come from, one fact per line."""
    load1, load5, load15 = os.getloadavg()
    lines = [
        f"CPU: {_cpu_model()}, {os.cpu_count()} logical cores",
        f"RAM: {_meminfo_gib('MemTotal'):.1f} GiB ({_meminfo_gib('MemAvailable'):.1f} GiB available)",
        f"OS: {platform.system()} {platform.release()}",
        f"Python: {platform.python_implementation()} {platform.python_version()}",
        "chdb {} / chdb-core {} / clickhouse-connect {} / alembic {}".format(
            _version("chdb"), _version("chdb-core"), _version("clickhouse-connect"), _version("alembic")
        ),
        f"k2-migrations: {_git_revision()}",
        f"load average at start: {load1:.2f} {load5:.2f} {load15:.2f} (1/5/15 min)",
    ]
    if work is not None:
        free = shutil.disk_usage(work).free / 1024**3
        lines.append(f"work directory: {work} ({free:.0f} GiB free)")
    return lines


# -- timing ---------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """``min-max`` of the values, for next to a median."""
    if not values:
        return "-"
    return f"{min(values):.3f}-{max(values):.3f}"


@dataclass(frozen=True)
class Completed:
    """A finished child process: its output and its wall time."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> dict[str, Any]:
        """The JSON document the child printed (the last one, if anything came before it)."""
        text = self.stdout.strip()
        start = text.rfind("\n{") + 1 if not text.startswith("{") else 0
        try:
            document: dict[str, Any] = json.loads(text[start:])
        except json.JSONDecodeError as exc:
            raise BenchError(f"{self.describe()} printed no JSON ({exc}): {text[-500:]!r}") from None
        return document

    def describe(self) -> str:
        """The command, shortened."""
        return " ".join(a if len(a) < 60 else a[:57] + "..." for a in self.args[:8])


def run_process(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> Completed:
    """Run a child in the project root, capture its output, and time it (wall clock)."""
    started = time.perf_counter()
    try:
        done = subprocess.run(
            list(args),
            cwd=ROOT,
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PrepareTimeout(f"{' '.join(args[:6])} did not finish within {timeout:.0f} s") from exc
    result = Completed(tuple(args), done.returncode, done.stdout, done.stderr, time.perf_counter() - started)
    if check and done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-1500:]
        raise BenchError(f"{result.describe()} exited {done.returncode}: {tail}")
    return result


def child_env(**overrides: str) -> dict[str, str]:
    """The environment of a child: ours without k2-migrate settings that would redirect it, plus overrides."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("K2_MIGRATE_", "K2_SOURCE_", "K2_TARGET_", "K2_KAFKA_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.update(overrides)
    return env


def k2_migrate_command() -> list[str]:
    """The installed ``k2-migrate`` console script of this interpreter's environment."""
    beside = Path(sys.executable).parent / "k2-migrate"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("k2-migrate")
    if found:
        return [found]
    return [sys.executable, "-m", "k2_migrations"]


def chdb_url(directory: Path, config_file: Path | None = None) -> str:
    """``chdb:///absolute/path`` (with ``?config-file=`` when given)."""
    url = f"chdb://{directory.resolve()}"
    return f"{url}?config-file={config_file.resolve()}" if config_file is not None else url


def k2_migrate(
    directory: Path,
    *args: str,
    brokers: str = UNREACHABLE_BROKERS,
    config_file: Path | None = None,
    check: bool = True,
    timeout: float | None = 3600,
    prefix: Sequence[str] = (),
) -> Completed:
    """``k2-migrate -c alembic.ini --url chdb:///DIR -q ARGS`` as a child process, timed."""
    command = [
        *prefix,
        *k2_migrate_command(),
        "-c",
        str(ALEMBIC_INI),
        "--url",
        chdb_url(directory, config_file),
        "-q",
        *args,
    ]
    env = child_env(K2_KAFKA_BROKERS=brokers, K2_SOURCE_DATABASE="default", K2_TARGET_DATABASE="k2")
    return run_process(command, env=env, timeout=timeout, check=check)


def worker(action: str, *args: str, timeout: float | None = 3600) -> tuple[dict[str, Any], Completed]:
    """``python -m bench.worker ACTION ARGS`` in a fresh process; returns its JSON report and the process."""
    done = run_process(
        [sys.executable, "-m", "bench.worker", action, *args], env=child_env(), timeout=timeout
    )
    return done.json(), done


# -- templates and clones ------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A prepared, closed embedded database: the K2 baseline in ``default`` with demo data at ``scale``."""

    path: Path
    scale: float
    brokers: str
    rows: dict[str, int]
    baseline_s: float
    load_s: float
    size_bytes: int
    reused: bool = False

    @property
    def label(self) -> str:
        """``1x``, ``10x``, ``0.1x``..."""
        return scale_label(self.scale)

    def to_json(self) -> dict[str, Any]:
        """What the marker file next to the template records."""
        return {
            "scale": self.scale,
            "brokers": self.brokers,
            "rows": self.rows,
            "baseline_s": self.baseline_s,
            "load_s": self.load_s,
            "size_bytes": self.size_bytes,
        }


def scale_label(scale: float) -> str:
    """How a scale is written in the tables."""
    return f"{scale:g}x"


def dir_size(path: Path) -> int:
    """Bytes under ``path`` (symlinks not followed)."""
    total = 0
    for base, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                continue
    return total


def _marker(path: Path) -> Path:
    """The JSON file next to a template that says it is complete, and what it holds."""
    return path.with_name(path.name + ".json")


def _reuse(path: Path, scale: float, brokers: str) -> Template | None:
    """A complete template already at ``path`` for this scale and broker list, if there is one."""
    marker = _marker(path)
    if not (marker.is_file() and path.is_dir()):
        return None
    data = json.loads(marker.read_text())
    if data.get("scale") != scale or data.get("brokers") != brokers:
        return None
    return Template(
        path=path,
        scale=scale,
        brokers=brokers,
        rows={str(k): int(v) for k, v in data["rows"].items()},
        baseline_s=float(data["baseline_s"]),
        load_s=float(data["load_s"]),
        size_bytes=int(data["size_bytes"]),
        reused=True,
    )


def ensure_disk(where: Path, need_bytes: int, what: str) -> None:
    """Refuse to start something that would fill the disk."""
    free = shutil.disk_usage(where).free
    if free < need_bytes:
        raise BenchError(
            f"{what} needs about {need_bytes / 1024**3:.1f} GiB, {where} has {free / 1024**3:.1f} GiB free"
        )


def prepare_template(work: Path, scale: float, *, timeout: float = PREPARE_TIMEOUT_S) -> Template:
    """The template at ``scale`` in ``work``: reused if a complete one is there, else prepared.

    Two processes of its own: ``k2-migrate upgrade k2_001`` (the CLI) and a loader child running
    ``demo_data.load(client, "default", scale)``. A load slower than ``timeout`` is killed and raises
    :class:`PrepareTimeout`.
    """
    path = work / "templates" / f"x{scale:g}"
    found = _reuse(path, scale, UNREACHABLE_BROKERS)
    if found is not None:
        return found
    # The template, a broker copy and a clone of it can coexist: three times the template, plus slack.
    work.mkdir(parents=True, exist_ok=True)
    ensure_disk(work, int(3 * MB_PER_SCALE * scale * 1024**2) + 2 * 1024**3, f"the {scale:g}x template")
    shutil.rmtree(path, ignore_errors=True)
    _marker(path).unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    baseline = k2_migrate(path, "upgrade", "k2_001", timeout=600)
    started = time.perf_counter()
    try:
        loaded, _ = worker("load", str(path), repr(scale), timeout=timeout)
    except PrepareTimeout:
        shutil.rmtree(path, ignore_errors=True)
        raise PrepareTimeout(
            f"loading {scale:g}x took more than {timeout / 60:.0f} min and was stopped"
        ) from None
    template = Template(
        path=path,
        scale=scale,
        brokers=UNREACHABLE_BROKERS,
        rows={str(k): int(v) for k, v in loaded["rows"].items()},
        baseline_s=baseline.seconds,
        load_s=time.perf_counter() - started,
        size_bytes=dir_size(path),
    )
    _marker(path).write_text(json.dumps(template.to_json()))
    return template


def broker_template(template: Template, bootstrap: str) -> Template:
    """A copy of ``template`` whose two Kafka tables (and the views on them) point at ``bootstrap``."""
    port = bootstrap.rsplit(":", 1)[-1]
    path = template.path.with_name(f"{template.path.name}-broker-{port}")
    found = _reuse(path, template.scale, bootstrap)
    if found is not None:
        return found
    clone(template.path, path)
    _marker(path).unlink(missing_ok=True)
    worker("repoint", str(path), "default", bootstrap, timeout=600)
    copy = Template(
        path=path,
        scale=template.scale,
        brokers=bootstrap,
        rows=template.rows,
        baseline_s=template.baseline_s,
        load_s=template.load_s,
        size_bytes=dir_size(path),
    )
    _marker(path).write_text(json.dumps(copy.to_json()))
    return copy


def clone(source: Path, destination: Path) -> float:
    """Copy a closed data directory byte for byte; returns the seconds it took."""
    started = time.perf_counter()
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(source, destination, symlinks=True)
    return time.perf_counter() - started


def remove(path: Path) -> None:
    """Delete a clone."""
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def kafka_broker() -> Iterator[str]:
    """A Tansu broker on 127.0.0.1 (the test harness's) with the K2 topics; yields its bootstrap address."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.support.kafka_broker import KafkaBroker

    with KafkaBroker() as broker:
        for topic, partitions in TOPICS.items():
            broker.create_topic(topic, partitions)
        yield broker.bootstrap


# -- the journal and the run document ----------------------------------------------------------


def journal_of_last_run(directory: Path, brokers: str) -> list[dict[str, Any]]:
    """``k2-migrate log --json``: the journal rows of the newest run, oldest first."""
    entries: list[dict[str, Any]] = k2_migrate(
        directory, "log", "--json", "-n", "5000", brokers=brokers
    ).json()["entries"]
    if not entries:
        return []
    newest = entries[0]["run_id"]
    return [e for e in reversed(entries) if e["run_id"] == newest]


def interval(document: Mapping[str, Any], revision: str, name: str = "ingestion_pause") -> float:
    """Seconds of a timed interval of a ``--json`` run document."""
    for item in document["intervals"]:
        if item["revision"] == revision and item["name"] == name:
            return float(item["seconds"])
    raise BenchError(f"the run reported no {name} interval for {revision}")


def revision_steps(document: Mapping[str, Any], revision: str) -> list[dict[str, Any]]:
    """The steps of one revision in a ``--json`` run document."""
    for item in document["revisions"]:
        if item["revision"] == revision:
            steps: list[dict[str, Any]] = item["steps"]
            return steps
    raise BenchError(f"the run did not apply {revision}")


def steps_between(steps: Sequence[Mapping[str, Any]], begin: str, end: str) -> list[Mapping[str, Any]]:
    """The steps strictly between the one whose operation is ``begin`` and the one that is ``end``."""
    names = [str(s["operation"]) for s in steps]
    first, last = names.index(begin), names.index(end)
    return list(steps[first + 1 : last])


def journal_statements(journal: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], list[str]]:
    """(revision, step) -> the statements the journal says that step executed."""
    statements: dict[tuple[str, int], list[str]] = {}
    for entry in journal:
        if entry["kind"] == "step" and entry["status"] == "done" and entry["sql"]:
            statements[(str(entry["revision"]), int(entry["step"]))] = str(entry["sql"]).split(";\n")
    return statements


def rendered_statements(plan_document: Mapping[str, Any]) -> dict[tuple[str, int], list[str]]:
    """(revision, step) -> the SQL ``k2-migrate plan --json`` renders for that step (what it would run)."""
    return {
        (str(revision["revision"]), int(step["index"])): [str(s) for s in step["sql"]]
        for revision in plan_document["revisions"]
        for step in revision["steps"]
    }


PAUSE_BEGINS = "ingestion_pause: begins"
PAUSE_ENDS = "ingestion_pause: ends"


def plain_plan(
    run_document: Mapping[str, Any],
    journal: Sequence[Mapping[str, Any]],
    plan_document: Mapping[str, Any],
    *,
    revision: str | None = None,
    pause_only: bool = False,
) -> list[dict[str, str]]:
    """What a plain script must run to do what a k2-migrate run did, in the same order.

    The statements each step executed come from the journal. The reads that are not journaled but
    belong to the migration's work are added: a guard's ``count()`` of each table before (the SQL
    ``plan`` renders) and after (where the run document says the table went), each ``verify`` query,
    and a wait for each mutation. What is left out is k2-migrate's own bookkeeping: catalog lookups,
    the journal, the lock, captured definitions, the version table and the schema record.
    """
    statements = journal_statements(journal)
    rendered = rendered_statements(plan_document)
    guards: dict[str, list[str]] = {}
    for guard in run_document["guards"]:
        guards.setdefault(str(guard["label"]), []).append(str(guard["moved_to"]))
    items: list[dict[str, str]] = []
    for rev in run_document["revisions"]:
        if revision is not None and rev["revision"] != revision:
            continue
        steps = rev["steps"]
        if pause_only:
            steps = steps_between(steps, PAUSE_BEGINS, PAUSE_ENDS)
        for step in steps:
            key = (str(rev["revision"]), int(step["index"]))
            operation = str(step["operation"])
            label = f"{key[0]} [{key[1]}] {operation}"
            executed = [{"kind": "sql", "sql": sql, "label": label} for sql in statements.get(key, [])]
            if operation.endswith(" together") and len(executed) > 1:
                # k2-migrate drops Kafka tables at the same time, each on a client of its own, and views
                # one by one on its own client (DropObjects): so does the script.
                waiting = [e for e in executed if not e["sql"].startswith("DROP VIEW")]
                if len(waiting) > 1:
                    items.append(
                        {"kind": "together", "sql": json.dumps([e["sql"] for e in waiting]), "label": label}
                    )
                else:
                    items += waiting
                items += [e for e in executed if e["sql"].startswith("DROP VIEW")]
            elif operation.startswith("guard '"):
                items += executed
                items += [
                    {"kind": "query", "sql": sql, "label": label}
                    for sql in rendered.get(key, [])
                    if sql.startswith("SELECT count()")
                ]
            elif operation.startswith("check guard '"):
                name = operation.split("'")[1]
                items += [
                    {"kind": "query", "sql": f"SELECT count() FROM {table}", "label": label}
                    for table in guards.get(name, [])
                ]
                items += executed
            elif operation.startswith("check: "):
                sql = rendered[key][0].split("  -- must return 0")[0]
                items.append({"kind": "query", "sql": sql, "label": label})
            elif operation.startswith("mutation on "):
                items += executed
                database, table = operation.removeprefix("mutation on ").split(":", 1)[0].split(".", 1)
                items.append({"kind": "wait_mutations", "database": database, "table": table, "label": label})
            else:
                items += executed
    return items


def one_line(sql: str, width: int = 100) -> str:
    """A statement on one line, shortened to ``width``."""
    flat = " ".join(sql.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


# -- tables ---------------------------------------------------------------------------------------


@dataclass
class Table:
    """A table printed as Markdown, with notes under it."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        """Append a row (cells are turned into text)."""
        self.rows.append([str(c) for c in cells])

    def render(self) -> str:
        """The title, the table with aligned columns, and the notes."""
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))

        def line(cells: Sequence[str]) -> str:
            """One row of the table, padded to the column widths."""
            return "| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(cells)) + " |"

        out = [
            f"### {self.title}",
            "",
            line(self.headers),
            "|" + "|".join("-" * (w + 2) for w in widths) + "|",
        ]
        out.extend(line(row) for row in self.rows)
        if self.notes:
            out.append("")
            out.extend(f"- {note}" for note in self.notes)
        return "\n".join(out)


@dataclass(frozen=True)
class Bar:
    """A performance bar: what was measured against what is required."""

    name: str
    measured: str
    required: str
    passed: bool

    def render(self) -> str:
        """One line: PASS/FAIL, the bar, the figure."""
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.measured} (bar: {self.required})"


@dataclass
class Report:
    """What a benchmark prints: its tables and its bars."""

    title: str
    tables: list[Table] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def render(self) -> str:
        """Every table, then the bars."""
        parts = [f"## {self.title}", ""]
        parts.extend(table.render() + "\n" for table in self.tables)
        if self.bars:
            parts.append("Bars:")
            parts.extend(f"  {bar.render()}" for bar in self.bars)
            parts.append("")
        parts.extend(f"Note: {note}" for note in self.notes)
        parts.append(f"({self.title}: {self.seconds / 60:.1f} min, load average now {load_average():.2f})")
        return "\n".join(parts)


def fmt_s(seconds: float, digits: int = 3) -> str:
    """Seconds with a fixed number of decimals."""
    return f"{seconds:.{digits}f}"


def fmt_ms(seconds: float, digits: int = 1) -> str:
    """Seconds shown as milliseconds."""
    return f"{seconds * 1000:.{digits}f}"


def progress(message: str) -> None:
    """A progress line on stderr (the tables go to stdout)."""
    print(
        f"[bench {time.strftime('%H:%M:%S')} load {load_average():.2f}] {message}",
        file=sys.stderr,
        flush=True,
    )


def print_machine(work: Path | None = None) -> None:
    """The machine description, as the head of a report."""
    print("## Machine")
    print()
    for line in machine_lines(work):
        print(f"- {line}")
    print()


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
    """The ``main`` of a benchmark: parse options, describe the machine, measure, print the report."""
    options = parse_options(description, argv, runs=runs, quick_runs=quick_runs, prog=prog)
    with workspace(options) as work:
        print_machine(work)
        started = time.perf_counter()
        report = measure(options, work)
        report.seconds = time.perf_counter() - started
        print(report.render(), flush=True)
    return 0
