"""What the row-count guards cost at each volume: ``count()`` on each of the 8 K2 data tables.

A guard counts every table before the move and again after it. On MergeTree ``count()`` is answered from
part metadata (each part knows its row count), so it should not grow with the rows; on the collapsing
tables (silver: ReplacingMergeTree, the candles: AggregatingMergeTree) merges are stopped first, as the
guard does, and the count is then the sum over the active parts.

Each round opens a fresh clone of each prepared volume in a fresh process (``bench.worker counts``),
stops merges on the collapsing tables, and times per table: the first ``count()`` in the process, the
median of the following ones, and, for contrast, a query that must read one column of every row
(``count() ... WHERE NOT ignore(first column)``). Then the 8 counts in a row, as a guard runs them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import common
from bench.common import Options, Report, Table, Template

RUNS = 3
QUICK_RUNS = 1
REPEAT = 10
PLAIN_MERGE_TREE = ("bronze_trades_binance", "bronze_trades_kraken", "bronze_trades_dlq")


def measure(options: Options, work: Path) -> Report:
    """Count every table of every volume, in rounds."""
    report = Report("bench.guards: the cost of the guard counts (count() on the 8 K2 tables)")
    templates: list[Template] = []
    for scale in options.scales:
        common.progress(f"guards: preparing {scale:g}x")
        try:
            templates.append(common.prepare_template(work, scale))
        except common.PrepareTimeout as exc:
            report.notes.append(f"{scale:g}x could not be prepared: {exc}")
            break
    results: dict[float, list[dict[str, Any]]] = {t.scale: [] for t in templates}
    loads: dict[float, list[float]] = {t.scale: [] for t in templates}
    for round_ in range(options.runs):
        for template in templates:
            common.progress(f"guards: round {round_ + 1}/{options.runs}: {template.label}")
            clone = work / "counts"
            common.clone(template.path, clone)
            try:
                loads[template.scale].append(common.load_average())
                document, _ = common.worker("counts", str(clone), "default", str(REPEAT))
                results[template.scale].append(document)
            finally:
                common.remove(clone)
    per_table = Table(
        f"count() per table (ms; median of {REPEAT} per process x {options.runs} process(es); "
        "merges stopped on the collapsing tables first)",
        [
            "table",
            "engine",
            "volume",
            "rows",
            "active parts",
            "count()",
            "first count() in process",
            "one-column scan",
        ],
    )
    first = results[templates[0].scale][0]["tables"]
    for index, item in enumerate(first):
        for template in templates:
            runs = [r["tables"][index] for r in results[template.scale]]
            per_table.add(
                item["table"] if template is templates[0] else "",
                str(item["engine"]).split("(")[0] if template is templates[0] else "",
                template.label,
                f"{runs[-1]['rows']:,}",
                runs[-1]["parts"],
                common.fmt_ms(common.median([s for r in runs for s in r["count_s"][1:]]), 2),
                common.fmt_ms(common.median([r["count_s"][0] for r in runs]), 2),
                common.fmt_ms(common.median([s for r in runs for s in r["scan_s"]]), 1),
            )
    per_table.notes.append(
        "one-column scan: `SELECT count() FROM t WHERE NOT ignore(<first column>)`, which has to read that "
        "column of every row: what a guard would cost if count() were not answered from metadata"
    )
    report.tables.append(per_table)
    summary = Table(
        "A whole guard: the 8 counts in a row (ms, median), against the rows they count",
        ["volume", "rows in the 8 tables", "guard (8 count())", "8 one-column scans", "load avg (1 min)"],
    )
    for template in templates:
        runs = results[template.scale]
        rows = sum(int(t["rows"]) for t in runs[-1]["tables"])
        scans = [sum(common.median(t["scan_s"]) for t in r["tables"]) for r in runs]
        summary.add(
            template.label,
            f"{rows:,}",
            common.fmt_ms(common.median([s for r in runs for s in r["guard_s"]]), 1),
            common.fmt_ms(common.median(scans), 1),
            f"{common.median(loads[template.scale]):.2f}",
        )
    report.tables.append(summary)
    if len(templates) > 1:
        small, large = templates[0], templates[-1]
        growth = Table(
            f"Growth from {small.label} to {large.label} on plain MergeTree (the O(1) check)",
            ["table", "rows x", "count() time x", "scan time x"],
        )
        for index, item in enumerate(first):
            if item["table"] not in PLAIN_MERGE_TREE:
                continue

            def of(template: Template, key: str, i: int = index) -> float:
                """Median of the repeated timings ``key`` of table ``i`` at ``template``'s volume."""
                return common.median([s for r in results[template.scale] for s in r["tables"][i][key][1:]])

            rows_small = int(results[small.scale][-1]["tables"][index]["rows"])
            rows_large = int(results[large.scale][-1]["tables"][index]["rows"])
            growth.add(
                item["table"],
                f"{rows_large / max(rows_small, 1):.0f}",
                f"{of(large, 'count_s') / of(small, 'count_s'):.2f}",
                f"{of(large, 'scan_s') / of(small, 'scan_s'):.1f}",
            )
        growth.notes.append(
            "count() time x ~ 1 while rows x ~ the volume ratio: the guard's count does not grow with the "
            "rows; "
            "the scan column shows what reading the rows would cost instead"
        )
        report.tables.append(growth)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.guards [--quick] [--runs N] [--work DIR] [--keep]``."""
    return common.run_main(
        "bench.guards",
        argv,
        measure,
        prog="python -m bench.guards",
        description=(__doc__ or "").split("\n\n")[0],
        runs=RUNS,
        quick_runs=QUICK_RUNS,
    )


if __name__ == "__main__":
    sys.exit(main())
