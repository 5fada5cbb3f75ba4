"""Image jobs: one row per accepted press, written before anything reaches ComfyUI.

The row carries the bot-chosen ``prompt_id`` from its birth (docs/product.md, P12), so
whatever point the process dies at, the next start finds the job and finishes or closes
it. An active row (queued, running, downloaded) *is* the user's reservation of one image;
see ``store.quota`` for how rows are born, charged and released.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlite_utils

from store.clock import from_iso, to_iso
from store.db import query_one

__all__ = ["ACTIVE_SQL", "ACTIVE_STATES", "Job", "JobState", "Jobs", "QuotaSource"]


class JobState(enum.StrEnum):
    QUEUED = "queued"  # reserved, waiting in our pool; prompt_id chosen
    RUNNING = "running"  # handed to ComfyUI (maybe submitted, maybe not yet)
    DOWNLOADED = "downloaded"  # picture is on our disk (spool_path), not yet delivered
    DELIVERING = "delivering"  # the upload has begun: no cancel can release it any more
    DELIVERED = "delivered"  # sent to the user and charged: final
    FAILED = "failed"  # reservation released: final


class QuotaSource(enum.StrEnum):
    BALANCE = "balance"
    SUBSCRIPTION = "subscription"


ACTIVE_STATES: Final = (
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.DOWNLOADED,
    JobState.DELIVERING,
)


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    prompt_id: str
    user_id: int
    chat_id: int
    message_id: int
    persona_key: str
    language: str
    state: JobState
    quota_source: QuotaSource
    graph: str | None
    status_message_id: int | None
    spool_path: str | None
    file_id: str | None
    reason: str | None
    detail: str | None
    created_at: datetime
    server: str | None = None  # the ComfyUI server it was last handed to (host:port)
    lot: str | None = None  # the pack (charge id) its balance picture came from

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


def row_to_job(row: dict[str, Any]) -> Job:
    return Job(
        job_id=str(row["job_id"]),
        prompt_id=str(row["prompt_id"]),
        user_id=int(row["user_id"]),
        chat_id=int(row["chat_id"]),
        message_id=int(row["message_id"]),
        persona_key=str(row["persona_key"]),
        language=str(row["language"]),
        state=JobState(row["state"]),
        quota_source=QuotaSource(row["quota_source"]),
        graph=row["graph"],
        status_message_id=row["status_message_id"],
        spool_path=row["spool_path"],
        file_id=row["file_id"],
        reason=row["reason"],
        detail=row["detail"],
        created_at=from_iso(row["created_at"]),
        server=row.get("server"),
        lot=row.get("lot"),
    )


# The same set as SQL, for WHERE clauses. (The unique index of the first migration spells
# it out, as shipped migrations must; a test checks the two agree.)
ACTIVE_SQL: Final = "(" + ", ".join(f"'{state.value}'" for state in ACTIVE_STATES) + ")"


class Jobs:
    """The ``jobs`` table: reads and the non-money state changes."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db

    def get(self, job_id: str) -> Job | None:
        row = query_one(self._db, "SELECT * FROM jobs WHERE job_id = ?", [job_id])
        return row_to_job(row) if row else None

    def active_for_message(self, *, chat_id: int, message_id: int) -> Job | None:
        row = query_one(
            self._db,
            f"SELECT * FROM jobs WHERE chat_id = ? AND message_id = ? AND state IN {ACTIVE_SQL}",
            [chat_id, message_id],
        )
        return row_to_job(row) if row else None

    def unfinished(self) -> list[Job]:
        """Active jobs, oldest first: what a start must resume."""
        rows = self._db.query(f"SELECT * FROM jobs WHERE state IN {ACTIVE_SQL} ORDER BY rowid")
        return [row_to_job(row) for row in rows]

    def finished_with_status_message(self) -> list[Job]:
        """Final jobs whose status message was not deleted (the process stopped first)."""
        rows = self._db.query(
            f"SELECT * FROM jobs WHERE state NOT IN {ACTIVE_SQL}"
            " AND status_message_id IS NOT NULL ORDER BY rowid"
        )
        return [row_to_job(row) for row in rows]

    def active_chats(self) -> list[int]:
        """Chats with a picture waiting, being drawn or being delivered."""
        rows = self._db.query(f"SELECT DISTINCT chat_id FROM jobs WHERE state IN {ACTIVE_SQL}")
        return [int(row["chat_id"]) for row in rows]

    def advance(
        self,
        job_id: str,
        *,
        to: JobState,
        now: datetime,
        spool_path: str | None = None,
        graph: str | None = None,
    ) -> bool:
        """Move an active job forward (queued → running → downloaded); False if it has
        ended. A job whose upload had begun stays ``delivering`` (resumed after a restart
        that lost its picture, it is fetched again, and still no cancel can release it)."""
        if to not in (JobState.RUNNING, JobState.DOWNLOADED):
            raise ValueError(f"advance() moves between active states, not to {to.value!r}")
        cursor = self._db.execute(
            "UPDATE jobs SET state = CASE state WHEN 'delivering' THEN state ELSE ? END,"
            " updated_at = ?, spool_path = coalesce(?, spool_path), graph = coalesce(?, graph)"
            f" WHERE job_id = ? AND state IN {ACTIVE_SQL}",
            [to.value, to_iso(now), spool_path, graph, job_id],
        )
        return cursor.rowcount == 1

    def set_server(self, job_id: str, server: str) -> None:
        """Record the ComfyUI server an active job is handed to, before it is submitted."""
        self._db.execute(
            f"UPDATE jobs SET server = ? WHERE job_id = ? AND state IN {ACTIVE_SQL}",
            [server, job_id],
        )

    def set_status_message(self, job_id: str, message_id: int | None) -> None:
        self._db.execute(
            "UPDATE jobs SET status_message_id = ? WHERE job_id = ?", [message_id, job_id]
        )
