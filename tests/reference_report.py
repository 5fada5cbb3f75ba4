"""The picture report counted in Python, row by row: the reference the SQL is held to.

``bot.ops.report.summarize_stats`` reads counts SQL made on indexes
(``store.stats.image_stats``); these functions count the same rows the slow, obvious way,
so tests compare the two and the stats benchmark measures the SQL against this.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Final

import sqlite_utils

from bot.core.events import EventName, Reason
from bot.ops.report import NO_PERSONA, ImageCounts, StatsSummary
from store.clock import to_iso
from store.errors import StoreError
from store.stats import IMAGE_EVENTS, nearest_rank_position

__all__ = ["ImageEventRow", "image_events", "nearest_rank", "summarize"]

_QUERY: Final = (
    "SELECT event, persona, reason, duration_ms FROM events_analytics"
    " WHERE event IN (?, ?, ?) AND ts >= ? AND ts <= ? ORDER BY id"
)


@dataclass(frozen=True, slots=True)
class ImageEventRow:
    """The part of one ``events_analytics`` row the report counts."""

    event: str
    persona: str | None = None
    reason: str | None = None
    duration_ms: int | None = None


def image_events(
    db: sqlite_utils.Database, *, since: datetime, until: datetime
) -> list[ImageEventRow]:
    """The picture events with ``since <= ts <= until``, oldest first.

    Raises:
        StoreError: the file is not a database of this bot (no ``events_analytics``).
    """
    params = [*IMAGE_EVENTS, to_iso(since), to_iso(until)]
    try:
        rows = list(db.query(_QUERY, params))
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the events: {exc}") from exc
    return [
        ImageEventRow(
            event=row["event"],
            persona=row["persona"],
            reason=row["reason"],
            duration_ms=row["duration_ms"],
        )
        for row in rows
    ]


def nearest_rank(values: Sequence[int], percent: int) -> int | None:
    """The nearest-rank percentile of *values* (sorted here); None when empty."""
    if not values:
        return None
    return sorted(values)[nearest_rank_position(len(values), percent) - 1]


def _count(rows: Sequence[ImageEventRow]) -> ImageCounts:
    failures = dict.fromkeys(Reason, 0)
    failed = 0
    durations: list[int] = []
    for row in rows:
        if row.event == EventName.IMAGE_FAILED:
            failed += 1
            if row.reason in failures:
                failures[Reason(row.reason)] += 1
        elif row.event == EventName.IMAGE_GENERATED and row.duration_ms is not None:
            durations.append(row.duration_ms)
    return ImageCounts(
        presses=sum(row.event == EventName.IMAGE_REQUESTED for row in rows),
        generated=sum(row.event == EventName.IMAGE_GENERATED for row in rows),
        failed=failed,
        failures=failures,
        p50_ms=nearest_rank(durations, 50),
        p95_ms=nearest_rank(durations, 95),
    )


def summarize(rows: Iterable[ImageEventRow], *, since: datetime, until: datetime) -> StatsSummary:
    """Count presses, pictures and failures in *rows*, in total and per persona."""
    all_rows = list(rows)
    by_persona: dict[str, list[ImageEventRow]] = {}
    for row in all_rows:
        by_persona.setdefault(row.persona or NO_PERSONA, []).append(row)
    return StatsSummary(
        **asdict(_count(all_rows)),
        since=since,
        until=until,
        personas={key: _count(by_persona[key]) for key in sorted(by_persona)},
    )
