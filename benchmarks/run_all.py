"""Run every benchmark, print every figure and ratio, and PASS/MISS against each target.

    .venv/bin/python -m benchmarks.run_all

Each benchmark starts its own fakes and bot processes on 127.0.0.1 and stops them; they
run one after another so they do not compete for the CPU. Not part of CI: the figures
depend on the machine and on whatever else it is doing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from benchmarks import (
    chat_load,
    fairness,
    flood,
    gpu_busy,
    memory,
    multi_gpu,
    overhead,
    placement,
    previews,
    send_budget,
    stats_report,
    streaming,
)
from benchmarks.report import Check, Report, machine_line, print_report

__all__ = ["BENCHMARKS", "main", "run_all"]

BENCHMARKS: Final[tuple[Callable[[], Awaitable[Report]], ...]] = (
    overhead.measure,
    gpu_busy.measure,
    chat_load.measure,
    flood.measure,
    memory.measure,
    multi_gpu.measure,
    stats_report.measure,
    send_budget.measure,
    fairness.measure,
    placement.measure,
    streaming.measure,
    previews.measure,
)
TOTAL_TIMEOUT_S: Final = 1200.0  # every wait inside has its own, far shorter, guard


async def run_all() -> list[Report]:
    """Each benchmark in turn, its report printed as soon as it is done.

    A benchmark that fails (a bot that does not start, a picture that never arrives)
    is reported as an error and the others still run.
    """
    reports: list[Report] = []
    with trio.fail_after(TOTAL_TIMEOUT_S):
        for measure in BENCHMARKS:
            try:
                report = await measure()
            except Exception as exc:
                report = Report(f"{measure.__module__}: ERROR", notes=[f"{exc!r}"])
            print_report(report)
            reports.append(report)
    return reports


def _summary(checks: list[Check]) -> None:
    print("\n== summary")
    width = max((len(check.figure.name) for check in checks), default=0)
    for check in checks:
        figure = check.figure
        print(f"  {check.verdict}  {figure.name:<{width}}  {figure.text():>10}  {check.target}")


def main() -> None:
    print(f"machine: {machine_line()}")
    started = time.monotonic()
    reports = trio.run(run_all)
    _summary([check for report in reports for check in report.checks])
    for report in reports:
        if report.title.endswith("ERROR"):
            print(f"  ERROR {report.title}")
    print(f"\nall benchmarks took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
