"""Overhead: press → photo, minus the GPU's own time and the wait behind other pictures.

100 presses from 20 users (5 replies each, pressed round robin, one press every
``PRESS_INTERVAL_S``: faster than the GPU draws, so its queue builds up) on a fake GPU
that draws one picture at a time in ``RUN_S``. Per picture, overhead = dispatch +
delivery (``benchmarks.timeline``): the time the bot kept an idle GPU from starting a
picture already asked for, plus the time from the picture being saved to the photo
reaching the Bot API. The same load runs against the bot with the original design
(polling /history every 100 ms, and every 1 s: ``benchmarks.baseline_bot``); ratios are
theirs over ours.

    .venv/bin/python -m benchmarks.overhead
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import trio

from benchmarks.press_load import LoadShape, run_press_load
from benchmarks.process import BASELINE_COMMAND, BOT_COMMAND
from benchmarks.report import Report, machine_line, percentile, print_report

__all__ = ["SHAPE", "VARIANTS", "measure"]

RUN_S: Final = 0.2  # fake GPU seconds per picture
PRESS_INTERVAL_S: Final = 0.12  # one press every 120 ms: 8.3 a second against 5 drawn
SHAPE: Final = LoadShape(users=20, presses_per_user=5, interval_s=PRESS_INTERVAL_S, run_s=RUN_S)
TARGET_P50_MS: Final = 20.0
TARGET_RATIO: Final = 20.0
VARIANTS: Final[tuple[tuple[str, Sequence[str]], ...]] = (
    ("websocket (ours)", BOT_COMMAND),
    ("poll 100 ms", (*BASELINE_COMMAND, "--poll", "0.1")),
    ("poll 1 s", (*BASELINE_COMMAND, "--poll", "1.0")),
)


async def measure() -> Report:
    """p50/p99 overhead of each variant, and how many times ours is below the pollers."""
    report = Report(f"overhead: {SHAPE.presses} presses, {SHAPE.users} users, GPU {RUN_S:g} s")
    p50: dict[str, float] = {}
    for name, command in VARIANTS:
        result = await run_press_load(SHAPE, command=command)
        overheads = [t.overhead_s * 1000 for t in result.timelines]
        p50[name] = report.add(f"p50 overhead, {name}", percentile(overheads, 50), "ms").value
        report.add(f"p99 overhead, {name}", percentile(overheads, 99), "ms")
        parts = {
            "dispatch": [t.dispatch_s for t in result.timelines],
            "delivery": [t.delivery_s for t in result.timelines],
            "delivery until GET /view": [t.notify_s for t in result.timelines],
        }
        for part, values in parts.items():
            report.add(f"  p50 {part}, {name}", percentile(values, 50) * 1000, "ms")
        report.add(f"  max dispatch, {name}", max(parts["dispatch"]) * 1000, "ms")
        if result.log_problems:
            report.notes.append(f"{name}: {result.log_problems} WARNING/ERROR lines in the log")
        length_s = result.last_photo_at - result.first_press_at
        report.add(f"  first press → last photo, {name}", length_s, "s")
    ours = p50[VARIANTS[0][0]]
    report.check(report.figures[0], f"≤ {TARGET_P50_MS:g} ms", passed=ours <= TARGET_P50_MS)
    for name, _ in VARIANTS[1:]:
        ratio = report.add(f"p50 ratio {name} / ours", p50[name] / ours, "×")
        if name == "poll 1 s":
            report.check(ratio, f"≥ {TARGET_RATIO:g}×", passed=ratio.value >= TARGET_RATIO)
    return report


def main() -> None:
    print(machine_line())
    print_report(trio.run(measure))


if __name__ == "__main__":
    main()
