"""Errors of the store, named for what the operator sees.

::

    StoreError                 the database cannot be used at all
    ├── DatabaseLocked         another process holds a lock on the file
    └── InstanceRunning        another bot holds the database's instance lock
"""

from __future__ import annotations

__all__ = ["DatabaseLocked", "InstanceRunning", "StoreError"]


class StoreError(Exception):
    """The database file cannot be opened, migrated or written."""


class DatabaseLocked(StoreError):
    """Another process holds a write lock on the database file."""


class InstanceRunning(StoreError):
    """Another bot process runs on this database (``store.instance_lock``)."""
