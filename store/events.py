"""``events_analytics``: one row per product event (docs/product.md, P9).

An event is written in the transaction of the change it records (a reservation, a
charge, a payment), so the row exists exactly when the change does. Its line on stdout
must follow only once that transaction is committed: :meth:`Events.recording` collects
the rows written while it is open, for the caller to announce afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlite_utils

from store.clock import to_iso

__all__ = ["EventRecord", "Events"]


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One row; the event and reason names are owned by ``bot.core.events``."""

    ts: datetime
    event: str
    user_id: int | None = None
    chat_id: int | None = None
    persona: str | None = None
    job_id: str | None = None
    reason: str | None = None
    detail: str | None = None
    duration_ms: int | None = None
    server: str | None = None  # the ComfyUI server of a finished picture (host:port)


class Events:
    """The ``events_analytics`` table."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db
        self._recorders: list[list[EventRecord]] = []

    @contextmanager
    def recording(self) -> Iterator[list[EventRecord]]:
        """The events :meth:`add` writes while inside, in order (nested recordings each
        see them). Rolled-back rows are collected too: use the list only when the
        transaction that wrote them was committed."""
        written: list[EventRecord] = []
        self._recorders.append(written)
        try:
            yield written
        finally:
            self._recorders.remove(written)

    def add_all(self, records: list[EventRecord]) -> None:
        """Several events in one transaction (a press refused on the spot logs two)."""
        with self._db.atomic():
            for record in records:
                self.add(record)

    def add(self, record: EventRecord) -> None:
        self._db.execute(
            "INSERT INTO events_analytics (ts, event, user_id, chat_id, persona, job_id,"
            " reason, detail, duration_ms, server) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                to_iso(record.ts),
                record.event,
                record.user_id,
                record.chat_id,
                record.persona,
                record.job_id,
                record.reason,
                record.detail,
                record.duration_ms,
                record.server,
            ],
        )
        for recorder in self._recorders:
            recorder.append(record)

    def since(self, moment: datetime | None = None) -> list[dict[str, Any]]:
        """Every row at or after *moment* (all rows when None), oldest first."""
        if moment is None:
            return list(self._db.query("SELECT * FROM events_analytics ORDER BY id"))
        return list(
            self._db.query(
                "SELECT * FROM events_analytics WHERE ts >= ? ORDER BY id", [to_iso(moment)]
            )
        )

    def count(self, event: str) -> int:
        rows = list(
            self._db.query("SELECT count(*) AS n FROM events_analytics WHERE event = ?", [event])
        )
        return int(rows[0]["n"])
