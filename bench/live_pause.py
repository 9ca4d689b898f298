"""The K2 move's ingestion pause as a server sees it: one process holds the engine, its consumers settled.

A server keeps its engine open, its Kafka consumers have long joined their groups and are consuming
when a migration runs in it. Measured that way: each run takes a fresh clone of the volume's broker
copy (its Kafka tables point at a live local Tansu broker; both K2 topics are fed 100 messages/s
throughout), and a :mod:`bench.worker` ``live_pause`` process opens the engine, waits until both
Kafka tables have delivered rows, runs ``k2-migrate -v upgrade head --json`` in that same process
(the entry point, on the same path and config file), waits until the re-created Kafka tables in
``k2`` deliver again, and closes. A separate ``k2-migrate`` process cannot measure this with the test
broker: its consumers would still be joining when the migration drops them
(../shared/clickhouse-notes.md, "Kafka on the test broker").

Dropping a Kafka table stops its streaming job and closes its librdkafka consumer; the engine's trace
log says how long each took ("Streaming jobs finished in N ms", "Consumers closed in N ms"), and the
config variants below run side by side, round by round. Every variant's config file is the shipped
``k2_migrations/backends/chdb.xml`` plus what the test broker needs (``session_timeout_ms`` 6000:
Tansu holds a group join for half the session timeout) and the trace log to a file.
"""

from __future__ import annotations

import itertools
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import common
from bench.common import Bar, Options, Report, Table, Template
from bench.pause import GROUPS, group_of
from bench.worker import FLUSHES_BEFORE

RUNS = 5
QUICK_RUNS = 2
PAUSE_GOAL_S = 0.25
SCALES: tuple[float, ...] = (1, 100)
QUICK_SCALES: tuple[float, ...] = (1,)
SESSION_TIMEOUT_MS = 6000

VARIANTS: dict[str, dict[str, str]] = {
    "chdb.xml as shipped (statistics 100 ms)": {},
    "statistics 3000 ms (librdkafka's default)": {"kafka/statistics_interval_ms": "3000"},
}
"""Config variants: settings (paths under ``<clickhouse>``) set over the shipped chdb.xml. The second
shows what chdb.xml's one setting buys. Tried and not kept (2026-11-30, 5 runs each at 1x and 100x):
``profiles/default/stream_poll_timeout_ms`` 100 (the streaming job still took 130-370 ms to stop under
a live feed: no clear gain), ``kafka/statistics_interval_ms`` 10 and ``kafka/fetch_wait_max_ms`` 100
(3 runs at 1x: no gain; the 1.1 s consumer close still came). For the freshness gap (2026-12-05, 2 runs
at 1x, load 10-13): ``profiles/default/stream_flush_interval_ms`` 1000 (the Kafka engine kept flushing
every 7.5 s: the gap before stayed 7.7 s, the migration's 13.1 s) and ``kafka/session_timeout_ms`` 3000
with heartbeats every 500 ms (the new group's first batch still came 8.0 s after the pause: the join is
not what it waits for, the first flush interval is) — neither shortened it."""

ENGINE_TIMINGS = {
    "stream_stop": re.compile(r"StorageKafka \(default\.(\w+)\): Streaming jobs finished in (\d+) ms"),
    "consumer_close": re.compile(r"StorageKafka \(default\.(\w+)\): Consumers closed in (\d+) ms"),
}
"""What the engine's trace log says of each dropped Kafka table (k2_003 drops ``default``'s)."""


@dataclass
class Run:
    """One migration in a held-open engine."""

    pause_s: float
    load: float
    settle_s: float
    groups: dict[str, float]  # group of steps -> ms
    between_ms: float
    engine_ms: dict[str, float]  # stream_stop / consumer_close -> ms, the slower of the two tables
    statements: list[tuple[str, float]]  # (statement, ms) the -v log gave for the pause
    gaps: Gaps
    summary: str  # the summary's freshness clause, since the last batch / every (bench.journal)


