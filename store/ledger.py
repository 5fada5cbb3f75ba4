"""The ledger: every change to a user's pictures or subscription, with its cause.

Theory of operation
-------------------
A user's money is three numbers on their ``users`` row: ``image_balance`` (pictures they
may spend), ``paid_images`` (the part of it bought with Stars, spent after the free part)
and ``subscription_until``. None of them is ever written except by :meth:`Ledger.post`,
which inserts one :class:`Entry` and moves the numbers by its amounts in the same
transaction as the caller's own change (a job's state, a payment's row). So at any time:

* ``image_balance`` is the sum of the user's entries' ``pictures``, ``paid_images`` the
  sum of their ``paid``; a pack's ``payments.remaining`` (its pictures not yet reserved)
  is the sum of ``paid`` over the entries naming it as their ``lot``;
* ``subscription_until`` is the ``until`` of the user's latest entry that moved it, and
  each such entry's ``until`` follows from the one before: an addition starts at the
  later of the old end and its own time (days are stacked, never merged), a refund takes
  its seconds off the end.

:func:`check` recomputes all of it from the ledger and names every row that differs
(``python -m bot doctor`` runs it). Each cause happens once per reference: the unique
``(cause, ref)`` makes a second post of the same payment, grant or reservation a no-op
that :meth:`Ledger.post` reports (False), which is how a handler run twice for one update
changes nothing twice.

A picture's way: ``free``/``grant``/``pack`` put it on the balance; ``reserve`` takes it
(from the free part first, then from the oldest pack with pictures left: its ``lot``);
``charge`` keeps it taken (the picture was delivered); ``release`` gives it back, to its
pack if that pack was not refunded meanwhile (otherwise the refund takes it: nobody gets
it back). Subscription pictures move no balance; their entries say ``0``.
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlite_utils

from store.clock import from_iso, to_iso
from store.db import query_one

__all__ = ["Cause", "Entry", "Ledger", "Mismatch", "check", "subscription_after"]


class Cause(enum.StrEnum):
    """Why a user's pictures or subscription changed; each happens once per ``ref``."""

    OPENING = "opening"  # what a user (or a pack) held when the ledger began (migration)
    FREE = "free"  # the free allowance, when the user is first seen (ref: user id)
    PACK = "pack"  # a pack of pictures bought (ref: charge id; lot: the same)
    MONTH = "month"  # a subscription month paid, first or renewed (ref: charge id)
    GRANT = "grant"  # an admin's /grant (ref: its update id)
    DAYS = "days"  # an admin's /subscribe (ref: its update id)
    RESERVE = "reserve"  # a press reserved a picture (ref: job id)
    CHARGE = "charge"  # its picture was delivered (ref: job id)
    RELEASE = "release"  # it was not: the picture goes back (ref: job id)
    REFUND = "refund"  # a payment refunded: what was left of it goes (ref: charge id)


@dataclass(frozen=True, slots=True)
class Entry:
    """One change: *pictures* and *paid* move the balance and its bought part, *lot* names
    the pack whose pictures *paid* moves, *seconds* moves the subscription's end."""

    user_id: int
    cause: Cause
    ref: str
    pictures: int = 0
    paid: int = 0
    lot: str | None = None
    seconds: int = 0


def subscription_after(until: datetime | None, now: datetime, seconds: int) -> datetime | None:
    """PURE: the subscription's end after an entry of *seconds* at *now*.

    Added time starts at the later of the old end and *now* (a lapsed subscription starts
    again from now; an active one is extended from its end); taken time comes off the end.
    """
    if seconds > 0:
        start = until if until is not None and until > now else now
        return start + timedelta(seconds=seconds)
    if seconds < 0 and until is not None:
        return until + timedelta(seconds=seconds)
    return until


