"""One bot per database: an exclusive lock on a file beside it, held for the process's life.

Two bots on one database would resume each other's jobs (one prompt submitted twice, two
photos for one charge) and handle the same inbox twice. So the bot takes
``flock(LOCK_EX | LOCK_NB)`` on ``<database>.lock`` before anything opens the database,
and holds it until the process ends. The kernel drops the lock when the process dies,
however it dies, so a lock file left behind is harmless and is never deleted (deleting
it would let a third process lock a new file while the second still holds the old one).
The holder's pid is written into the file for the operator; the lock, not the pid, is
what counts.

Readers (``stats``) and ``doctor`` never take the lock; ``doctor`` only asks who holds it
(:func:`lock_holder`). See docs/decisions.md, D22, and docs/libraries.md, L32.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from store.db import MEMORY
from store.errors import InstanceRunning, StoreError

__all__ = ["LOCK_SUFFIX", "NO_PID", "hold_instance_lock", "lock_holder", "lock_path"]

LOCK_SUFFIX: Final = ".lock"
NO_PID: Final = 0  # the holder wrote no pid (yet)


def lock_path(database: str | Path) -> Path:
    """The lock file of *database*: ``bot.db`` → ``bot.db.lock``."""
    path = Path(database)
    return path.with_name(path.name + LOCK_SUFFIX)


@contextmanager
def hold_instance_lock(database: str | Path) -> Iterator[None]:
    """Hold *database*'s instance lock for the ``with`` block (nothing for ``:memory:``).

    Raises:
        InstanceRunning: another process holds it.
        StoreError: the lock file cannot be created or opened.
    """
    if str(database) == MEMORY:
        yield
        return
    path = lock_path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot create the lock file {str(path)!r}: {exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _running(database, _read_pid(fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def lock_holder(database: str | Path) -> int | None:
    """The pid of the process that holds *database*'s lock (:data:`NO_PID` if it wrote
    none), or None when nobody holds it. Creates nothing.

    Asking takes a shared lock for an instant; a bot starting in that instant would be
    refused once, which is why only ``doctor`` asks.
    """
    try:
        fd = os.open(lock_path(database), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd)
        return None  # closing the descriptor lets go of the shared lock at once
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode("ascii", errors="replace").strip())
    except (OSError, ValueError):
        return NO_PID


def _running(database: str | Path, pid: int) -> InstanceRunning:
    holder = f"pid {pid}" if pid != NO_PID else "another process"
    return InstanceRunning(
        f"database {str(database)!r} is in use by another running bot ({holder} holds "
        f"{str(lock_path(database))!r}); stop it first, or give this one its own DATABASE_PATH"
    )
