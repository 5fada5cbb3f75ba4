"""Figures, targets and how they are printed; percentiles; the machine line.

A benchmark returns a :class:`Report`: the figures it measured (each a number with a
unit, measured in that run) and the checks of some of them against their targets.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Check", "Figure", "Report", "machine_line", "percentile", "print_report"]


def percentile(values: Sequence[float], q: float) -> float:
    """The *q*-th percentile (0-100), linear between the two nearest ranks (numpy's default).

    Raises:
        ValueError: *values* is empty.
    """
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured number, e.g. ``Figure("p50 overhead, websocket", 4.1, "ms")``."""

    name: str
    value: float
    unit: str

    def text(self) -> str:
        return f"{_number(self.value)} {self.unit}".rstrip()


@dataclass(frozen=True, slots=True)
class Check:
    """A figure against its target: ``Check(figure, "≤ 20 ms", passed=True)``."""

    figure: Figure
    target: str
    passed: bool

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "MISS"


@dataclass(slots=True)
class Report:
    """What one benchmark measured: figures, checks against targets, and notes."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: float, unit: str) -> Figure:
        figure = Figure(name, value, unit)
        self.figures.append(figure)
        return figure

    def check(self, figure: Figure, target: str, *, passed: bool) -> None:
        self.checks.append(Check(figure, target, passed))


def _number(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if float(value).is_integer():  # counts (an int has no is_integer before 3.12)
        return f"{value:.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_report(report: Report) -> None:
    """Every figure, then every check with PASS/MISS."""
    print(f"\n== {report.title}")
    width = max((len(f.name) for f in report.figures), default=0)
    for figure in report.figures:
        print(f"  {figure.name:<{width}}  {figure.text()}")
    for check in report.checks:
        figure = check.figure
        print(f"  [{check.verdict}] {figure.name} = {figure.text()} (target {check.target})")
    for note in report.notes:
        print(f"  note: {note}")


def machine_line() -> str:
    """``Intel(R) Xeon(R) ..., 2 cores, Python 3.11.7, Linux 6.1`` from /proc/cpuinfo."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{model}, {cores} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
