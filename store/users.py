"""Users: language, chosen persona, blocked flag, image balance and subscription."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlite_utils

from store.clock import from_iso, to_iso
from store.ledger import Cause, Entry, Ledger

__all__ = ["User", "Users"]


@dataclass(frozen=True, slots=True)
class User:
    user_id: int
    first_name: str
    language: str
    persona_key: str | None
    blocked: bool
    image_balance: int
    subscription_until: datetime | None


def _row_to_user(row: dict[str, Any]) -> User:
    until = row["subscription_until"]
    return User(
        user_id=int(row["user_id"]),
        first_name=str(row["first_name"]),
        language=str(row["language"]),
        persona_key=row["persona_key"],
        blocked=bool(row["blocked"]),
        image_balance=int(row["image_balance"]),
        subscription_until=from_iso(until) if until else None,
    )


class Users:
    """The ``users`` table; a user's money moves only through the ledger."""

    def __init__(self, db: sqlite_utils.Database, ledger: Ledger) -> None:
        self._db = db
        self._ledger = ledger

    def ensure_row(self, user_id: int, *, now: datetime, free_images: int) -> bool:
        """Create *user_id*'s row if there is none, with the free allowance (a ledger
        entry); True if it was created. Call inside the caller's transaction."""
        stamp = to_iso(now)
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO users (user_id, created_at, updated_at) VALUES (?, ?, ?)",
            [user_id, stamp, stamp],
        )
        if cursor.rowcount != 1:
            return False
        if free_images > 0:
            entry = Entry(user_id, Cause.FREE, str(user_id), pictures=free_images)
            self._ledger.post(entry, now=now)
        return True

    def get(self, user_id: int) -> User | None:
        rows = list(self._db.query("SELECT * FROM users WHERE user_id = ?", [user_id]))
        return _row_to_user(rows[0]) if rows else None

    def ensure(
        self,
        user_id: int,
        *,
        now: datetime,
        free_images: int,
        first_name: str | None = None,
        language: str | None = None,
    ) -> User:
        """Return the user, creating them with *free_images* on first sight.

        A user who writes again is no longer blocked (they unblocked the bot to do so),
        and their name and language follow what Telegram reports now.
        """
        with self._db.atomic():
            self.ensure_row(user_id, now=now, free_images=free_images)
            self._db.execute(
                "UPDATE users SET first_name = coalesce(?, first_name),"
                " language = coalesce(?, language), blocked = 0, updated_at = ?"
                " WHERE user_id = ?",
                [first_name, language, to_iso(now), user_id],
            )
        user = self.get(user_id)
        assert user is not None  # just written
        return user

    def set_persona(self, user_id: int, persona_key: str, *, now: datetime) -> None:
        self._db.execute(
            "UPDATE users SET persona_key = ?, updated_at = ? WHERE user_id = ?",
            [persona_key, to_iso(now), user_id],
        )

    def set_blocked(self, user_id: int, *, blocked: bool, now: datetime) -> None:
        self._db.execute(
            "UPDATE users SET blocked = ?, updated_at = ? WHERE user_id = ?",
            [int(blocked), to_iso(now), user_id],
        )
