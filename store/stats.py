"""Reading the picture events back for ``/stats`` and ``python -m bot stats`` (docs/product.md, P9).

The operator runs the report beside a live bot, so the command line opens the file
read-only: it never creates, migrates or locks the database for writing. ``/stats`` opens
its own read-only connection too, in a worker thread (:func:`database_file` tells where).

:func:`image_stats` aggregates in SQL (docs/decisions.md, D27). Counting: a loose scan
of an index ordered by (event, persona, reason, ts) finds the groups, one seek each, and
each group's rows of the window are counted by one range seek. Percentiles: each is one
``ORDER BY duration_ms LIMIT 1 OFFSET k``, over a partial index already in duration
order (walked from the nearer end) or, for a slice of a few rows, over the window's rows
found by time. No event row reaches Python, so memory stays flat however many events
there are; time follows the window's rows.
:func:`image_events` (every row) stays for tests that compare the two.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import sqlite_utils

from store.clock import to_iso
from store.db import query_one
from store.errors import StoreError

__all__ = [
    "IMAGE_EVENTS",
    "SORT_AT_MOST",
    "EventCount",
    "ImageStats",
    "SliceStats",
    "database_file",
    "image_stats",
    "nearest_rank_position",
    "open_readonly",
]

# The three events a press can produce (docs/product.md, P9); bot.core.events owns the names.
IMAGE_EVENTS: Final = ("image_requested", "image_generated", "image_failed")


# Counting the window. events_image_counts (migration 0003_retention) is ordered by
# (event, persona, reason, ts): each group's rows of the window are one contiguous range
# of it. So the groups are found by a loose index scan (the next persona, the next
# reason: one index seek each) and each group's window is counted by one range seek. Time
# follows the rows of the window, not the table; nothing is sorted.
# {op} is ">" for the next value, "=" to ask whether the empty text is there.
_NEXT_PERSONA: Final = (
    "SELECT persona AS value FROM events_analytics WHERE event = ? AND persona {op} ?"
    " ORDER BY persona LIMIT 1"
)
_NEXT_REASON: Final = (
    "SELECT reason AS value FROM events_analytics WHERE event = ? AND persona IS ?"
    " AND reason {op} ? ORDER BY reason LIMIT 1"
)
_GROUP_COUNT: Final = (
    "SELECT count(*) AS n, count(duration_ms) AS timed FROM events_analytics"
    " WHERE event = ? AND persona IS ? AND reason IS ? AND ts >= ? AND ts <= ?"
)
# A file not yet migrated by this version lacks the index: one GROUP BY does it there.
_COUNTS: Final = (
    "SELECT event, persona, reason, count(*) AS n, count(duration_ms) AS timed"
    " FROM events_analytics WHERE event IN (?, ?, ?) AND ts >= ? AND ts <= ?"
    " GROUP BY event, persona, reason"
)
_COUNTS_INDEX: Final = "events_image_counts"
_SMALLEST: Final = ""  # every text sorts after it; the empty text itself is looked up too
# The durations that count are those of image_generated rows. The partial indexes of
# 0003_retention hold them sorted by duration; a percentile of many rows walks one of
# them from the nearer end, skipping rows outside the window (the WHERE repeats the
# index's literally, as SQLite requires). In a window of a few rows a percentile sorts
# the window's, found by time (events_by_time): walking would skip every older row. SQLite
# picks neither on its own, hence INDEXED BY when the indexes exist.
_TIMED: Final = "event = 'image_generated' AND duration_ms IS NOT NULL"
_DURATION_INDEXES: Final = ("events_durations", "events_durations_by_persona")
_TIME_INDEX: Final = "events_by_time"
SORT_AT_MOST: Final = 500  # a window with more timed rows is walked, not sorted (measured)
_RANK: Final = (
    "SELECT duration_ms FROM events_analytics {hint} WHERE {timed} AND {persona}"
    " ts >= :since AND ts <= :until ORDER BY duration_ms {order} LIMIT 1 OFFSET :offset"
)
_ANY_PERSONA: Final = ""
_ONE_PERSONA: Final = "persona = :persona AND"
_NO_PERSONA: Final = "(persona IS NULL OR persona IN ('', :persona)) AND"


@dataclass(frozen=True, slots=True)
class EventCount:
    """How many rows of one event (and failure reason) a slice holds."""

    event: str
    reason: str | None
    count: int


@dataclass(frozen=True, slots=True)
class SliceStats:
    """One slice of the window (everyone, or one persona): counts and percentiles.

    ``percentiles`` maps each requested percent to the nearest-rank duration of the
    slice's ``image_generated`` rows that carry one (None when there is none).
    """

    counts: tuple[EventCount, ...]
    percentiles: Mapping[int, int | None]


@dataclass(frozen=True, slots=True)
class ImageStats:
    """The window in total and per persona key (sorted)."""

    total: SliceStats
    personas: Mapping[str, SliceStats]


def nearest_rank_position(count: int, percent: int) -> int:
    """The 1-based rank of the nearest-rank *percent* percentile among *count* values."""
    return max(1, -(-percent * count // 100))  # ceil without floats


def database_file(db: sqlite_utils.Database) -> Path | None:
    """The file behind *db*'s main schema, or None for an in-memory database."""
    for row in db.query("PRAGMA database_list"):
        if row["name"] == "main":
            return Path(row["file"]) if row["file"] else None
    return None


def open_readonly(path: str | Path) -> sqlite_utils.Database:
    """Open an existing database file for reading only; a missing file is an error.

    Raises:
        StoreError: there is no file at *path*, or SQLite cannot open it.
    """
    file = Path(path)
    if not file.is_file():
        raise StoreError(f"no database at {str(file)!r}; set DATABASE_PATH or pass --database")
    try:
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"database {str(file)!r} cannot be opened: {exc}") from exc
    return sqlite_utils.Database(conn)


