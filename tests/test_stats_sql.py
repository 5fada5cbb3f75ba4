"""The report counted by SQLite: the same numbers as counting rows in Python, index-only
plans, and /stats read off the event loop."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from bot.ops import stats as stats_module
from bot.ops.report import NO_PERSONA, PERCENTS, format_json, format_text
from bot.ops.stats import read_report, read_report_sync
from store import EventRecord, Store, open_store
from store import stats as store_stats
from store.stats import (
    _GROUP_COUNT,
    _NEXT_PERSONA,
    _NEXT_REASON,
    _RANK,
    _TIMED,
    IMAGE_EVENTS,
    database_file,
    image_stats,
    nearest_rank_position,
    open_readonly,
)
from tests.reference_report import image_events, summarize

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=7)
PERSONAS = ("alice", "max", "vera", None, "", "-")
EVENTS = (*IMAGE_EVENTS, "image_resent")
REASONS = ("no_quota", "generation_error", "busy", "cancelled", "gremlins", None)


def random_events(store: Store, rng: random.Random, rows: int) -> None:
    """Rows inside and outside the window, every persona form, odd reasons, some untimed."""
    for _ in range(rows):
        event = rng.choice(EVENTS)
        store.events.add(
            EventRecord(
                ts=NOW - timedelta(minutes=rng.randrange(0, 14 * 24 * 60)),
                event=event,
                persona=rng.choice(PERSONAS),
                reason=rng.choice(REASONS) if event == "image_failed" else None,
                duration_ms=rng.choice([None, rng.randrange(100, 5000)]),
            )
        )


@pytest.fixture(params=["sort", "walk"])
def percentile_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Percentiles by sorting the window's rows, or (forced here) by walking an index."""
    if request.param == "walk":
        monkeypatch.setattr(store_stats, "SORT_AT_MOST", 0)
    return str(request.param)


@pytest.mark.parametrize(("seed", "rows"), [(1, 0), (2, 1), (3, 7), (4, 60), (5, 400)])
def test_sql_counts_equal_the_python_reference(seed: int, rows: int, percentile_path: str) -> None:
    with open_store(":memory:") as store:
        random_events(store, random.Random(seed), rows)
        expected = summarize(image_events(store.db, since=SINCE, until=NOW), since=SINCE, until=NOW)
        actual = read_report_sync(store.db, since=SINCE, until=NOW).summary
    assert actual == expected
    assert format_text(actual) == format_text(expected)
    assert format_json(actual) == format_json(expected)


@pytest.mark.parametrize("count", [1, 2, 3, 19, 20, 21, 100, 101])
def test_percentiles_walked_from_either_end_match_nearest_rank(
    count: int, percentile_path: str
) -> None:
    durations = random.Random(count).sample(range(1, 10_000), count)
    durations += durations[: count // 3]  # ties
    with open_store(":memory:") as store:
        for ms in durations:
            store.events.add(
                EventRecord(ts=NOW, event="image_generated", persona="alice", duration_ms=ms)
            )
        stats = image_stats(store.db, since=SINCE, until=NOW, percents=range(1, 101), unnamed="-")
    ordered = sorted(durations)
    for percent in range(1, 101):
        expected = ordered[nearest_rank_position(len(ordered), percent) - 1]
        assert stats.total.percentiles[percent] == expected
        assert stats.personas["alice"].percentiles[percent] == expected


def plan(store: Store, sql: str, params: Any) -> str:
    rows = store.db.query(f"EXPLAIN QUERY PLAN {sql}", params)
    return " | ".join(row["detail"] for row in rows)


def test_the_queries_walk_indexes_and_never_sort() -> None:
    window = {"since": "a", "until": "b", "persona": "alice", "offset": 3}
    with open_store(":memory:") as store:
        # Each step of the loose index scan is one seek, and each group's window one range.
        for sql, params in [
            (_NEXT_PERSONA.format(op=">"), ["e", "p"]),
            (_NEXT_PERSONA.format(op="="), ["e", ""]),
            (_NEXT_REASON.format(op=">"), ["e", "p", "r"]),
        ]:
            detail = plan(store, sql, params)
            assert "COVERING INDEX events_image_counts (event=?" in detail, detail
            assert "TEMP B-TREE" not in detail, detail
        counts = plan(store, _GROUP_COUNT, ["e", "p", None, "a", "b"])
        assert (
            "events_image_counts (event=? AND persona=? AND reason=? AND ts>? AND ts<?)" in counts
        )
        for hint, persona in [
            ("INDEXED BY events_durations", ""),
            ("INDEXED BY events_durations_by_persona", "persona = :persona AND"),
        ]:
            for order in ("", "DESC"):
                sql = _RANK.format(hint=hint, timed=_TIMED, persona=persona, order=order)
                detail = plan(store, sql, window)
                assert "TEMP B-TREE" not in detail, detail
        # A few rows: the window's, found by time, then sorted.
        sql = _RANK.format(hint="INDEXED BY events_by_time", timed=_TIMED, persona="", order="")
        assert "events_by_time (ts>? AND ts<?)" in plan(store, sql, window)


@pytest.mark.parametrize("index", ["events_durations", "events_image_counts"])
def test_a_database_not_yet_migrated_is_still_read(tmp_path: Path, index: str) -> None:
    path = tmp_path / "bot.db"
    with open_store(path) as store:
        random_events(store, random.Random(7), 50)
        store.db.execute(f"DROP INDEX {index}")
        expected = summarize(image_events(store.db, since=SINCE, until=NOW), since=SINCE, until=NOW)
    db = open_readonly(path)
    try:
        assert read_report_sync(db, since=SINCE, until=NOW).summary == expected
    finally:
        db.close()


def test_database_file_tells_a_file_from_memory(tmp_path: Path) -> None:
    with open_store(":memory:") as store:
        assert database_file(store.db) is None
    with open_store(tmp_path / "bot.db") as store:
        assert database_file(store.db) == (tmp_path / "bot.db").resolve()


async def test_stats_on_a_file_database_is_read_in_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[Callable[[], object]] = []
    real = trio.to_thread.run_sync

    async def spy(fn: Callable[[], object], *args: object, **kwargs: Any) -> object:
        threads.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(stats_module.trio.to_thread, "run_sync", spy)
    path = tmp_path / "bot.db"
    with open_store(path) as store:
        random_events(store, random.Random(8), 80)
        # The bot's own connection is mid-write: the report's connection is another one
        # and reads the last committed state beside it (WAL).
        store.db.execute("BEGIN IMMEDIATE")
        store.events.add(EventRecord(ts=NOW, event="image_requested", persona="zed"))
        summary = (await read_report(store.db, since=SINCE, until=NOW)).summary
        store.db.execute("ROLLBACK")
        expected = summarize(image_events(store.db, since=SINCE, until=NOW), since=SINCE, until=NOW)
    assert len(threads) == 1
    assert isinstance(threads[0], partial)
    assert summary == expected
    assert "zed" not in summary.personas


async def test_stats_on_an_in_memory_database_stays_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_threads(*_: object, **__: object) -> object:
        raise AssertionError("an in-memory database has no second connection")

    monkeypatch.setattr(stats_module.trio.to_thread, "run_sync", no_threads)
    with open_store(":memory:") as store:
        random_events(store, random.Random(9), 30)
        summary = (await read_report(store.db, since=SINCE, until=NOW)).summary
        expected = summarize(image_events(store.db, since=SINCE, until=NOW), since=SINCE, until=NOW)
    assert summary == expected
    assert set(summary.personas) <= {"alice", "max", "vera", NO_PERSONA}
    assert PERCENTS == (50, 95)
