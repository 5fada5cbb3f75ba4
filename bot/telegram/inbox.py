"""What polling and the dispatcher need of the durable update inbox.

``store.UpdateInbox`` implements it over SQLite; tests use an in-memory one. Polling
writes each batch with the next offset before the next ``getUpdates`` confirms it to
Telegram; the dispatcher marks an update done once handled, or parks it when its handler
keeps failing. The methods may raise when the database is unavailable; the callers wait
and try again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["Inbox"]


class Inbox(Protocol):
    """Updates received but not yet handled, and the offset for the next ``getUpdates``."""

    def next_offset(self) -> int | None:
        """The offset for the next getUpdates; None before the first batch."""

    def save_batch(self, updates: Sequence[tuple[int, str]], *, next_offset: int) -> None:
        """Store ``(update_id, raw_json)`` pairs and the offset in one transaction."""

    def pending(self) -> list[tuple[int, str]]:
        """Updates received but not yet done, by ``update_id``."""

    def mark_done(self, update_id: int) -> None:
        """Record that the update was handled."""

    def park(self, update_id: int, reason: str) -> None:
        """Set the update aside, with why: its handler kept failing. Kept, not handled."""
