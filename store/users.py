"""Users: language, chosen persona, blocked flag, image balance and subscription."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlite_utils

from store.clock import from_iso, to_iso

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
    """The ``users`` table."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db

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
        stamp = to_iso(now)
        self._db.execute(
            "INSERT INTO users (user_id, first_name, language, image_balance, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(user_id) DO UPDATE SET"
            " first_name = coalesce(?, first_name), language = coalesce(?, language),"
            " blocked = 0, updated_at = excluded.updated_at",
            [
                user_id,
                first_name or "",
                language or "ru",
                max(0, free_images),
                stamp,
                stamp,
                first_name,
                language,
            ],
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
