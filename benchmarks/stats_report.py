"""The picture report over a million events: ``python -m bot stats --since 30d``.

A fresh database (migrated as the bot does) gets ``EVENTS`` picture events spread over
the last ``WINDOW_DAYS`` days, all inside the window: every third a press, then a
picture (with a duration) or a failure, over six personas. Each variant then runs in a
fresh Python process of its own, which reports its wall time and its memory growth:
the kernel's high-water mark of the resident set (``VmHWM``) after the report, minus the
resident set just before it (the mark is reset there through ``/proc/self/clear_refs``).

- **ours**: ``stats_main`` as the command line runs it (SQL aggregation);
- **baseline**: the original Python aggregation, kept as the tests' reference: every row
  of the window loaded and counted in Python (``tests/reference_report.py``).

Both print the same text (checked here). Targets: under 1 s and under 20 MB growth.

    .venv/bin/python -m benchmarks.stats_report
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import trio

from benchmarks.report import Report, machine_line, print_report

__all__ = ["measure"]

EVENTS: Final = 1_000_000
WINDOW_DAYS: Final = 30
PERSONAS: Final = ("alice", "max", "vera", "lena", "oleg", "nika")
REASONS: Final = ("no_quota", "generation_error", "send_error", "busy", "cancelled")
TARGET_S: Final = 1.0
TARGET_GROWTH_MB: Final = 20.0
KB_PER_MB: Final = 1024
CHILD_TIMEOUT_S: Final = 300.0
SEED: Final = 9


def _rows(now: datetime) -> Iterator[tuple[str, str, int, str, str | None, int | None]]:
    """``EVENTS`` rows (ts, event, user_id, persona, reason, duration_ms), oldest first."""
    rng = random.Random(SEED)
    start = now - timedelta(days=WINDOW_DAYS) + timedelta(minutes=1)
    step = (now - start) / EVENTS
    for i in range(EVENTS):
        ts = (start + step * i).isoformat(timespec="milliseconds")
        persona = PERSONAS[i // 3 % len(PERSONAS)]
        user = rng.randrange(1, 5000)
        if i % 3 == 0:
            yield ts, "image_requested", user, persona, None, None
        elif rng.random() < 0.85:
            yield ts, "image_generated", user, persona, None, rng.randrange(2_000, 90_000)
        else:
            yield ts, "image_failed", user, persona, rng.choice(REASONS), None


def fill(path: Path, now: datetime) -> None:
    """A migrated database at *path* holding the events (one transaction)."""
    from store import open_store

    open_store(path).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO events_analytics (ts, event, user_id, chat_id, persona, reason,"
            " duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (ts, ev, user, user, persona, reason, ms)
                for ts, ev, user, persona, reason, ms in _rows(now)
            ),
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _child(variant: str, path: Path, now: datetime) -> None:
    """Run one variant in this process; print {"seconds", "growth_kb", "text"} as JSON."""
    from bot.__main__ import build_parser
    from bot.ops.report import format_text, parse_since
    from bot.ops.stats import stats_main
    from store.stats import open_readonly
    from tests.reference_report import image_events, summarize

    out = io.StringIO()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS from here
    before = _kb("VmRSS")
    started = time.perf_counter()
    if variant == "ours":
        args = build_parser().parse_args(["stats", "--since", "30d", "--database", str(path)])
        with contextlib.redirect_stdout(out):
            code = stats_main(args, now=lambda: now)
        if code != 0:
            raise RuntimeError(f"stats exited {code}")
    else:
        since = parse_since("30d", now=now)
        db = open_readonly(path)
        rows = image_events(db, since=since, until=now)
        db.close()
        out.write(format_text(summarize(rows, since=since, until=now)) + "\n")
    seconds = time.perf_counter() - started
    growth = _kb("VmHWM") - before
    print(json.dumps({"seconds": seconds, "growth_kb": growth, "text": out.getvalue()}))


async def _run_child(variant: str, path: Path, now: datetime) -> dict[str, object]:
    command = [sys.executable, "-m", "benchmarks.stats_report", "--child", variant]
    command += ["--database", str(path), "--now", now.isoformat()]
    with trio.fail_after(CHILD_TIMEOUT_S):
        done = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


async def measure() -> Report:
    """Time and memory growth of the report, ours against the Python aggregation."""
    report = Report(f"stats report: {EVENTS:,} events, stats --since {WINDOW_DAYS}d")
    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="stats-bench-") as folder:
        path = Path(folder) / "bot.db"
        started = time.perf_counter()
        await trio.to_thread.run_sync(fill, path, now)
        report.add("fill (insert, indexes)", time.perf_counter() - started, "s")
        report.add("database file", path.stat().st_size / 2**20, "MB")
        ours = await _run_child("ours", path, now)
        baseline = await _run_child("baseline", path, now)
    ours_s, base_s = float(str(ours["seconds"])), float(str(baseline["seconds"]))
    ours_mb = int(str(ours["growth_kb"])) / KB_PER_MB
    base_mb = int(str(baseline["growth_kb"])) / KB_PER_MB
    time_ours = report.add("report time, ours (SQL)", ours_s, "s")
    report.add("report time, baseline (rows into Python)", base_s, "s")
    report.add("  baseline / ours", base_s / ours_s, "×")
    growth_ours = report.add("memory growth, ours", ours_mb, "MB")
    report.add("memory growth, baseline", base_mb, "MB")
    report.check(time_ours, f"< {TARGET_S:g} s", passed=ours_s < TARGET_S)
    report.check(growth_ours, f"< {TARGET_GROWTH_MB:g} MB", passed=ours_mb < TARGET_GROWTH_MB)
    if ours["text"] != baseline["text"]:
        report.notes.append("the two reports differ: the SQL aggregation is wrong")
    else:
        report.notes.append("both variants printed the same report")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--child", choices=("ours", "baseline"))
    parser.add_argument("--database", type=Path)
    parser.add_argument("--now", type=datetime.fromisoformat)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.database, args.now)
        return
    print(f"machine: {machine_line()}")
    print_report(trio.run(measure))


if __name__ == "__main__":
    main()