@dataclass
class Gaps:
    """The freshness a consumer of the bronze tables sees: the longest gap between flushed batches
    before the migration, and the gap the migration is in, split at the DDL pause."""

    before_s: float  # the longest gap between batches before the migration started
    during_s: float  # the longest gap overlapping the DDL pause
    to_pause_s: float  # from the last batch before the pause to its start (where in the flush cycle)
    pause_s: float  # the DDL pause, as the statement log places it
    to_batch_s: float  # from the pause's end to the re-created tables' first batch (join + first flush)


def gaps(flushes: list[float], log: list[list[Any]], pause_s: float) -> Gaps:
    """:class:`Gaps` from the batches' times and the ``-v`` records' (both from the migration's start)."""
    at = sorted(flushes)
    pairs = list(itertools.pairwise(at))
    records = [
        (float(when), match.group(1), float(match.group(2)))
        for when, line in log
        if (match := STATEMENT_RECORD.match(str(line)))
    ]
    drops = [when - s for when, sql, s in records if sql.startswith("DROP") and " default." in sql]
    views = [when for when, sql, _ in records if sql.startswith("CREATE MATERIALIZED VIEW")]
    start = min(drops) if drops else 0.0
    end = max(views) if views else start + pause_s
    before = [b - a for a, b in pairs if b <= 0]
    spanning = [(a, b) for a, b in pairs if a < end and b > start]
    nan = float("nan")
    if not spanning:
        return Gaps(max(before, default=nan), nan, nan, end - start, nan)
    a, b = max(spanning, key=lambda pair: pair[1] - pair[0])
    return Gaps(max(before, default=nan), b - a, start - a, end - start, b - end)


