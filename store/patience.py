"""Store writes that wait out a locked database or a full disk without blocking the bot.

The store is synchronous and gives up at once when another process holds the database
(its busy timeout is a few milliseconds, so the event loop never freezes). :func:`persist`
runs one store operation, usually one transaction, and when it fails with a transient
error (locked, busy, disk full, I/O: :func:`store.errors.is_transient`, the project's one
meaning of "temporary") sleeps with backoff and runs it again, so other tasks go on
meanwhile. Any other error (a missing table, a damaged file) is raised at once: no wait
can mend it. A wait is logged once when it starts, then at most every
``WAIT_LOG_INTERVAL_S``, and once more when it ends.

This is the only place that waits for the store: the handlers' writes
(``bot.core.deps.Deps.write``), the polling's batches and the dispatcher's inbox all go
through it. Patience is the caller's: a handler gives up after ``STORE_PATIENCE_S`` (its
update is tried again later, then parked), the polling waits as long as it takes (its
batch is not confirmed to Telegram meanwhile), settling a job that holds a user's picture
too. A cancel during a wait leaves the operation undone, which every caller can afford:
each operation is one transaction.
"""

from __future__ import annotations

import logging
import math
import random
import sqlite3
from collections.abc import Callable
from typing import Final, TypeVar

import trio

from common.backoff import backoff_delays
from common.logfields import fields
from common.metrics import STORE_GAVE_UP, STORE_WAIT_SECONDS
from store.errors import StoreUnavailable, is_transient

__all__ = ["FOREVER", "STORE_PATIENCE_S", "WAIT_LOG_INTERVAL_S", "persist"]

log = logging.getLogger(__name__)

T = TypeVar("T")

STORE_PATIENCE_S: Final = 30.0  # a handler's writes; then the update is tried again later
FOREVER: Final = math.inf  # a job's charge or release: it must happen, however late
WAIT_LOG_INTERVAL_S: Final = 10.0
RETRY_INITIAL_S: Final = 0.05
RETRY_MAXIMUM_S: Final = 2.0


async def persist(
    what: str,
    operation: Callable[[], T],
    *,
    rng: random.Random,
    patience_s: float = STORE_PATIENCE_S,
) -> T:
    """Run *operation*, waiting out transient store errors for up to *patience_s*.

    Args:
        what: a few words for the log ("mark update 42 done").
        operation: one store call or transaction; it either happens whole or not at all.

    Raises:
        StoreUnavailable: it still failed after *patience_s*.
        sqlite3.Error: a failure that waiting cannot fix (a bug, a corrupt file).
    """
    delays = backoff_delays(initial_s=RETRY_INITIAL_S, maximum_s=RETRY_MAXIMUM_S, rng=rng)
    started = trio.current_time()
    logged_at: float | None = None
    while True:
        try:
            result = operation()
        except sqlite3.Error as exc:
            if not is_transient(exc):
                raise
            now = trio.current_time()
            waited = now - started
            if waited >= patience_s:
                STORE_GAVE_UP.inc()
                log.error(
                    "store_write_gave_up",
                    extra=fields(what=what, waited_s=round(waited, 1), error=str(exc)),
                )
                raise StoreUnavailable(f"{what}: {exc} (for {waited:.0f} s)") from exc
            if logged_at is None or now - logged_at >= WAIT_LOG_INTERVAL_S:
                log.warning(
                    "store_write_waiting",
                    extra=fields(what=what, waited_s=round(waited, 1), error=str(exc)),
                )
                logged_at = now
            await trio.sleep(min(next(delays), max(0.0, patience_s - waited)))
            continue
        if logged_at is not None:
            waited = trio.current_time() - started
            STORE_WAIT_SECONDS.observe(waited)
            log.info("store_write_done", extra=fields(what=what, waited_s=round(waited, 1)))
        return result