class Ledger:
    """The ``ledger`` table, and the one writer of the balances it explains."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db

    def post(self, entry: Entry, *, now: datetime) -> bool:
        """Record *entry* and apply it to the user's row (and its lot); False if this cause
        was posted for this ``ref`` before (nothing changes then).

        Call inside the transaction of the change the entry records. The user's row must
        exist.

        Raises:
            sqlite3.IntegrityError: the entry would take a balance, its bought part or a
                pack below zero (a bug in the caller: it computes amounts first).
        """
        until: datetime | None = None
        if entry.seconds:
            row = query_one(
                self._db,
                "SELECT subscription_until FROM users WHERE user_id = ?",
                [entry.user_id],
            )
            current = (
                from_iso(row["subscription_until"]) if row and row["subscription_until"] else None
            )
            until = subscription_after(current, now, entry.seconds)
        try:
            self._db.execute(
                "INSERT INTO ledger (ts, user_id, cause, ref, pictures, paid, lot, seconds, until)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    to_iso(now),
                    entry.user_id,
                    entry.cause.value,
                    entry.ref,
                    entry.pictures,
                    entry.paid,
                    entry.lot,
                    entry.seconds,
                    to_iso(until) if until is not None else None,
                ],
            )
        except sqlite3.IntegrityError as exc:
            if "ledger.cause, ledger.ref" in str(exc) or "ledger_once" in str(exc):
                return False
            raise
        if entry.pictures or entry.paid:
            self._db.execute(
                "UPDATE users SET image_balance = image_balance + ?,"
                " paid_images = paid_images + ?, updated_at = ? WHERE user_id = ?",
                [entry.pictures, entry.paid, to_iso(now), entry.user_id],
            )
        if entry.seconds:
            self._db.execute(
                "UPDATE users SET subscription_until = ?, updated_at = ? WHERE user_id = ?",
                [to_iso(until) if until is not None else None, to_iso(now), entry.user_id],
            )
        if entry.lot is not None and entry.paid:
            self._db.execute(
                "UPDATE payments SET remaining = remaining + ?"
                " WHERE telegram_payment_charge_id = ?",
                [entry.paid, entry.lot],
            )
        return True

    def posted(self, cause: Cause, ref: str) -> bool:
        """Whether *cause* was posted for *ref*."""
        row = query_one(
            self._db, "SELECT 1 AS one FROM ledger WHERE cause = ? AND ref = ?", [cause.value, ref]
        )
        return row is not None

    def later_subscription_seconds(self, user_id: int, after_ref: str) -> int:
        """Seconds added to *user_id*'s subscription after the entry of month *after_ref*
        by entries that still stand (admin days, and months not refunded since)."""
        row = query_one(
            self._db,
            "SELECT coalesce(sum(l.seconds), 0) AS n FROM ledger AS l"
            " WHERE l.user_id = ? AND l.seconds > 0 AND l.id > (SELECT id FROM ledger"
            " WHERE cause = ? AND ref = ?) AND NOT EXISTS (SELECT 1 FROM ledger AS r"
            " WHERE r.cause = ? AND r.ref = l.ref AND l.cause = ?)",
            [user_id, Cause.MONTH.value, after_ref, Cause.REFUND.value, Cause.MONTH.value],
        )
        return int(row["n"]) if row is not None else 0


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A number the ledger does not explain: where, what the row says, what it should."""

    where: str
    stored: object
    expected: object

    def line(self) -> str:
        return f"{self.where}: stored {self.stored!r}, the ledger says {self.expected!r}"


def check(db: sqlite_utils.Database, *, limit: int = 20) -> list[Mismatch]:
    """Every balance, bought part, pack and subscription end the ledger does not explain
    (at most *limit*); empty when all agree. Read-only."""
    found: list[Mismatch] = []
    for row in db.query(
        "SELECT u.user_id, u.image_balance, u.paid_images, coalesce(sum(l.pictures), 0) AS p,"
        " coalesce(sum(l.paid), 0) AS q FROM users AS u LEFT JOIN ledger AS l"
        " ON l.user_id = u.user_id GROUP BY u.user_id"
        " HAVING u.image_balance != p OR u.paid_images != q OR p < 0 OR q < 0 OR q > p"
        f" LIMIT {int(limit)}"
    ):
        user = row["user_id"]
        if row["image_balance"] != row["p"]:
            found.append(Mismatch(f"user {user} balance", row["image_balance"], row["p"]))
        if row["paid_images"] != row["q"]:
            found.append(Mismatch(f"user {user} bought pictures", row["paid_images"], row["q"]))
        if row["q"] > row["p"] or row["p"] < 0 or row["q"] < 0:
            found.append(Mismatch(f"user {user} bought part", row["q"], f"0..{row['p']}"))
    for row in db.query(
        "SELECT p.telegram_payment_charge_id AS charge, p.remaining,"
        " coalesce((SELECT sum(paid) FROM ledger WHERE lot = p.telegram_payment_charge_id), 0)"
        " AS expected FROM payments AS p WHERE p.kind = 'pack' AND p.remaining !="
        " coalesce((SELECT sum(paid) FROM ledger WHERE lot = p.telegram_payment_charge_id), 0)"
        f" LIMIT {int(limit)}"
    ):
        found.append(Mismatch(f"pack {row['charge']} left", row["remaining"], row["expected"]))
    found += _subscriptions(db, limit=limit)
    return found[:limit]


def _subscriptions(db: sqlite_utils.Database, *, limit: int) -> list[Mismatch]:
    """Each user's subscription end, replayed from their entries."""
    found: list[Mismatch] = []
    replayed: dict[int, datetime | None] = {}
    for row in db.query(
        "SELECT user_id, cause, ts, seconds, until FROM ledger"
        " WHERE seconds != 0 OR cause = 'opening' ORDER BY id"
    ):
        user = int(row["user_id"])
        stated = from_iso(row["until"]) if row["until"] else None
        if row["cause"] == Cause.OPENING and not row["seconds"]:
            if stated is not None:
                replayed[user] = stated
            continue
        expected = subscription_after(replayed.get(user), from_iso(row["ts"]), int(row["seconds"]))
        if stated != expected and len(found) < limit:
            found.append(Mismatch(f"user {user} entry {row['cause']} until", stated, expected))
        replayed[user] = stated
    for row in db.query("SELECT user_id, subscription_until FROM users"):
        user = int(row["user_id"])
        stored = from_iso(row["subscription_until"]) if row["subscription_until"] else None
        until = replayed.get(user)
        if stored != until and len(found) < limit:
            found.append(Mismatch(f"user {user} subscription end", stored, until))
    return found
