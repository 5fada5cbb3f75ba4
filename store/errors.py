"""Errors of the store, named for what the operator sees.

::

    StoreError                 the database cannot be used at all
    ├── DatabaseLocked         another process holds a lock on the file (at start)
    ├── InstanceRunning        another bot holds the database's instance lock
    └── StoreUnavailable       a write kept failing (locked elsewhere, disk full) past
                               the caller's patience

:func:`is_transient` says which ``sqlite3`` errors are worth waiting out: a database
locked or busy elsewhere, a full disk, an I/O error. The store itself never waits (its
busy timeout is short so a lock held elsewhere cannot freeze the event loop); the bot
waits them out asynchronously (``store/patience.py``).
"""

from __future__ import annotations

import sqlite3
from typing import Final

__all__ = ["DatabaseLocked", "InstanceRunning", "StoreError", "StoreUnavailable", "is_transient"]

# Primary result codes (the low byte of an extended code), from SQLite's sqlite3.h.
_SQLITE_IOERR: Final = 10
_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6
_SQLITE_FULL: Final = 13
_TRANSIENT_CODES: Final = frozenset({_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_FULL, _SQLITE_IOERR})
_TRANSIENT_WORDS: Final = ("locked", "busy", "disk is full", "disk i/o error")


class StoreError(Exception):
    """The database file cannot be opened, migrated or written."""


class DatabaseLocked(StoreError):
    """Another process holds a write lock on the database file."""


class InstanceRunning(StoreError):
    """Another bot process runs on this database (``store.instance_lock``)."""


class StoreUnavailable(StoreError):
    """A store operation kept failing with a transient error for longer than allowed."""


def is_transient(exc: BaseException) -> bool:
    """True for a sqlite3 error that may go away by itself: locked, busy, full, I/O."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _TRANSIENT_CODES
    text = str(exc).lower()
    return any(word in text for word in _TRANSIENT_WORDS)
