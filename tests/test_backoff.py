"""Retry delays: the series of waits between attempts (no event loop)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.backoff import backoff_delays


def take(n: int, delays: Iterator[float]) -> list[float]:
    return list(itertools.islice(delays, n))


def test_same_seed_gives_the_same_delays() -> None:
    first = take(8, backoff_delays(rng=random.Random(42)))
    second = take(8, backoff_delays(rng=random.Random(42)))
    assert first == second
    assert first != take(8, backoff_delays(rng=random.Random(43)))


def test_full_jitter_draws_below_a_doubling_ceiling_capped_at_maximum() -> None:
    rng = random.Random(5)
    delays = take(9, backoff_delays(initial_s=0.5, maximum_s=30.0, factor=2.0, rng=rng))
    replay = random.Random(5)
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert delays == [replay.uniform(0.0, ceiling) for ceiling in ceilings]


def test_equal_jitter_never_waits_less_than_half_the_ceiling() -> None:
    delays = take(
        6, backoff_delays(initial_s=10.0, maximum_s=60.0, jitter="equal", rng=random.Random(1))
    )
    ceilings = [10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling


@given(
    initial_s=st.floats(min_value=0.001, max_value=10.0),
    extra_s=st.floats(min_value=0.0, max_value=100.0),
    factor=st.floats(min_value=1.0, max_value=10.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delays_stay_within_zero_and_maximum(
    initial_s: float, extra_s: float, factor: float, seed: int
) -> None:
    maximum_s = initial_s + extra_s
    delays = backoff_delays(
        initial_s=initial_s, maximum_s=maximum_s, factor=factor, rng=random.Random(seed)
    )
    assert all(0.0 <= delay <= maximum_s for delay in take(40, delays))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"initial_s": 0.0}, "initial_s must be positive, got 0.0"),
        ({"initial_s": 5.0, "maximum_s": 1.0}, "maximum_s must be >= initial_s, got 1.0 < 5.0"),
        ({"factor": 0.5}, "factor must be >= 1, got 0.5"),
    ],
)
def test_bad_options_are_refused_with_the_value(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        backoff_delays(rng=random.Random(0), **options)  # type: ignore[arg-type]
