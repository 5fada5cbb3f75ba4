"""SQLite storage for the bot: users, texts sent, conversations, quotas, jobs, events.

``open_store(path)`` opens the file (creating ``data/`` if needed), applies the
migrations and returns a :class:`Store` whose attributes are the repositories.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import sqlite_utils

from store.abandoned import AbandonedPrompts
from store.clock import from_iso, to_iso, utc_now
from store.conversation import Conversation, Turn
from store.db import BUSY_TIMEOUT_MS, MEMORY, OPEN_BUSY_TIMEOUT_MS, connect, translate
from store.errors import (
    DatabaseLocked,
    InstanceRunning,
    StoreError,
    StoreUnavailable,
    is_transient,
)
from store.events import EventRecord, Events
from store.jobs import ACTIVE_STATES, Job, Jobs, JobState, QuotaSource
from store.ledger import Cause, Entry, Ledger, Mismatch
from store.payments import (
    NewPayment,
    PaymentKind,
    PaymentRow,
    Payments,
    Recorded,
    Refunded,
    RevenueSummary,
)
from store.quota import Granted, NewJob, Quota, QuotaView, Refusal, pick_source
from store.schema import migrate
from store.sent_messages import SentMessage, SentMessages
from store.updates import UpdateInbox
from store.users import User, Users

__all__ = [
    "ACTIVE_STATES",
    "MEMORY",
    "AbandonedPrompts",
    "Cause",
    "Conversation",
    "DatabaseLocked",
    "Entry",
    "EventRecord",
    "Events",
    "Granted",
    "InstanceRunning",
    "Job",
    "JobState",
    "Jobs",
    "Ledger",
    "Mismatch",
    "NewJob",
    "NewPayment",
    "PaymentKind",
    "PaymentRow",
    "Payments",
    "Quota",
    "QuotaSource",
    "QuotaView",
    "Recorded",
    "Refunded",
    "Refusal",
    "RevenueSummary",
    "SentMessage",
    "SentMessages",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Turn",
    "UpdateInbox",
    "User",
    "Users",
    "from_iso",
    "is_transient",
    "open_store",
    "pick_source",
    "to_iso",
    "utc_now",
]


class Store:
    """The repositories over one connection; ``close()`` when done."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self.ledger = Ledger(db)
        self.users = Users(db, self.ledger)
        self.sent = SentMessages(db)
        self.conversation = Conversation(db)
        self.updates = UpdateInbox(db)
        self.events = Events(db)
        self.jobs = Jobs(db)
        self.quota = Quota(db, self.jobs, self.events, self.ledger, self.users, self.updates)
        self.payments = Payments(db, self.events, self.ledger, self.users)
        self.abandoned = AbandonedPrompts(db)

    def apply_once(self, update_id: int, operation: Callable[[], None], *, now: datetime) -> bool:
        """Run *operation* (store writes) and claim *update_id* in one transaction; False,
        and nothing written, if the update's effects were applied before."""
        with self.db.atomic():
            if not self.updates.claim(update_id, now=now):
                return False
            operation()
        return True

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_store(path: str | Path) -> Store:
    """Open the database at *path* (or ``":memory:"``) and migrate it.

    Raises:
        DatabaseLocked: another process holds the file locked.
        StoreError: the file cannot be opened or migrated.
    """
    # At start a short lock held elsewhere (a backup, a sqlite3 shell) is waited for;
    # once running, statements give up at once and the bot waits between attempts.
    db = connect(path, busy_timeout_ms=OPEN_BUSY_TIMEOUT_MS)
    try:
        migrate(db)
        # Prove we can write now: a lock held by another process (a second bot, an
        # open sqlite3 shell mid-transaction) is one clear line at start, not a crash later.
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")
    except sqlite3.DatabaseError as exc:
        db.close()
        raise translate(exc, path) from exc
    return Store(db)
