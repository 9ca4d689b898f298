"""What a benchmark prints: Markdown tables of medians, the bars it checks, and the report around them."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.machine import load_average


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """``min-max`` of the values, for next to a median."""
    return f"{min(values):.3f}-{max(values):.3f}" if values else "-"


def fmt_s(seconds: float, digits: int = 3) -> str:
    """Seconds with a fixed number of decimals."""
    return f"{seconds:.{digits}f}"


def fmt_ms(seconds: float, digits: int = 1) -> str:
    """Seconds shown as milliseconds."""
    return f"{seconds * 1000:.{digits}f}"


def one_line(sql: str, width: int = 100) -> str:
    """A statement on one line, shortened to ``width``."""
    flat = " ".join(sql.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


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
        widths = [max(len(row[i]) for row in [self.headers, *self.rows]) for i in range(len(self.headers))]

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
