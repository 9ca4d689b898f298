"""How long the K2 move (k2_003) pauses ingestion, at 1x, 10x and 100x the handoff's volumes.

The pause runs from the first ingest view gone to the last one back: ``k2-migrate upgrade head --json``
reports it as the ``ingestion_pause`` interval of k2_003. Each run is a fresh ``k2-migrate`` process on a
fresh clone of a prepared database (:mod:`bench.common`), with the Kafka tables pointing at
``127.0.0.1:9``, where nothing listens. Runs are interleaved (round after round over every volume) so
load from other processes spreads over all figures. The pause with a live broker is measured the way a
server runs, one process holding the engine with its consumers settled: :mod:`bench.live_pause` (a
fresh process cannot measure it: its consumers are still joining when the migration drops them).

Also printed: where the pause goes (steps grouped), the statements that run during it, taken from the
journal (``k2-migrate log --json``), and the same statements replayed by a plain clickhouse-connect
script in a fresh process, timed one by one.

Bars: the pause is under 1 s at 1x, and at 100x no more than 1.2 times the pause at 1x.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import common
from bench.common import Bar, Options, Report, Table, Template

RUNS = 5
QUICK_RUNS = 2
PAUSE_BAR_S = 1.0
GROWTH_BAR = 1.2

UNREACHABLE = "unreachable (127.0.0.1:9)"

GROUPS: tuple[tuple[str, str], ...] = (
    ("drop 2 Kafka tables", "kafka_drop"),
    ("drop 10 views", "view_drop"),
    ("guard: count 8", "guard"),
    ("move 8 tables", "move"),
    ("check guard", "check"),
    ("re-create 2 Kafka + 10 views", "recreate"),
)


def group_of(operation: str) -> str:
    """Which group of the pause a step belongs to, from its operation."""
    if operation.startswith("drop ") and "_queue" in operation:
        return "kafka_drop"
    if operation.startswith("drop "):
        return "view_drop"
    if operation.startswith("guard '"):
        return "guard"
    if operation.startswith("move "):
        return "move"
    if operation.startswith("check guard"):
        return "check"
    if operation.startswith("re-create "):
        return "recreate"
    return "other"


@dataclass
class Sample:
    """One ``upgrade head`` run."""

    pause_s: float
    wall_s: float
    elapsed_s: float
    load: float
    steps: dict[str, float]  # operation -> ms, the steps inside the k2_003 pause
    groups: dict[str, float]  # group -> ms


@dataclass
class Figure:
    """Every run of one (volume, variant)."""

    template: Template
    variant: str
    brokers: str
    samples: list[Sample] = field(default_factory=list)
    document: dict[str, Any] | None = None
    journal: list[dict[str, Any]] | None = None

    def median(self, attribute: str) -> float:
        """Median of one attribute over the runs."""
        return common.median([float(getattr(s, attribute)) for s in self.samples])

    def values(self, attribute: str) -> list[float]:
        """One attribute of every run."""
        return [float(getattr(s, attribute)) for s in self.samples]


def _one_run(figure: Figure, work: Path, keep_journal: bool) -> None:
    """One ``upgrade head --json`` on a fresh clone of the figure's template; keeps the journal if asked."""
    clone = work / "run"
    common.clone(figure.template.path, clone)
    try:
        load = common.load_average()
        done = common.k2_migrate(clone, "upgrade", "head", "--json", brokers=figure.brokers)
        document = done.json()
        steps = common.pause_steps(document)
        step_ms = {str(s["operation"]): float(s["elapsed_ms"]) for s in steps}
        groups: dict[str, float] = {}
        for operation, ms in step_ms.items():
            groups[group_of(operation)] = groups.get(group_of(operation), 0.0) + ms
        figure.samples.append(
            Sample(
                pause_s=common.interval(document, "k2_003"),
                wall_s=done.seconds,
                elapsed_s=float(document["elapsed_s"]),
                load=load,
                steps=step_ms,
                groups=groups,
            )
        )
        figure.document = document
        if keep_journal:
            figure.journal = common.journal_of_last_run(clone, figure.brokers)
    finally:
        common.remove(clone)


