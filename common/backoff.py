"""Retry delays: how long to wait before the next attempt, as a pure iterator.

The project's one backoff policy: the Telegram client, polling, the store's waits and the
ComfyUI follower all draw their waits from it. Delays grow exponentially with jitter drawn
from a passed ``random.Random``, so tests replay exact delays from a seed::

    >>> import random
    >>> delays = backoff_delays(rng=random.Random(1))
    >>> [round(next(delays), 3) for _ in range(3)]
    [0.067, 0.847, 1.528]
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Final, Literal

__all__ = [
    "DEFAULT_FACTOR",
    "DEFAULT_INITIAL_S",
    "DEFAULT_MAXIMUM_S",
    "Jitter",
    "backoff_delays",
]

DEFAULT_INITIAL_S: Final = 0.5  # seconds: the ceiling of the first delay
DEFAULT_MAXIMUM_S: Final = 30.0  # seconds: no delay is longer than this
DEFAULT_FACTOR: Final = 2.0  # each ceiling is this many times the previous one

Jitter = Literal["full", "equal"]


def backoff_delays(
    *,
    initial_s: float = DEFAULT_INITIAL_S,
    maximum_s: float = DEFAULT_MAXIMUM_S,
    factor: float = DEFAULT_FACTOR,
    jitter: Jitter = "full",
    rng: random.Random,
) -> Iterator[float]:
    """Yield an endless series of delays in seconds, one per failed attempt.

    The n-th ceiling is ``min(maximum_s, initial_s * factor**n)``. "full" jitter draws
    uniformly from ``[0, ceiling]`` (spreads many clients best); "equal" jitter from
    ``[ceiling/2, ceiling]`` (never retries almost at once).

    Raises:
        ValueError: a non-positive ``initial_s``, ``maximum_s < initial_s`` or ``factor < 1``.
    """
    if initial_s <= 0:
        raise ValueError(f"initial_s must be positive, got {initial_s!r}")
    if maximum_s < initial_s:
        raise ValueError(f"maximum_s must be >= initial_s, got {maximum_s!r} < {initial_s!r}")
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor!r}")
    return _delays(initial_s, maximum_s, factor, jitter, rng)


def _delays(
    ceiling: float, maximum_s: float, factor: float, jitter: Jitter, rng: random.Random
) -> Iterator[float]:
    while True:
        floor = ceiling / 2 if jitter == "equal" else 0.0
        yield rng.uniform(floor, ceiling)
        ceiling = min(maximum_s, ceiling * factor)
