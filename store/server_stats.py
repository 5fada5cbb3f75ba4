"""Pictures, failures and their times per ComfyUI server, computed by SQL.

A picture's events carry its ``job_id``; the job's row names the server it was last
handed to (``jobs.server``). Finished jobs (``image_generated``, ``image_failed``) are
counted per server; a failure that never reached a server (a full queue, a cancel while
waiting) counts under ``-``. p50/p95 are nearest-rank percentiles of the generated
pictures' ``duration_ms``, as in the totals of the report.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import sqlite_utils

from store.clock import to_iso
from store.errors import StoreError

__all__ = ["NO_SERVER", "ServerCounts", "server_counts"]

NO_SERVER: Final = "-"

_QUERY: Final = """
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
    params = {"none": NO_SERVER, "since": to_iso(since), "until": to_iso(until)}
    try:
        rows = list(db.query(_QUERY, params))
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the events by server: {exc}") from exc
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
