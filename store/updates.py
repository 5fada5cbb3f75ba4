"""The Telegram update inbox: updates received but not yet handled, plus the offset.

getUpdates confirms every update below the offset it is called with, and Telegram then
forgets them (docs/telegram.md, T3). So a batch is written here, with the next offset, in one
transaction *before* the next call confirms it; the dispatcher removes each update once
handled. After a crash, ``pending()`` gives back exactly the updates not yet handled:
nothing is lost. An update whose effects were committed just before a crash is handled
again, so a handler with effects claims its update (:meth:`UpdateInbox.claim`) in the
transaction of those effects: the second run finds it claimed and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

import sqlite_utils

from store.clock import to_iso, utc_now

__all__ = ["UpdateInbox"]

_OFFSET_KEY: Final = "telegram_offset"


class UpdateInbox:
    """The ``update_inbox`` table and the stored offset."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db

    def next_offset(self) -> int | None:
        rows = list(self._db.query("SELECT value FROM kv WHERE key = ?", [_OFFSET_KEY]))
        return int(rows[0]["value"]) if rows else None

    def save_batch(self, updates: Sequence[tuple[int, str]], *, next_offset: int) -> None:
        """Keep *updates* (id, raw JSON) and move the offset, atomically; repeats ignored."""
        with self._db.atomic():
            for update_id, raw in updates:
                self._db.execute(
                    "INSERT OR IGNORE INTO update_inbox (update_id, raw) VALUES (?, ?)",
                    [update_id, raw],
                )
            self._db.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
                " SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                [_OFFSET_KEY, str(next_offset)],
            )

    def claim(self, update_id: int, *, now: datetime) -> bool:
        """Record that *update_id*'s effects are being applied; False if they were before.

        Call inside the transaction of those effects: an update handled again (its
        handler re-run after a restart, or retried) then changes nothing twice.
        """
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO applied_updates (update_id, applied_at) VALUES (?, ?)",
            [update_id, to_iso(now)],
        )
        return cursor.rowcount == 1

    def claimed(self, update_id: int) -> bool:
        """Whether *update_id*'s effects were applied."""
        rows = self._db.query(
            "SELECT 1 AS one FROM applied_updates WHERE update_id = ?", [update_id]
        )
        return next(iter(rows), None) is not None

    def pending(self) -> list[tuple[int, str]]:
        rows = self._db.query("SELECT update_id, raw FROM update_inbox ORDER BY update_id")
        return [(int(row["update_id"]), str(row["raw"])) for row in rows]

    def mark_done(self, update_id: int) -> None:
        self._db.execute("DELETE FROM update_inbox WHERE update_id = ?", [update_id])

    def park(self, update_id: int, reason: str, *, now: datetime | None = None) -> None:
        """Move the update to ``parked_updates`` with *reason*, in one transaction."""
        with self._db.atomic():
            self._db.execute(
                "INSERT OR REPLACE INTO parked_updates (update_id, raw, reason, parked_at)"
                " SELECT update_id, raw, ?, ? FROM update_inbox WHERE update_id = ?",
                [reason, to_iso(now or utc_now()), update_id],
            )
            self._db.execute("DELETE FROM update_inbox WHERE update_id = ?", [update_id])

    def parked(self) -> list[tuple[int, str]]:
        """``(update_id, reason)`` of every parked update, oldest first."""
        rows = self._db.query("SELECT update_id, reason FROM parked_updates ORDER BY update_id")
        return [(int(row["update_id"]), str(row["reason"])) for row in rows]
