"""The background task that deletes what has been kept long enough (docs/product.md, P20).

Every ``PRUNE_EVERY_S`` (and once at start) each table's rule from
``store.retention.prune_rules`` is applied in batches of ``BATCH_ROWS``, one transaction
each, with a checkpoint between batches, so a first run over months of rows never holds
the event loop or the database for long. A cancel (a stop) lands between two batches:
every batch before it is committed, nothing is half done, and the next start goes on.
A database error (another process holding a lock, a full disk) ends only this cycle,
with one warning; the next cycle tries again.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Final

import trio

from common.logfields import fields
from store import Store, StoreError
from store.retention import RetentionPolicy, Table, prune_batch, prune_rules

__all__ = ["BATCH_PAUSE_S", "BATCH_ROWS", "PRUNE_EVERY_S", "prune_once", "run_retention"]

log = logging.getLogger(__name__)

PRUNE_EVERY_S: Final = 3600.0
BATCH_ROWS: Final = 500  # a few milliseconds of deleting with the indexes updated
BATCH_PAUSE_S: Final = 0.01  # between batches: the chat's updates run in between


async def run_retention(
    store: Store,
    policy: RetentionPolicy,
    now: Callable[[], datetime],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Prune now and every :data:`PRUNE_EVERY_S` until cancelled."""
    task_status.started()
    while True:
        await prune_once(store, policy, now())
        await trio.sleep(PRUNE_EVERY_S)


async def prune_once(store: Store, policy: RetentionPolicy, now: datetime) -> dict[Table, int]:
    """Apply every rule at *now* in batches; how many rows each table lost.

    A database error stops the cycle (logged once); what was deleted before it stays
    deleted.
    """
    pruned: dict[Table, int] = {}
    for rule in prune_rules(policy, now):
        while True:
            try:
                deleted = prune_batch(store.db, rule, BATCH_ROWS)
            except (sqlite3.Error, StoreError) as exc:
                log.warning(
                    "retention_stopped_until_next_cycle",
                    extra=fields(table=rule.table.value, error=str(exc)),
                )
                return pruned
            pruned[rule.table] = pruned.get(rule.table, 0) + deleted
            await trio.sleep(BATCH_PAUSE_S)
            if deleted < BATCH_ROWS:
                break
    if any(pruned.values()):
        log.info("retention_pruned", extra=fields(**{t.value: n for t, n in pruned.items()}))
    return pruned
