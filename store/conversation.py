"""The turns of each user's conversation with each persona, for the LLM's context."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlite_utils

from store.clock import to_iso

__all__ = ["Conversation", "Turn"]

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class Turn:
    role: Role
    text: str


class Conversation:
    """The ``turns`` table."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db

    def add(self, *, user_id: int, persona_key: str, role: Role, text: str, now: datetime) -> None:
        self._db.execute(
            "INSERT INTO turns (user_id, persona_key, role, text, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [user_id, persona_key, role, text, to_iso(now)],
        )

    def add_exchange(
        self, *, user_id: int, persona_key: str, asked: str, answered: str, now: datetime
    ) -> None:
        """The user's message and the persona's answer, together or not at all."""
        with self._db.atomic():
            self.add(user_id=user_id, persona_key=persona_key, role="user", text=asked, now=now)
            self.add(
                user_id=user_id, persona_key=persona_key, role="assistant", text=answered, now=now
            )

    def clear(self, *, user_id: int, persona_key: str) -> int:
        """Forget this user's turns with this persona (``/reset``); how many there were."""
        cursor = self._db.execute(
            "DELETE FROM turns WHERE user_id = ? AND persona_key = ?", [user_id, persona_key]
        )
        return cursor.rowcount

    def last(self, *, user_id: int, persona_key: str, limit: int) -> list[Turn]:
        """The newest *limit* turns, oldest first."""
        rows = self._db.query(
            "SELECT role, text FROM turns WHERE user_id = ? AND persona_key = ?"
            " ORDER BY id DESC LIMIT ?",
            [user_id, persona_key, limit],
        )
        turns = [Turn(role=row["role"], text=row["text"]) for row in rows]
        turns.reverse()
        return turns
