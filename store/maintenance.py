"""The operator's side of the database: which migrations it has, and a consistent copy.

Both work beside a running bot. Reading the migration record takes no write lock.
:func:`backup` uses SQLite's online backup API in one step: it copies every page under
one read transaction, so the copy is the database as of one moment, whatever the bot
writes meanwhile (in WAL mode readers and the writer do not wait for each other;
docs/libraries.md, L34).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import sqlite_utils

from store.db import BUSY_TIMEOUT_MS, create_private, translate
from store.errors import StoreError
from store.schema import MIGRATIONS, migration_names

__all__ = ["BackupResult", "SchemaStatus", "backup", "open_as_is", "schema_status"]

_PARTIAL_SUFFIX: Final = ".partial"


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """The migrations a database has, against the ones this version of the bot ships."""

    applied: tuple[str, ...]
    pending: tuple[str, ...]
    unknown: tuple[str, ...]  # applied by a newer version of the bot

    @property
    def version(self) -> str:
        """The name of the last migration applied, or ``empty`` for a new file."""
        return self.applied[-1] if self.applied else "empty"


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    size_bytes: int
    schema: SchemaStatus


def schema_status(db: sqlite_utils.Database) -> SchemaStatus:
    """Compare *db*'s migration record with :data:`store.schema.MIGRATIONS`; read-only."""
    shipped = set(migration_names())
    applied = tuple(migration.name for migration in MIGRATIONS.applied(db))
    return SchemaStatus(
        applied=applied,
        pending=tuple(migration.name for migration in MIGRATIONS.pending(db)),
        unknown=tuple(name for name in applied if name not in shipped),
    )


def open_as_is(path: Path) -> sqlite_utils.Database:
    """Open an existing database without changing it: no migration, no journal mode switch.

    Raises:
        StoreError: there is no file at *path*, or SQLite cannot open it.
    """
    try:
        # mode=rw: never create an empty database where the real one is missing.
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_MS / 1000
        )
    except sqlite3.OperationalError as exc:
        raise translate(exc, path) from exc
    return sqlite_utils.Database(conn)


def backup(source: Path, target: Path) -> BackupResult:
    """Copy the database at *source* to *target*, consistent even while the bot writes.

    The copy is written beside *target* and renamed over it only when complete and
    checked, so an interrupted backup never leaves a half file under the final name. The
    copy is a single file (journal mode DELETE), ready to be put back as it is.

    Raises:
        StoreError: *source* is missing or unreadable, *target* is the database itself,
            or the copy cannot be written or fails SQLite's integrity check.
    """
    if not source.is_file():
        raise StoreError(f"database {str(source)!r} does not exist; check DATABASE_PATH")
    if target.exists() and target.resolve() == source.resolve():
        raise StoreError(f"backup target {str(target)!r} is the database itself; name a new file")
    if not target.parent.is_dir():
        raise StoreError(f"cannot write the backup {str(target)!r}: its folder does not exist")
    partial = target.with_name(target.name + _PARTIAL_SUFFIX)
    src = open_as_is(source).conn
    try:
        partial.unlink(missing_ok=True)
        create_private(partial)  # a copy of users' words: the owner's only
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # pages=-1: every page in one step, one read transaction
            dst.execute("PRAGMA journal_mode = DELETE")
            check = dst.execute("PRAGMA integrity_check").fetchone()
            if check is None or check[0] != "ok":
                raise StoreError(f"the copy failed SQLite's integrity check: {check}")
            schema = schema_status(sqlite_utils.Database(dst))
        finally:
            dst.close()
        os.replace(partial, target)
    except sqlite3.OperationalError as exc:
        raise translate(exc, source) from exc
    except OSError as exc:
        raise StoreError(f"cannot write the backup {str(target)!r}: {exc.strerror}") from exc
    finally:
        src.close()
        partial.unlink(missing_ok=True)
    return BackupResult(path=target, size_bytes=target.stat().st_size, schema=schema)
