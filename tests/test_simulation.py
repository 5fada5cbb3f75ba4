"""The whole bot under seeded schedules of users and faults: every promise kept.

Each seed is a different schedule (``tests/simulation``): users chatting, pressing,
buying and refunding, admins granting, and Telegram, ComfyUI, the LLM, the database and
the process itself failing in between. The seeds run in worker processes, one per core,
each with string hashing fixed, so the run takes a fraction of a minute and a failing
seed replays exactly: ``python -m tests.simulation --seed N``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Final

from tests.simulation import run_seed
from tests.simulation.schedule import generate

SEEDS: Final = 300


def _failure(seed: int) -> str | None:
    """Run *seed* in a worker; its report if it broke a promise."""
    logging.disable(logging.CRITICAL)  # thousands of log lines a schedule, read by no one
    outcome = run_seed(seed)
    if not outcome.violations:
        return None
    return f"replay: python -m tests.simulation --seed {seed}\n{outcome.report()}"


@contextmanager
def _fixed_hashing() -> Iterator[None]:
    """Worker processes started meanwhile hash strings as a replay will."""
    before = os.environ.get("PYTHONHASHSEED")
    os.environ["PYTHONHASHSEED"] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONHASHSEED"]
        else:
            os.environ["PYTHONHASHSEED"] = before


def test_schedules_are_a_function_of_their_seed() -> None:
    assert generate(7) == generate(7)
    assert generate(7) != generate(8)


def test_every_seeded_schedule_keeps_every_promise() -> None:
    workers = max(1, os.cpu_count() or 1)
    context = multiprocessing.get_context("spawn")
    with (
        _fixed_hashing(),
        ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool,
    ):
        failures = [report for report in pool.map(_failure, range(SEEDS), chunksize=5) if report]
    assert not failures, f"{len(failures)} of {SEEDS} seeds failed:\n\n" + "\n\n".join(failures[:3])
