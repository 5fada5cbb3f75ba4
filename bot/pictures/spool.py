"""``spool/``: pictures drawn and not yet delivered, kept on disk beside the database.

A picture is written here before its job's row says ``downloaded`` (docs/decisions.md,
D14), so a restarted process can deliver it without asking ComfyUI again. A file lives
exactly as long as its job is active: whoever ends a job (:data:`~bot.pictures.lifecycle.ENDS`
says which exits end it; ``SHUTDOWN`` keeps it) deletes the file with :func:`discard`,
and every start deletes what no active job refers to (:func:`sweep`), so files of jobs
ended by a process that died before it could delete them never pile up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from common.logfields import fields

__all__ = ["SPOOL_FOLDER", "discard", "spool_folder", "sweep"]

log = logging.getLogger(__name__)

SPOOL_FOLDER: Final = "spool"


def spool_folder(database_path: Path) -> Path:
    """Where the pictures in flight wait: ``spool/`` beside the database file."""
    return database_path.parent / SPOOL_FOLDER


def discard(path: str | Path | None) -> None:
    """Delete a job's spool file, if it has one; a failure is logged, never raised (the
    next start's sweep tries again)."""
    if not path:
        return
    try:
        Path(path).unlink(missing_ok=True)
    except OSError as exc:
        log.warning("spool_file_not_deleted", extra=fields(path=path, error=str(exc)))


def sweep(folder: Path, *, keep: Iterable[str | Path | None]) -> int:
    """Delete every file in *folder* but the ones named in *keep* (the spool paths of the
    active jobs); the number deleted. Synchronous: run it before any worker can write."""
    kept = {Path(path).name for path in keep if path}
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return 0
    except OSError as exc:
        log.warning("spool_folder_not_swept", extra=fields(folder=folder, error=str(exc)))
        return 0
    deleted = 0
    for entry in entries:
        if entry.name in kept or not entry.is_file():
            continue
        discard(entry)
        if not entry.exists():
            deleted += 1
    if deleted:
        log.info("spool_swept", extra=fields(deleted=deleted))
    return deleted