def _replay_pause(
    figure: Figure, plan_document: Mapping[str, Any], work: Path, runs: int
) -> list[dict[str, Any]]:
    """The pause's statements (from the journal), replayed by a plain script on fresh clones."""
    assert figure.document is not None and figure.journal is not None
    items = [{"kind": "sql", "sql": "CREATE DATABASE IF NOT EXISTS k2 ENGINE = Atomic", "label": "setup"}]
    items += common.plain_plan(
        figure.document, figure.journal, plan_document, revision="k2_003", pause_only=True
    )
    plan_file = work / "pause-plan.json"
    plan_file.write_text(json.dumps(items))
    results = []
    for _ in range(runs):
        clone = work / "replay"
        common.clone(figure.template.path, clone)
        try:
            report, _ = common.worker("replay", str(clone), str(plan_file))
            results.append(report)
        finally:
            common.remove(clone)
    return results


def _plan_document(template: Template, work: Path) -> dict[str, Any]:
    """``k2-migrate plan head --json`` on a clone: the SQL each step would run (guard counts, checks)."""
    clone = work / "plan"
    common.clone(template.path, clone)
    try:
        return common.k2_migrate(clone, "plan", "head", "--json", brokers=template.brokers).json()
    finally:
        common.remove(clone)


def _reads_rows(statement: str) -> str:
    """Whether a statement of the pause reads table data, from what it is."""
    text = " ".join(statement.split()).upper()
    if text.startswith("SELECT COUNT() FROM"):
        return "no: count() from part metadata"
    if text.startswith(("DROP VIEW", "DROP TABLE")):
        return "no (metadata; waits for the Kafka consumer)" if "_QUEUE" in text else "no (metadata)"
    if text.startswith(("SYSTEM STOP MERGES", "SYSTEM START MERGES")):
        return "no (merge scheduler)"
    if text.startswith("RENAME TABLE"):
        return "no (metadata)"
    if text.startswith("CREATE TABLE") and "ENGINE = KAFKA" in text:
        return "no (metadata)"
    if text.startswith("CREATE MATERIALIZED VIEW") and " POPULATE" not in text:
        return "no (no POPULATE)"
    return "YES"


def measure(options: Options, work: Path) -> Report:
    """Prepare the volumes, run every (volume, variant) in rounds, and build the tables."""
    report = Report("bench.pause: ingestion pause of the K2 move (k2_003)")
    templates: list[Template] = []
    for scale in options.scales:
        common.progress(f"pause: preparing {scale:g}x")
        try:
            templates.append(common.prepare_template(work, scale))
        except common.PrepareTimeout as exc:
            report.notes.append(f"{scale:g}x could not be prepared: {exc}; larger volumes were not tried")
            break
    if not templates:
        raise common.BenchError("no volume could be prepared")
    figures = [Figure(template, UNREACHABLE, common.UNREACHABLE_BROKERS) for template in templates]
    for round_ in range(options.runs):
        for figure in figures:
            common.progress(f"pause: round {round_ + 1}/{options.runs}: {figure.template.label}")
            _one_run(figure, work, keep_journal=round_ == options.runs - 1)
    replays: dict[str, list[dict[str, Any]]] = {}
    if not options.quick:  # evidence for the bars; the quick smoke run leaves it out
        common.progress("pause: replaying the pause's statements in a plain script")
        plan_document = _plan_document(templates[0], work)
        replays = {UNREACHABLE: _replay_pause(figures[0], plan_document, work, options.runs)}
    report.tables.append(_prepared_table(templates))
    report.tables.append(_pause_table(figures, options))
    report.tables.append(_groups_table(figures))
    report.tables.append(_statements_table(figures, templates))
    if replays:
        report.tables.append(_replay_table(replays, figures))
    report.bars.extend(_bars(figures, templates))
    return report


def _prepared_table(templates: Sequence[Template]) -> Table:
    """The prepared volumes: rows, time to prepare, size."""
    table = Table(
        "Prepared databases (K2 baseline by `k2-migrate upgrade k2_001`, then demo_data.load, "
        "each its own process)",
        [
            "volume",
            "bronze binance rows",
            "silver rows",
            "candle rows (4 tables)",
            "baseline s",
            "load s",
            "size MB",
        ],
    )
    for t in templates:
        candles = sum(v for k, v in t.rows.items() if k.startswith("ohlcv_"))
        table.add(
            t.label,
            f"{t.rows['bronze_trades_binance']:,}",
            f"{t.rows['silver_trades']:,}",
            candles,
            f"{t.baseline_s:.1f}",
            f"{t.load_s:.1f}" + (" (reused)" if t.reused else ""),
            f"{t.size_bytes / 1024**2:,.0f}",
        )
    return table


