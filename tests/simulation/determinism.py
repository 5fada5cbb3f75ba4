"""Making a run depend on its seed alone.

Everything the bot and the world draw comes from ``random.Random`` instances seeded from
the schedule's seed, and time is trio's virtual clock. One thing is left: trio shuffles
the tasks that are ready at the same moment with a module-level ``random.Random`` of its
own, to keep programs from relying on an order. trio offers no public way to seed it;
its Hypothesis plugin (loaded when Hypothesis is imported) makes the shuffle
deterministic and hands that Random to Hypothesis, which seeds it for its own tests.
The simulation seeds it the same way, here and nowhere else.
"""

from __future__ import annotations

import hypothesis  # noqa: F401 (its trio plugin makes the scheduler's shuffle deterministic)
import trio

__all__ = ["seed_trio_scheduler"]


def seed_trio_scheduler(seed: int) -> None:
    """Seed the Random trio's scheduler shuffles ready tasks with."""
    trio._core._run._r.seed(seed)
