"""Memory: the bot's peak resident memory while it delivers 100 pictures of 2 MB each.

The overhead load (``benchmarks.overhead``: 100 presses from 20 users, 0.2 s GPU) with
the fake ComfyUI's pictures padded to ``IMAGE_BYTES`` of random (incompressible) bytes.
The figure is the kernel's high-water mark of the bot process's resident set
(``VmHWM`` in ``/proc/<pid>/status``), read after the last photo arrived. Baseline in the
same run: the same process idle, read after start-up and the users' first replies,
before the first press.

    .venv/bin/python -m benchmarks.memory
"""

from __future__ import annotations

import dataclasses
from typing import Final

import trio

from benchmarks.overhead import SHAPE as OVERHEAD_SHAPE
from benchmarks.press_load import run_press_load
from benchmarks.report import Report, machine_line, print_report

__all__ = ["measure"]

IMAGE_BYTES: Final = 2 * 1024 * 1024
SHAPE: Final = dataclasses.replace(OVERHEAD_SHAPE, image_bytes=IMAGE_BYTES)
TARGET_PEAK_MB: Final = 150.0
KB_PER_MB: Final = 1024


async def measure() -> Report:
    """Peak RSS under the 2 MB load against the same process idle."""
    report = Report(f"memory: {SHAPE.presses} pictures of {IMAGE_BYTES // 2**20} MB")
    result = await run_press_load(SHAPE)
    idle_mb = result.idle_hwm_kb / KB_PER_MB
    idle = report.add("peak RSS idle (same process, before the presses)", idle_mb, "MB")
    peak = report.add("peak RSS under load", result.peak_hwm_kb / KB_PER_MB, "MB")
    report.add("smallest photo received", result.smallest_photo_bytes / 2**20, "MB")
    report.add("growth under load", peak.value - idle.value, "MB")
    report.add("ratio load / idle", peak.value / idle.value, "×")
    if result.log_problems:
        report.notes.append(f"{result.log_problems} WARNING/ERROR lines in the log")
    report.check(peak, f"≤ {TARGET_PEAK_MB:g} MB", passed=peak.value <= TARGET_PEAK_MB)
    return report


def main() -> None:
    print(machine_line())
    print_report(trio.run(measure))


if __name__ == "__main__":
    main()
