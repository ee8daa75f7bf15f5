"""Tables, target checks and the markdown report the benchmarks produce."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

__all__ = ["Check", "Section", "Table", "fmt", "median", "ratio"]


def median(values: list[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else math.nan


def fmt(value: float, digits: int = 1) -> str:
    """A number for a table cell: thousands separators, ``—`` for NaN."""
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞"
    return f"{value:,.{digits}f}"


def ratio(value: float, reference: float) -> str:
    """``value / reference`` as ``"1.23x"``, or ``—`` when either is missing."""
    if math.isnan(value) or math.isnan(reference) or reference == 0:
        return "—"
    if math.isinf(value) or math.isinf(reference):
        return "∞" if math.isinf(value) and not math.isinf(reference) else "—"
    return f"{value / reference:.2f}x"


@dataclass(frozen=True, slots=True)
class Check:
    """One target from the issue, measured: PASS or FAIL with the numbers behind it."""

    label: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.label}: {self.detail}"


@dataclass(slots=True)
class Table:
    """A side-by-side table (markdown, which also reads well in a terminal)."""

    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    caption: str = ""

    def add(self, *cells: str) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, the table {len(self.columns)} columns")
        self.rows.append(list(cells))

    def markdown(self) -> str:
        widths = [
            max(len(col), *(len(row[i]) for row in self.rows)) if self.rows else len(col)
            for i, col in enumerate(self.columns)
        ]

        def line(cells: list[str]) -> str:
            padded = (
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
            )
            return "| " + " | ".join(padded) + " |"

        rule = (
            "|"
            + "|".join(
                "-" * (w + 1) + ":" if i else ":" + "-" * (w + 1) for i, w in enumerate(widths)
            )
            + "|"
        )
        head = [f"*{self.caption}*", ""] if self.caption else []
        return "\n".join([*head, line(self.columns), rule, *(line(r) for r in self.rows)])


@dataclass(slots=True)
class Section:
    """One benchmark's results: what was measured, the tables, notes and target checks."""

    title: str
    intro: str
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    def markdown(self) -> str:
        parts = [f"## {self.title}", "", self.intro, ""]
        for table in self.tables:
            parts += [table.markdown(), ""]
        if self.notes:
            parts += [f"- {note}" for note in self.notes] + [""]
        if self.checks:
            parts += ["```", *(check.line() for check in self.checks), "```", ""]
        parts.append(f"_(this section took {self.seconds:.0f} s)_")
        return "\n".join(parts) + "\n"
