"""Pictures, failures and their times per ComfyUI server, computed by SQL.

A picture's final event (``image_generated``, ``image_failed``) names the server its job
was last handed to (``events_analytics.server``, copied from ``jobs.server`` when the job
is settled); a failure that never reached a server (a full queue, a cancel while waiting)
counts under ``-``. p50/p95 are nearest-rank percentiles of the generated pictures'
``duration_ms``, as in the totals of the report.

Like the totals (docs/decisions.md, D27), everything is read off indexes: the servers are
found by stepping through ``events_finished_by_server``, each server's counts are ranges
of it, and a percentile is one step into ``events_durations_by_server``, which holds a
server's durations in order. A database not yet migrated to the ``server`` column is
counted the old way, through the jobs table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import sqlite_utils

from store.clock import to_iso
from store.db import query_one
from store.errors import StoreError

__all__ = ["NO_SERVER", "ServerCounts", "server_counts"]

NO_SERVER: Final = "-"
PERCENTS: Final = (50, 95)
_FINISHED: Final = ("image_generated", "image_failed")

_NEXT_SERVER: Final = (
    "SELECT server FROM events_analytics INDEXED BY events_finished_by_server"
    " WHERE event = ? AND server > ? ORDER BY server LIMIT 1"
)
_HAS_UNNAMED: Final = (
    "SELECT 1 FROM events_analytics INDEXED BY events_finished_by_server"
    " WHERE event = ? AND server IS NULL AND ts >= ? AND ts <= ?"
    " LIMIT 1"
)
_COUNT: Final = (
    "SELECT count(*) AS n FROM events_analytics INDEXED BY events_finished_by_server"
    " WHERE event = ? AND server IS ? AND ts >= ? AND ts <= ?"
)
_TIMED: Final = (
    "SELECT count(*) AS n FROM events_analytics INDEXED BY events_durations_by_server"
    " WHERE event = 'image_generated' AND duration_ms IS NOT NULL AND server IS ?"
    " AND ts >= ? AND ts <= ?"
)
_AT_RANK: Final = (
    "SELECT duration_ms FROM events_analytics INDEXED BY events_durations_by_server"
    " WHERE event = 'image_generated' AND duration_ms IS NOT NULL AND server IS ?"
    " AND ts >= ? AND ts <= ? ORDER BY duration_ms LIMIT 1 OFFSET ?"
)

# Before the events named their server: joined with the jobs table and sorted.
_JOINED_QUERY: Final = """
WITH finished AS (
    SELECT coalesce(jobs.server, :none) AS server, e.event, e.duration_ms
    FROM events_analytics AS e LEFT JOIN jobs ON jobs.job_id = e.job_id
    WHERE e.event IN ('image_generated', 'image_failed') AND e.ts >= :since AND e.ts <= :until
),
ranked AS (
    SELECT server, duration_ms,
        row_number() OVER (PARTITION BY server ORDER BY duration_ms) AS rank,
        count(*) OVER (PARTITION BY server) AS n
    FROM finished WHERE event = 'image_generated' AND duration_ms IS NOT NULL
),
percentiles AS (
    SELECT server,
        max(CASE WHEN rank = max(1, (50 * n + 99) / 100) THEN duration_ms END) AS p50_ms,
        max(CASE WHEN rank = max(1, (95 * n + 99) / 100) THEN duration_ms END) AS p95_ms
    FROM ranked GROUP BY server
)
SELECT f.server,
    sum(f.event = 'image_generated') AS generated,
    sum(f.event = 'image_failed') AS failed,
    p.p50_ms, p.p95_ms
FROM finished AS f LEFT JOIN percentiles AS p ON p.server = f.server
GROUP BY f.server ORDER BY f.server = :none, f.server
"""


@dataclass(frozen=True, slots=True)
class ServerCounts:
    server: str  # host:port, or NO_SERVER
    generated: int
    failed: int
    p50_ms: int | None
    p95_ms: int | None


def server_counts(
    db: sqlite_utils.Database, *, since: datetime, until: datetime
) -> list[ServerCounts]:
    """Per server, the jobs that ended with ``since <= ts <= until``; servers by name,
    ``-`` last.

    Raises:
        StoreError: the file is not a database of this bot.
    """
    window = (to_iso(since), to_iso(until))
    try:
        if not _events_name_servers(db):
            return _joined_counts(db, window)
        rows = [_server_row(db, server, window) for server in _servers(db, window)]
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the events by server: {exc}") from exc
    return [row for row in rows if row.generated or row.failed]


def _events_name_servers(db: sqlite_utils.Database) -> bool:
    row = query_one(
        db,
        "SELECT count(*) AS n FROM sqlite_master WHERE type = 'index'"
        " AND name IN ('events_finished_by_server', 'events_durations_by_server')",
    )
    return row is not None and row["n"] == 2


def _servers(db: sqlite_utils.Database, window: tuple[str, str]) -> list[str | None]:
    """The named servers of any finished event (by name), then None if the window has
    events without one; a skip-scan of the index, a step per server."""
    named: set[str] = set()
    for event in _FINISHED:
        after = ""
        while (row := query_one(db, _NEXT_SERVER, [event, after])) is not None:
            after = row["server"]
            named.add(after)
    servers: list[str | None] = [*sorted(named)]
    if any(query_one(db, _HAS_UNNAMED, [event, *window]) for event in _FINISHED):
        servers.append(None)
    return servers


def _server_row(
    db: sqlite_utils.Database, server: str | None, window: tuple[str, str]
) -> ServerCounts:
    generated, failed = (_count(db, _COUNT, [event, server, *window]) for event in _FINISHED)
    timed = _count(db, _TIMED, [server, *window])
    p50, p95 = (_at_rank(db, server, window, percent, timed) for percent in PERCENTS)
    return ServerCounts(
        server=server if server is not None else NO_SERVER,
        generated=generated,
        failed=failed,
        p50_ms=p50,
        p95_ms=p95,
    )


def _count(db: sqlite_utils.Database, sql: str, params: Sequence[object]) -> int:
    row = query_one(db, sql, params)
    return int(row["n"]) if row is not None else 0


def _at_rank(
    db: sqlite_utils.Database, server: str | None, window: tuple[str, str], percent: int, n: int
) -> int | None:
    """The nearest-rank *percent* percentile of the server's *n* timed pictures."""
    if n == 0:
        return None
    rank = max(1, -(-percent * n // 100))
    row = query_one(db, _AT_RANK, [server, *window, rank - 1])
    return int(row["duration_ms"]) if row is not None else None


def _joined_counts(db: sqlite_utils.Database, window: tuple[str, str]) -> list[ServerCounts]:
    params = {"none": NO_SERVER, "since": window[0], "until": window[1]}
    rows = list(db.query(_JOINED_QUERY, params))
    return [
        ServerCounts(
            server=str(row["server"]),
            generated=int(row["generated"]),
            failed=int(row["failed"]),
            p50_ms=row["p50_ms"],
            p95_ms=row["p95_ms"],
        )
        for row in rows
    ]