def _pause_table(figures: Sequence[Figure], options: Options) -> Table:
    """The pause per volume and variant, with the whole run's wall time and the load."""
    table = Table(
        f"Ingestion pause of k2_003 (median of {options.runs} runs, seconds)",
        [
            "volume",
            "Kafka tables point at",
            "pause",
            "min-max",
            "upgrade head (process wall)",
            "load avg (1 min)",
        ],
    )
    for f in figures:
        table.add(
            f.template.label,
            f.variant,
            common.fmt_s(f.median("pause_s")),
            common.spread(f.values("pause_s")),
            common.fmt_s(f.median("wall_s"), 2),
            f"{f.median('load'):.2f}",
        )
    table.notes.append(
        "pause = k2_003's ingestion_pause interval from `upgrade head --json`: first ingest view dropped "
        "to last "
        "one re-created; each run a fresh k2-migrate process on a fresh clone"
    )
    return table


def _groups_table(figures: Sequence[Figure]) -> Table:
    """The pause split into groups of steps, and the time between steps."""
    table = Table(
        "Where the k2_003 pause goes (median ms per group of steps; 'between steps' = pause - sum of steps)",
        ["volume", "variant", *[name for name, _ in GROUPS], "between steps", "pause"],
    )
    for f in figures:
        cells = [common.median([s.groups.get(key, 0.0) for s in f.samples]) for _, key in GROUPS]
        between = common.median([s.pause_s * 1000 - sum(s.steps.values()) for s in f.samples])
        table.add(
            f.template.label,
            f.variant,
            *[f"{c:.0f}" for c in cells],
            f"{between:.0f}",
            f"{f.median('pause_s') * 1000:.0f}",
        )
    table.notes.append(
        "'between steps' is k2-migrate's own work around each step: its bookkeeping and progress output (the "
        "catalog reads each operation makes to stay idempotent are inside the steps; journal rows are held "
        "back, and only the guard's baseline is appended during the pause)"
    )
    return table


def _statements_table(figures: Sequence[Figure], templates: Sequence[Template]) -> Table:
    """Every statement of the pause (from the journal), whether it reads rows, and its step's time."""
    small, large = templates[0], templates[-1]
    reference = next(f for f in figures if f.template.scale == large.scale and f.variant == UNREACHABLE)
    assert reference.journal is not None
    chosen = [f for f in figures if f.template.scale in {small.scale, large.scale}]
    table = Table(
        f"Statements run during the k2_003 pause (journal of the last {large.label} run; median ms per step)",
        ["step", "statement (from `k2-migrate log --json`)", "reads rows?"]
        + [f"{f.template.label} {f.variant.split(' ')[0]}" for f in chosen],
    )
    statements = common.journal_statements(reference.journal)
    steps = common.pause_steps(reference.document or {})
    scanning = 0
    for step in steps:
        operation = str(step["operation"])
        sqls = statements.get(("k2_003", int(step["index"])), [])
        if operation.startswith("guard '"):
            sqls = [*sqls, "SELECT count() FROM <each of the 8 tables>"]
        if operation.startswith("check guard '"):
            sqls = ["SELECT count() FROM <each of the 8 tables, in k2>", *sqls]
        timings = [
            f"{common.median([s.steps.get(operation, float('nan')) for s in f.samples]):.1f}" for f in chosen
        ]
        for i, sql in enumerate(sqls or ["(none)"]):
            verdict = _reads_rows(sql) if sqls else "-"
            scanning += verdict == "YES"
            table.add(
                f"[{step['index']}] {operation[:48]}" if i == 0 else "",
                common.one_line(sql, 90),
                verdict,
                *(timings if i == 0 else [""] * len(chosen)),
            )
    table.notes.append(
        "count() in a guard is answered from part metadata (bench.guards: the same few ms at every volume); "
        "RENAME, DROP and CREATE are metadata operations; no view is created with POPULATE"
    )
    table.notes.append(
        f"statements that read table rows during the pause: {scanning}"
        + (" — nothing scans data" if scanning == 0 else " — SEE 'YES' ROWS")
    )
    table.notes.append(
        "not journaled (k2-migrate's own reads): system.tables lookups before each step, and the "
        "journal insert"
    )
    return table