def image_stats(
    db: sqlite_utils.Database,
    *,
    since: datetime,
    until: datetime,
    percents: Sequence[int],
    unnamed: str,
) -> ImageStats:
    """The picture events with ``since <= ts <= until``, counted in SQL.

    *unnamed* is the key of the slice of events recorded without a persona (NULL or
    empty); a persona whose key equals it is counted in that slice too.

    Raises:
        StoreError: the file is not a database of this bot (no ``events_analytics``).
    """
    window = {"since": to_iso(since), "until": to_iso(until)}
    generated = IMAGE_EVENTS[1]
    try:
        if _has_indexes(db, (_COUNTS_INDEX,)):
            rows = _window_counts(db, window["since"], window["until"])
        else:
            rows = list(db.query(_COUNTS, [*IMAGE_EVENTS, window["since"], window["until"]]))
        by_slice: dict[str, list[EventCount]] = {}
        timed: dict[str, int] = {}
        for row in rows:
            key = row["persona"] or unnamed
            by_slice.setdefault(key, []).append(
                EventCount(event=row["event"], reason=row["reason"], count=int(row["n"]))
            )
            if row["event"] == generated:  # only their durations are generation times
                timed[key] = timed.get(key, 0) + int(row["timed"])
        indexed = _has_indexes(db, (*_DURATION_INDEXES, _TIME_INDEX))
        ranks = _Ranks(db, window, percents, indexed=indexed, window_rows=sum(timed.values()))
        total = SliceStats(
            counts=_merge([count for counts in by_slice.values() for count in counts]),
            percentiles=ranks.of(_ANY_PERSONA, None, sum(timed.values())),
        )
        personas = {
            key: SliceStats(
                counts=_merge(by_slice[key]),
                percentiles=ranks.of(
                    _NO_PERSONA if key == unnamed else _ONE_PERSONA, key, timed.get(key, 0)
                ),
            )
            for key in sorted(by_slice)
        }
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the events: {exc}") from exc
    return ImageStats(total=total, personas=personas)


def _window_counts(db: sqlite_utils.Database, since: str, until: str) -> list[dict[str, Any]]:
    """The (event, persona, reason) groups with rows in the window, and their counts."""
    rows = []
    for event in IMAGE_EVENTS:
        for persona in _values(db, _NEXT_PERSONA, [event]):
            for reason in _values(db, _NEXT_REASON, [event, persona]):
                group = query_one(db, _GROUP_COUNT, [event, persona, reason, since, until])
                if group is not None and group["n"]:
                    rows.append({"event": event, "persona": persona, "reason": reason, **group})
    return rows


def _values(db: sqlite_utils.Database, next_sql: str, params: Sequence[object]) -> list[str | None]:
    """NULL, the empty text if present, then each distinct value *next_sql* steps to."""
    values: list[str | None] = [None]
    if query_one(db, next_sql.format(op="="), [*params, _SMALLEST]) is not None:
        values.append(_SMALLEST)
    after: str = _SMALLEST
    while (row := query_one(db, next_sql.format(op=">"), [*params, after])) is not None:
        after = row["value"]
        values.append(after)
    return values


def _has_indexes(db: sqlite_utils.Database, names: Sequence[str]) -> bool:
    """Does *db* hold every index in *names*? (A file not yet migrated by this version.)"""
    marks = ", ".join("?" for _ in names)
    sql = f"SELECT count(*) AS n FROM sqlite_master WHERE type = 'index' AND name IN ({marks})"
    row = next(iter(db.query(sql, list(names))))
    return int(row["n"]) == len(names)


def _merge(counts: Sequence[EventCount]) -> tuple[EventCount, ...]:
    """One count per (event, reason), in first-seen order."""
    merged: dict[tuple[str, str | None], int] = {}
    for count in counts:
        key = (count.event, count.reason)
        merged[key] = merged.get(key, 0) + count.count
    return tuple(EventCount(event, reason, n) for (event, reason), n in merged.items())


@dataclass(frozen=True, slots=True)
class _Ranks:
    """Nearest-rank percentiles of the window's generated durations, one query each."""

    db: sqlite_utils.Database
    window: Mapping[str, str]
    percents: Sequence[int]
    indexed: bool
    window_rows: int  # timed rows in the whole window: what sorting by time would read

    def of(self, persona_filter: str, persona: str | None, count: int) -> dict[int, int | None]:
        """The percentiles of the *count* timed rows *persona_filter* selects."""
        if not count:
            return dict.fromkeys(self.percents)
        if self.window_rows <= SORT_AT_MOST:
            index = _TIME_INDEX
        elif persona_filter == _ANY_PERSONA:
            index = _DURATION_INDEXES[0]
        else:
            index = _DURATION_INDEXES[1]
        # The unnamed slice's OR does not fit the persona index; SQLite plans it alone.
        usable = self.indexed and (index == _TIME_INDEX or persona_filter != _NO_PERSONA)
        hint = f"INDEXED BY {index}" if usable else ""
        result: dict[int, int | None] = {}
        for percent in self.percents:
            rank = nearest_rank_position(count, percent)
            # Walk from whichever end is nearer: p95 is 5 % of the rows from the top.
            ascending = rank - 1 <= count - rank
            sql = _RANK.format(
                hint=hint, timed=_TIMED, persona=persona_filter, order="" if ascending else "DESC"
            )
            params = {
                **self.window,
                "persona": persona,
                "offset": rank - 1 if ascending else count - rank,
            }
            row = next(iter(self.db.query(sql, params)), None)
            result[percent] = None if row is None else int(row["duration_ms"])
        return result
