"""Prompts left on a ComfyUI server that a job moved away from, waiting to be tidied.

When a server stops answering with a job on it, the job goes to another server under the
same ``prompt_id`` and the copy it may have left behind is remembered here until that
server answers again and the copy is deleted (or interrupted): otherwise it would be
drawn for nobody. Kept in SQLite so that a restart in between does not forget it.
"""

from __future__ import annotations

from datetime import datetime

import sqlite_utils

from store.clock import to_iso

__all__ = ["AbandonedPrompts"]


class AbandonedPrompts:
    """The ``abandoned_prompts`` table."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db

    def add(self, server: str, prompt_id: str, *, now: datetime) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO abandoned_prompts (server, prompt_id, since) VALUES (?, ?, ?)",
            [server, prompt_id, to_iso(now)],
        )

    def remove(self, server: str, prompt_id: str) -> None:
        self._db.execute(
            "DELETE FROM abandoned_prompts WHERE server = ? AND prompt_id = ?",
            [server, prompt_id],
        )

    def by_server(self) -> dict[str, set[str]]:
        """Every remembered copy, by the server (``host:port``) it was left on."""
        found: dict[str, set[str]] = {}
        for row in self._db.query("SELECT server, prompt_id FROM abandoned_prompts"):
            found.setdefault(str(row["server"]), set()).add(str(row["prompt_id"]))
        return found
