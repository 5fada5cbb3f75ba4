"""A deterministic simulation of the whole bot: seeded schedules, faults, invariants.

``schedule`` turns a seed into what users, Telegram, ComfyUI and the host do;
``world`` plays it against the real bot in-process under trio's autojump clock, killing
and restarting it on the same database when a step says so; ``invariants`` checks the
money and every promise the bot makes; :func:`run_seed` ties them together. The suite
runs a few hundred seeds (``tests/test_simulation.py``); ``python -m tests.simulation``
runs as many as asked and prints schedules per second. A failing seed prints its
schedule, and running that seed again replays it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import trio
import trio.testing

from store import open_store
from tests.simulation.determinism import seed_trio_scheduler
from tests.simulation.invariants import violations
from tests.simulation.schedule import Schedule, generate
from tests.simulation.world import run_schedule

__all__ = ["Outcome", "run_seed"]


@dataclass(frozen=True, slots=True)
class Outcome:
    schedule: Schedule
    violations: tuple[str, ...]
    kills: int

    def report(self) -> str:
        lines = [self.schedule.describe(), *(f"  ✗ {line}" for line in self.violations)]
        return "\n".join(lines)


async def simulate(seed: int, folder: Path) -> Outcome:
    """Play the schedule of *seed* in *folder* (under the caller's trio clock)."""
    schedule = generate(seed)
    record = await run_schedule(schedule, folder)
    with open_store(record.database) as store:
        found = violations(store, record, record.telegram, record.comfies)
    return Outcome(schedule, tuple(found), record.kills)


def run_seed(seed: int) -> Outcome:
    """One seed from scratch, in a fresh folder, under its own autojump clock."""
    seed_trio_scheduler(seed)
    with tempfile.TemporaryDirectory(prefix=f"sim-{seed}-") as folder:
        clock = trio.testing.MockClock(autojump_threshold=0)
        return trio.run(simulate, seed, Path(folder), clock=clock)
