"""One SQLite connection for the whole process, opened through sqlite-utils 4.

The bot runs on one trio thread, and every query here is a few microseconds, so the
connection stays on that thread (sqlite3's default ``check_same_thread=True``). WAL lets
``sqlite3``/``sqlite-utils`` readers (the operator's diagnostics) work beside the bot;
``synchronous=NORMAL`` is safe from corruption in WAL mode; a short busy timeout keeps a
stray lock from freezing the event loop for long (docs/libraries.md, L24 to L26).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import sqlite_utils

from store.errors import DatabaseLocked, StoreError

__all__ = ["BUSY_TIMEOUT_MS", "MEMORY", "OPEN_BUSY_TIMEOUT_MS", "connect", "query_one", "translate"]

# How long one statement waits for a lock another process holds, on the event loop's
# thread: kept short, so a lock held elsewhere never freezes the bot. Longer waits happen
# asynchronously, between attempts (store/patience.py).
BUSY_TIMEOUT_MS: Final = 20
OPEN_BUSY_TIMEOUT_MS: Final = 2000  # at start, before anything else runs
MEMORY: Final = ":memory:"


def connect(path: str | Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite_utils.Database:
    """Open (creating its folder if needed) the database at *path*, WAL and pragmas set.

    Raises:
        DatabaseLocked: another process holds the file locked.
        StoreError: the file or its folder cannot be opened.
    """
    if str(path) != MEMORY:
        folder = Path(path).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the database folder {str(folder)!r}: {exc}") from exc
        try:
            create_private(Path(path))
        except OSError as exc:
            raise StoreError(f"cannot create the database {str(path)!r}: {exc.strerror}") from exc
    try:
        conn = sqlite3.connect(str(path), timeout=busy_timeout_ms / 1000)
        db = sqlite_utils.Database(conn)
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if str(path) != MEMORY:
            db.enable_wal()
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:  # OperationalError, or a file that is not SQLite
        raise translate(exc, path) from exc
    return db


def create_private(path: Path) -> None:
    """Create *path* empty, readable by its owner only, if it does not exist yet.

    The database holds users' words and payments: whatever the umask, it is 0600.
    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode, and an empty
    file is an empty database to it.
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


def translate(exc: sqlite3.DatabaseError, path: str | Path) -> StoreError:
    """Turn sqlite3's error into one line an operator can act on."""
    if not isinstance(exc, sqlite3.OperationalError):  # "file is not a database", "malformed"
        return StoreError(
            f"database {str(path)!r} is damaged or not an SQLite file ({exc}); "
            "restore it from a backup, or move it away to start with an empty one"
        )
    if "locked" in str(exc) or "busy" in str(exc):
        return DatabaseLocked(
            f"database {str(path)!r} is locked by another process; "
            "stop the other bot instance or sqlite3 session and start again"
        )
    return StoreError(f"database {str(path)!r} cannot be used: {exc}")


def query_one(
    db: sqlite_utils.Database, sql: str, params: Sequence[object] = ()
) -> dict[str, Any] | None:
    """The first row of *sql*, or None."""
    return next(iter(db.query(sql, params)), None)