@dataclass
class Figure:
    """Every run of one (volume, variant)."""

    template: Template
    variant: str
    config: Path
    runs: list[Run] = field(default_factory=list)

    def pauses(self) -> list[float]:
        """The pause of every run."""
        return [r.pause_s for r in self.runs]

    def median_run(self) -> Run:
        """The run whose pause is the median (the lower middle one for an even count)."""
        return sorted(self.runs, key=lambda r: r.pause_s)[(len(self.runs) - 1) // 2]


def write_config(path: Path, overrides: dict[str, str], log: Path) -> Path:
    """chdb.xml with ``overrides``, the test broker's session timeout and a trace log to ``log``."""
    from k2_migrations.backends.embedded import DEFAULT_CONFIG

    root = ET.parse(DEFAULT_CONFIG).getroot()
    settings = {
        "kafka/session_timeout_ms": str(SESSION_TIMEOUT_MS),
        "kafka/heartbeat_interval_ms": str(SESSION_TIMEOUT_MS // 6),
        "logger/level": "trace",
        "logger/log": str(log),
        "logger/console": "0",
        **overrides,
    }
    for setting, value in settings.items():
        element = root
        for name in setting.split("/"):
            child = element.find(name)
            element = child if child is not None else ET.SubElement(element, name)
        element.text = value
    ET.ElementTree(root).write(path)
    return path


STATEMENT_RECORD = re.compile(r"(?s)(.*)  -- (?:failed after )?(\d+\.\d+) s$")
"""A ``k2_migrations.sql`` record at INFO (``-v``): the statement on one line, then its duration."""


def _statements(log: list[list[Any]]) -> list[tuple[str, float]]:
    """The ``-v`` records of the statements run inside the pause: (statement, ms), in order.

    The pause runs from the first drop in ``default`` (the Kafka tables, dropped together) to the
    last view re-created; the records are in the order the statements returned.
    """
    records = [
        (match.group(1), float(match.group(2)) * 1000)
        for _at, line in log
        if (match := STATEMENT_RECORD.match(str(line)))
    ]
    drops = [n for n, (sql, _) in enumerate(records) if sql.startswith("DROP") and " default." in sql]
    views = [n for n, (sql, _) in enumerate(records) if sql.startswith("CREATE MATERIALIZED VIEW")]
    if not drops or not views:
        return []
    return [(common.one_line(sql, 90), ms) for sql, ms in records[drops[0] : views[-1] + 1]]


def _one_run(figure: Figure, work: Path, bootstrap: str) -> None:
    """One migration in a held-open engine on a fresh clone of the figure's broker copy."""
    clone = work / "live"
    log = figure.config.with_suffix(".log")
    log.unlink(missing_ok=True)
    common.clone(figure.template.path, clone)
    try:
        load = common.load_average()
        report, _ = common.worker(
            "live_pause", str(clone), str(figure.config), env=common.k2_env(bootstrap), timeout=1800
        )
    finally:
        common.remove(clone)
    document = report["document"]
    steps = common.pause_steps(document)
    groups: dict[str, float] = {}
    for step in steps:
        key = group_of(str(step["operation"]))
        groups[key] = groups.get(key, 0.0) + float(step["elapsed_ms"])
    pause_s = common.interval(document, "k2_003")
    engine_ms: dict[str, float] = {}
    for name, pattern in ENGINE_TIMINGS.items():
        found = [float(m.group(2)) for m in pattern.finditer(log.read_text(errors="replace"))]
        engine_ms[name] = max(found) if found else float("nan")
    figure.runs.append(
        Run(
            pause_s=pause_s,
            load=load,
            settle_s=float(report["settle_s"]),
            groups=groups,
            between_ms=pause_s * 1000 - sum(float(s["elapsed_ms"]) for s in steps),
            engine_ms=engine_ms,
            statements=_statements(report["log"]),
            gaps=gaps([float(t) for t in report["flushes"]], report["log"], pause_s),
            summary=common.interval_freshness(document, "k2_003"),
        )
    )


def measure(options: Options, work: Path) -> Report:
    """Prepare the volumes, run every (volume, variant) in rounds, and build the tables."""
    report = Report("bench.live_pause: ingestion pause of the K2 move in a held-open engine, live broker")
    templates: list[Template] = []
    for scale in QUICK_SCALES if options.quick else SCALES:
        common.progress(f"live_pause: preparing {scale:g}x")
        try:
            templates.append(common.prepare_template(work, scale))
        except common.PrepareTimeout as exc:
            report.notes.append(f"{scale:g}x could not be prepared: {exc}")
            break
    configs = {
        variant: write_config(work / f"live-{n}.xml", overrides, work / f"live-{n}.log")
        for n, (variant, overrides) in enumerate(VARIANTS.items())
    }
    with common.kafka_broker() as bootstrap:
        figures = [
            Figure(common.broker_template(template, bootstrap), variant, config)
            for template in templates
            for variant, config in configs.items()
        ]
        for round_ in range(options.runs):
            for figure in figures:
                common.progress(
                    f"live_pause: round {round_ + 1}/{options.runs}: {figure.template.label} {figure.variant}"
                )
                _one_run(figure, work, bootstrap)
    for figure in figures:
        common.discard(figure.template)
    report.tables += [
        _pause_table(figures, options),
        _freshness_table(figures),
        _parts_table(figures),
        _statements_table(figures),
    ]
    report.bars += [
        Bar(
            f"live pause at {f.template.label}, {f.variant}",
            f"{common.median(f.pauses()):.3f} s",
            f"<= {PAUSE_GOAL_S} s",
            common.median(f.pauses()) <= PAUSE_GOAL_S,
        )
        for f in figures
        if f.variant == next(iter(VARIANTS))
    ]
    return report


def _pause_table(figures: Sequence[Figure], options: Options) -> Table:
    """The pause per volume and variant: every run, the median, and the load."""
    table = Table(
        f"Ingestion pause of k2_003, engine held open, consumers settled (seconds, {options.runs} runs)",
        ["volume", "engine config", "median", "runs (in order)", "settle s (median)", "load avg (1 min)"],
    )
    for f in figures:
        table.add(
            f.template.label,
            f.variant,
            common.fmt_s(common.median(f.pauses())),
            " ".join(f"{p:.3f}" for p in f.pauses()),
            f"{common.median([r.settle_s for r in f.runs]):.1f}",
            f"{common.median([r.load for r in f.runs]):.2f}",
        )
    table.notes.append(
        "pause = k2_003's ingestion_pause interval from `upgrade head --json`, run in the process holding "
        "the engine; settle = from the open to both Kafka tables having delivered rows"
    )
    return table


def _freshness_table(figures: Sequence[Figure]) -> Table:
    """What a reader of the bronze tables sees: the longest gap between batches, before and during."""
    table = Table(
        "Freshness: the longest gap between flushed batches in the bronze tables (seconds, median)",
        [
            "volume",
            "engine config",
            "before the migration",
            "the migration's",
            "added",
            "of which: last batch to pause",
            "DDL pause",
            "pause to first new batch",
            "runs: before / during",
            "runs: the summary's since last / every",
        ],
    )
    for f in figures:
        g = [r.gaps for r in f.runs]
        table.add(
            f.template.label,
            f.variant,
            f"{common.median([x.before_s for x in g]):.2f}",
            f"{common.median([x.during_s for x in g]):.2f}",
            f"{common.median([x.during_s - x.before_s for x in g]):+.2f}",
            f"{common.median([x.to_pause_s for x in g]):.2f}",
            f"{common.median([x.pause_s for x in g]):.2f}",
            f"{common.median([x.to_batch_s for x in g]):.2f}",
            " ".join(f"{x.before_s:.1f}/{x.during_s:.1f}" for x in g),
            " ".join(r.summary for r in f.runs),
        )
    table.notes.append(
        "a batch is a rise of the bronze tables' total rows (system.tables, sampled every 50 ms in the "
        "process holding the engine, across default and k2); 'before' is the longest gap among the "
        f"{FLUSHES_BEFORE} batches seen before the migration, 'the migration's' the longest gap that "
        "overlaps the DDL pause (from the first drop in default to the last view re-created); the "
        "summary's figures are k2_003's interval line (whole seconds, from system.parts when the pause "
        "began: the last batch to the pause's end, and the longest gap between batches in the 30 s before)"
    )
    return table


def _parts_table(figures: Sequence[Figure]) -> Table:
    """Where the pause goes: groups of steps (median ms), and inside the Kafka drop what the engine logged."""
    table = Table(
        "What the pause is made of (median ms; the Kafka drop itemised from the engine's trace log)",
        [
            "volume",
            "engine config",
            "drop 2 Kafka tables",
            "of which: stop streaming job",
            "of which: close consumer",
            *[name for name, key in GROUPS if key != "kafka_drop"],
            "between steps",
            "pause",
        ],
    )
    for f in figures:
        table.add(
            f.template.label,
            f.variant,
            f"{common.median([r.groups.get('kafka_drop', 0.0) for r in f.runs]):.0f}",
            f"{common.median([r.engine_ms['stream_stop'] for r in f.runs]):.0f}",
            f"{common.median([r.engine_ms['consumer_close'] for r in f.runs]):.0f}",
            *[
                f"{common.median([r.groups.get(key, 0.0) for r in f.runs]):.0f}"
                for _, key in GROUPS
                if key != "kafka_drop"
            ],
            f"{common.median([r.between_ms for r in f.runs]):.0f}",
            f"{common.median(f.pauses()) * 1000:.0f}",
        )
    table.notes.append(
        "the two Kafka tables are dropped together, each on a client of its own: the engine's figures are "
        "the slower table's; 'between steps' is k2-migrate's own work between the steps of the pause"
    )
    return table


def _statements_table(figures: Sequence[Figure]) -> Table:
    """The ``-v`` statement log of the median run at the smallest volume, shipped config."""
    figure = figures[0]
    run = figure.median_run()
    table = Table(
        f"Statements of the median run ({figure.template.label}, {figure.variant}, pause {run.pause_s:.3f} s) "
        "as `k2-migrate -v` logs them",
        ["statement", "ms"],
    )
    for statement, ms in run.statements:
        table.add(statement, f"{ms:.1f}")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.live_pause [--quick] [--runs N] [--work DIR] [--keep]``."""
    return common.run_main(
        "bench.live_pause",
        argv,
        measure,
        prog="python -m bench.live_pause",
        description=(__doc__ or "").split("\n\n")[0],
        runs=RUNS,
        quick_runs=QUICK_RUNS,
    )


if __name__ == "__main__":
    sys.exit(main())