def _replay_table(replays: Mapping[str, list[dict[str, Any]]], figures: Sequence[Figure]) -> Table:
    """The pause's statements in a plain script, per k2-migrate step, against k2-migrate's pause."""
    variants = list(replays)
    runs = len(replays[variants[0]])
    table = Table(
        "The pause's statements run by a plain clickhouse-connect script in a fresh process "
        f"(smallest volume, median ms of {runs} runs, summed per k2-migrate step)",
        ["k2-migrate step", "statements", *variants],
    )
    per_step: dict[str, dict[str, list[float]]] = {}
    counts: dict[str, int] = {}
    for variant in variants:
        for run in replays[variant]:
            sums: dict[str, float] = {}
            for item in run["items"][1:]:  # the first is CREATE DATABASE k2: k2_002, before the pause
                label = str(item["label"])
                sums[label] = sums.get(label, 0.0) + float(item["seconds"])
                if variant == variants[0] and run is replays[variant][0]:
                    counts[label] = counts.get(label, 0) + int(item.get("statements", 1))
            for label, seconds in sums.items():
                per_step.setdefault(label, {}).setdefault(variant, []).append(seconds)
    for label, by_variant in per_step.items():
        cells = [f"{common.median(by_variant.get(v, [])) * 1000:.1f}" for v in variants]
        table.add(label.split("] ", 1)[-1][:60], counts.get(label, 0), *cells)
    totals = {v: [sum(float(i["seconds"]) for i in r["items"][1:]) for r in replays[v]] for v in variants}
    table.add(
        "TOTAL (statements only)",
        sum(counts.values()),
        *[f"{common.median(totals[v]) * 1000:.0f}" for v in variants],
    )
    smallest = min(f.template.scale for f in figures)
    table.add(
        "k2-migrate's pause, same volume",
        "",
        *[f"{_figure(figures, v, smallest).median('pause_s') * 1000:.0f}" for v in variants],
    )
    table.notes.append(
        "each replay: a fresh clone at k2_001, `CREATE DATABASE k2` (untimed), then the pause's "
        "statements in the "
        "journal's order plus the guard counts; the Kafka consumers start when the process opens the engine, "
        "so a drop soon after the open can wait longer than one a few seconds later"
    )
    return table


def _figure(figures: Sequence[Figure], variant: str, scale: float) -> Figure:
    """The figure of one variant at one volume."""
    return next(f for f in figures if f.variant == variant and f.template.scale == scale)


def _bars(figures: Sequence[Figure], templates: Sequence[Template]) -> list[Bar]:
    """The pause bars: under 1 s at 1x, and at most 1.2 times that at the largest volume."""
    bars: list[Bar] = []
    one = next((t for t in templates if t.scale == 1), None)
    large = templates[-1]
    for variant in (UNREACHABLE,):
        by_scale = {f.template.scale: f for f in figures if f.variant == variant}
        if one is not None and 1 in by_scale:
            pause_1x = by_scale[1].median("pause_s")
            bars.append(
                Bar(
                    f"pause at 1x, Kafka {variant}",
                    f"{pause_1x:.3f} s",
                    f"< {PAUSE_BAR_S:.0f} s",
                    pause_1x < PAUSE_BAR_S,
                )
            )
        base = templates[0] if one is None else one
        if large.scale > base.scale and large.scale in by_scale and base.scale in by_scale:
            ratio = by_scale[large.scale].median("pause_s") / by_scale[base.scale].median("pause_s")
            label = f"pause at {large.label} / pause at {base.label}"
            if large.scale != 100:
                label += f" (largest volume prepared: {large.label}, not 100x)"
            bars.append(
                Bar(f"{label}, Kafka {variant}", f"{ratio:.2f}", f"<= {GROWTH_BAR}", ratio <= GROWTH_BAR)
            )
    return bars


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.pause [--quick] [--runs N] [--work DIR] [--keep]``."""
    return common.run_main(
        "bench.pause",
        argv,
        measure,
        prog="python -m bench.pause",
        description=(__doc__ or "").split("\n\n")[0],
        runs=RUNS,
        quick_runs=QUICK_RUNS,
    )


if __name__ == "__main__":
    sys.exit(main())
