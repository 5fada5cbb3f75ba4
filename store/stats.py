"""Reading the picture events back for ``/stats`` and ``python -m bot stats`` (docs/product.md, P9).

The operator runs the report beside a live bot, so the command line opens the file
read-only: it never creates, migrates or locks the database for writing. The bot itself
passes its own connection (``store.db``); the query is a plain ``SELECT`` either way.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import sqlite_utils

from store.clock import to_iso
from store.errors import StoreError

__all__ = ["IMAGE_EVENTS", "ImageEventRow", "image_events", "open_readonly"]

# The three events a press can produce (docs/product.md, P9); bot.analytics owns the names.
IMAGE_EVENTS: Final = ("image_requested", "image_generated", "image_failed")

_QUERY: Final = (
    "SELECT event, persona, reason, duration_ms FROM events_analytics"
    " WHERE event IN (?, ?, ?) AND ts >= ? AND ts <= ? ORDER BY id"
)


@dataclass(frozen=True, slots=True)
class ImageEventRow:
    """The part of one ``events_analytics`` row the report counts."""

    event: str
    persona: str | None = None
    reason: str | None = None
    duration_ms: int | None = None


def open_readonly(path: str | Path) -> sqlite_utils.Database:
    """Open an existing database file for reading only; a missing file is an error.

    Raises:
        StoreError: there is no file at *path*, or SQLite cannot open it.
    """
    file = Path(path)
    if not file.is_file():
        raise StoreError(f"no database at {str(file)!r}; set DATABASE_PATH or pass --database")
    try:
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"database {str(file)!r} cannot be opened: {exc}") from exc
    return sqlite_utils.Database(conn)


def image_events(
    db: sqlite_utils.Database, *, since: datetime, until: datetime
) -> list[ImageEventRow]:
    """The picture events with ``since <= ts <= until``, oldest first.

    Raises:
        StoreError: the file is not a database of this bot (no ``events_analytics``).
    """
    params = [*IMAGE_EVENTS, to_iso(since), to_iso(until)]
    try:
        rows = list(db.query(_QUERY, params))
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the events: {exc}") from exc
    return [
        ImageEventRow(
            event=row["event"],
            persona=row["persona"],
            reason=row["reason"],
            duration_ms=row["duration_ms"],
        )
        for row in rows
    ]
