"""Texts the bot sent: the source of truth for "is this press genuine" (docs/product.md, P7)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlite_utils

from store.clock import to_iso

__all__ = ["SentMessage", "SentMessages"]


@dataclass(frozen=True, slots=True)
class SentMessage:
    chat_id: int
    message_id: int
    user_id: int
    persona_key: str
    text: str
    photo_file_id: str | None


class SentMessages:
    """The ``sent_messages`` table."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db

    def add(
        self,
        *,
        chat_id: int,
        message_id: int,
        user_id: int,
        persona_key: str,
        text: str,
        now: datetime,
    ) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO sent_messages (chat_id, message_id, user_id, persona_key,"
            " text, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [chat_id, message_id, user_id, persona_key, text, to_iso(now)],
        )

    def get(self, *, chat_id: int, message_id: int) -> SentMessage | None:
        rows = list(
            self._db.query(
                "SELECT * FROM sent_messages WHERE chat_id = ? AND message_id = ?",
                [chat_id, message_id],
            )
        )
        if not rows:
            return None
        row = rows[0]
        return SentMessage(
            chat_id=int(row["chat_id"]),
            message_id=int(row["message_id"]),
            user_id=int(row["user_id"]),
            persona_key=str(row["persona_key"]),
            text=str(row["text"]),
            photo_file_id=row["photo_file_id"],
        )
