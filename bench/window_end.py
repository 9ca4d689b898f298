"""What the k2_004 ``window_end`` fill costs, against the number of candles and the number of trades.

The fill is ``MATERIALIZE COLUMN window_end`` on each of the four OHLCV tables: a mutation that rewrites
one column of the candle tables' parts and reads nothing else. Its cost should follow the candles (rows
and parts of the OHLCV tables), not the trades. The demo data keeps the candles fixed while the trades
grow with the scale (every minute of a burst has trades at any scale), so:

- same candles, more trades: the 1x, 10x (and 100x) databases;
- more candles, same trades: the 1x database plus synthetic candles inserted straight into the four
  OHLCV tables (``bench.worker add_candles``: one more month of windows for made-up symbols; silver and
  bronze untouched).

Each run is ``k2-migrate upgrade head --json`` on a fresh clone; the fill time is the sum of the four
mutation steps' ``elapsed_ms``. k2-migrate waits for a mutation by polling ``system.mutations`` every
0.25 s, so a step that is not done at the first look takes at least 0.25 s; the raw fill time (the same
ADD COLUMN and ``MATERIALIZE COLUMN`` on a clone at k2_003, waited for with ``mutations_sync = 2``, in a
fresh process) is shown next to it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import common
from bench.common import Options, Report, Table, Template

RUNS = 5
QUICK_RUNS = 2
FULL_EXTRA_CANDLES = (100_000, 1_000_000)
QUICK_EXTRA_CANDLES = (100_000,)


@dataclass
class Dataset:
    """One prepared database and the runs on it."""

    name: str
    template: Template
    candles: int = 0
    parts: int = 0
    fill_s: list[float] = field(default_factory=list)
    per_table_ms: list[dict[str, float]] = field(default_factory=list)
    raw_s: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)


def _one_run(dataset: Dataset, work: Path) -> None:
    """One ``upgrade head --json`` on a fresh clone, then the same fill done raw on another fresh clone.

    The raw fill: ``k2-migrate upgrade k2_003`` on a new clone, then (in a fresh process) the ADD COLUMN
    statements k2_004 journaled and ``MATERIALIZE COLUMN window_end`` with ``mutations_sync = 2``, timed:
    the first fill of a column no part has, as in k2_004 (filling it again is cheaper).
    """
    clone = work / "window-end"
    common.clone(dataset.template.path, clone)
    try:
        dataset.loads.append(common.load_average())
        document = common.k2_migrate(clone, "upgrade", "head", "--json").json()
        adds = [
            str(sql)
            for s in common.revision_steps(document, "k2_004")
            if str(s["operation"]).startswith("add column")
            for sql in s["sql"]
        ]
        steps = [
            s
            for s in common.revision_steps(document, "k2_004")
            if str(s["operation"]).startswith("mutation on ")
        ]
        per_table = {
            str(s["operation"]).split(":")[0].removeprefix("mutation on k2."): float(s["elapsed_ms"])
            for s in steps
        }
        dataset.fill_s.append(sum(per_table.values()) / 1000)
        dataset.per_table_ms.append(per_table)
        common.remove(clone)
        common.clone(dataset.template.path, clone)
        common.k2_migrate(clone, "upgrade", "k2_003")
        add_file = work / "window-end-add-columns.json"
        add_file.write_text(json.dumps(adds))
        raw, _ = common.worker("mutate", str(clone), "k2", "1", str(add_file))
        dataset.raw_s.append(sum(t["seconds"][0] for t in raw["tables"]))
        dataset.candles = sum(int(t["rows"]) for t in raw["tables"])
        dataset.parts = sum(int(t["parts"]) for t in raw["tables"])
    finally:
        common.remove(clone)


def measure(options: Options, work: Path) -> Report:
    """Prepare the datasets, run each in rounds, and compare."""
    report = Report("bench.window_end: the k2_004 window_end fill against candles and trades")
    datasets: list[Dataset] = []
    base: Template | None = None
    for scale in options.scales:
        common.progress(f"window_end: preparing {scale:g}x")
        try:
            template = common.prepare_template(work, scale)
        except common.PrepareTimeout as exc:
            report.notes.append(f"{scale:g}x could not be prepared: {exc}")
            break
        datasets.append(Dataset(f"{template.label} trades, demo candles", template))
        if scale == 1:
            base = template
    if base is None:
        base = common.prepare_template(work, 1)
    for extra in QUICK_EXTRA_CANDLES if options.quick else FULL_EXTRA_CANDLES:
        common.progress(f"window_end: 1x plus {extra:,} candles per table")
        datasets.append(
            Dataset(f"1x trades, +{extra:,} candles per table", common.candles_template(base, extra))
        )
    for round_ in range(options.runs):
        for dataset in datasets:
            common.progress(f"window_end: round {round_ + 1}/{options.runs}: {dataset.name}")
            _one_run(dataset, work)
    table = Table(
        f"window_end fill (k2_004's 4 MATERIALIZE COLUMN steps), median of {options.runs} runs",
        [
            "dataset",
            "bronze trades",
            "silver trades",
            "candles (4 tables)",
            "candle parts",
            "fill: 4 steps, s",
            "min-max",
            "raw fill (sync), s",
            "load avg (1 min)",
        ],
    )
    for d in datasets:
        trades = d.template.rows["bronze_trades_binance"] + d.template.rows["bronze_trades_kraken"]
        table.add(
            d.name,
            f"{trades:,}",
            f"{d.template.rows['silver_trades']:,}",
            f"{d.candles:,}",
            d.parts,
            common.fmt_s(common.median(d.fill_s), 2),
            common.spread(d.fill_s),
            common.fmt_s(common.median(d.raw_s), 3),
            f"{common.median(d.loads):.2f}",
        )
    table.notes.append(
        "fill = sum of the elapsed_ms of k2_004's 4 `mutation on k2.ohlcv_*` steps "
        "(`upgrade head --json`); each step polls system.mutations from 10 ms, backing off to 0.25 s"
    )
    table.notes.append(
        "raw fill = on another fresh clone taken to k2_003, the 4 ADD COLUMN statements k2_004 journaled, "
        "then MATERIALIZE COLUMN window_end with mutations_sync = 2 on each table: the work itself, "
        "without the polling"
    )
    report.tables.append(table)
    per_table = Table(
        "Per table (median ms of the mutation step)",
        ["dataset", *[f"ohlcv_{w}" for w in ("1m", "5m", "1h", "1d")]],
    )
    for d in datasets:
        per_table.add(
            d.name,
            *[
                f"{common.median([run.get(f'ohlcv_{w}', float('nan')) for run in d.per_table_ms]):.0f}"
                for w in ("1m", "5m", "1h", "1d")
            ],
        )
    report.tables.append(per_table)
    trade_sets = [d for d in datasets if d.name.endswith("demo candles")]
    if len(trade_sets) > 1:
        small, large = trade_sets[0], trade_sets[-1]
        trades_x = large.template.rows["bronze_trades_binance"] / small.template.rows["bronze_trades_binance"]
        report.notes.append(
            f"same candles, {trades_x:.0f}x the trades ({small.template.label} -> {large.template.label}): "
            f"fill {common.median(small.fill_s):.2f} s -> {common.median(large.fill_s):.2f} s, "
            f"raw {common.median(small.raw_s):.3f} s -> {common.median(large.raw_s):.3f} s"
        )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.window_end [--quick] [--runs N] [--work DIR] [--keep]``."""
    return common.run_main(
        "bench.window_end",
        argv,
        measure,
        prog="python -m bench.window_end",
        description=(__doc__ or "").split("\n\n")[0],
        runs=RUNS,
        quick_runs=QUICK_RUNS,
    )


if __name__ == "__main__":
    sys.exit(main())
