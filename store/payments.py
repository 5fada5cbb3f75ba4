"""Telegram Stars payments: stored once, credited in the same transaction, refunded once.

Theory of operation
-------------------
Telegram may deliver one ``successful_payment`` more than once (a redelivered update, a
restart before the update left the inbox). The row's unique index on
``telegram_payment_charge_id`` makes the first delivery insert and every later one find
the row; the credit (pictures on the balance, or the subscription's new end) is written
in the *same* transaction as the insert, so a crash leaves either both or neither, and a
redelivery after such a crash credits exactly once.

A refund is the mirror image: the row is marked refunded and what it credited is taken
back, in one transaction guarded by ``refunded_at IS NULL``, so an admin's ``/refund``
and Telegram's ``refunded_payment`` message for the same charge debit once. Pictures
already spent cannot be taken back: the balance never goes below zero and the row keeps
how many were taken and how many were missing.

There are no awaits in here (see :mod:`store.quota`).
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlite_utils

from store.clock import from_iso, to_iso
from store.db import query_one
from store.events import EventRecord, Events

__all__ = [
    "NewPayment",
    "PaymentKind",
    "PaymentRow",
    "Payments",
    "Recorded",
    "Refunded",
    "RevenueSummary",
    "revenue_summary",
]


class PaymentKind(enum.StrEnum):
    PACK = "pack"
    SUBSCRIPTION = "subscription"


@dataclass(frozen=True, slots=True)
class NewPayment:
    """A ``successful_payment`` and what it buys: *images*, or a subscription to *until*."""

    telegram_payment_charge_id: str
    provider_payment_charge_id: str
    user_id: int
    kind: PaymentKind
    invoice_payload: str
    currency: str
    total_amount: int
    images: int = 0
    subscription_until: datetime | None = None
    is_recurring: bool = False
    is_first_recurring: bool = False


@dataclass(frozen=True, slots=True)
class Recorded:
    """The outcome of :meth:`Payments.record`; *new* is False for a redelivery."""

    new: bool
    balance: int
    subscription_until: datetime | None


@dataclass(frozen=True, slots=True)
class PaymentRow:
    telegram_payment_charge_id: str
    user_id: int
    kind: PaymentKind
    total_amount: int
    images: int
    refunded: bool


@dataclass(frozen=True, slots=True)
class Refunded:
    """What a refund took back: *taken* pictures, *missing* ones already spent."""

    payment: PaymentRow
    new: bool  # False: this charge was refunded before; nothing moved now
    taken: int
    missing: int
    balance: int


@dataclass(frozen=True, slots=True)
class RevenueSummary:
    """The payments of a window, for the report."""

    stars: int  # paid, minus what was refunded
    refunded_stars: int
    packs_sold: int
    subscriptions_paid: int  # first payments and renewals
    active_subscribers: int  # at the end of the window
    paid_pictures: int  # delivered from the bought part of a balance
    free_pictures: int  # delivered from the free or granted part
    subscription_pictures: int


class Payments:
    """The ``payments`` table, and the balance moves that go with its rows."""

    def __init__(self, db: sqlite_utils.Database, events: Events) -> None:
        self._db = db
        self._events = events

    def record(
        self,
        payment: NewPayment,
        *,
        now: datetime,
        free_images: int,
        event: EventRecord | None = None,
    ) -> Recorded:
        """Store *payment* and credit it, once per charge id, in one transaction.

        *event* (``payment_succeeded``) is written in the same transaction, only if this
        call credited.
        """
        with self._db.atomic():
            self._db.execute(
                "INSERT OR IGNORE INTO users (user_id, image_balance, created_at, updated_at)"
                " VALUES (?, ?, ?, ?)",
                [payment.user_id, max(0, free_images), to_iso(now), to_iso(now)],
            )
            try:
                self._insert(payment, now=now)
            except sqlite3.IntegrityError:
                new = False
            else:
                new = True
                self._credit(payment, now=now)
                if event is not None:
                    self._events.add(event)
        return self._recorded(payment.user_id, new=new)

    def _insert(self, payment: NewPayment, *, now: datetime) -> None:
        until = payment.subscription_until
        self._db.execute(
            "INSERT INTO payments (telegram_payment_charge_id, provider_payment_charge_id,"
            " user_id, kind, invoice_payload, currency, total_amount, images,"
            " subscription_until, is_recurring, is_first_recurring, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                payment.telegram_payment_charge_id,
                payment.provider_payment_charge_id,
                payment.user_id,
                payment.kind.value,
                payment.invoice_payload,
                payment.currency,
                payment.total_amount,
                payment.images,
                to_iso(until) if until is not None else None,
                int(payment.is_recurring),
                int(payment.is_first_recurring),
                to_iso(now),
            ],
        )

    def _credit(self, payment: NewPayment, *, now: datetime) -> None:
        if payment.images:
            self._db.execute(
                "UPDATE users SET image_balance = image_balance + ?,"
                " paid_images = paid_images + ?, updated_at = ? WHERE user_id = ?",
                [payment.images, payment.images, to_iso(now), payment.user_id],
            )
        if payment.subscription_until is not None:
            # Renewals may arrive out of order: the subscription only ever grows.
            self._db.execute(
                "UPDATE users SET subscription_until = CASE WHEN subscription_until IS NULL"
                " OR subscription_until < ? THEN ? ELSE subscription_until END,"
                " updated_at = ? WHERE user_id = ?",
                [
                    to_iso(payment.subscription_until),
                    to_iso(payment.subscription_until),
                    to_iso(now),
                    payment.user_id,
                ],
            )

    def _recorded(self, user_id: int, *, new: bool) -> Recorded:
        row = query_one(
            self._db,
            "SELECT image_balance, subscription_until FROM users WHERE user_id = ?",
            [user_id],
        )
        assert row is not None  # ensured in record()
        until = row["subscription_until"]
        return Recorded(new, int(row["image_balance"]), from_iso(until) if until else None)

    def get(self, telegram_payment_charge_id: str) -> PaymentRow | None:
        row = query_one(
            self._db,
            "SELECT * FROM payments WHERE telegram_payment_charge_id = ?",
            [telegram_payment_charge_id],
        )
        if row is None:
            return None
        return PaymentRow(
            telegram_payment_charge_id=str(row["telegram_payment_charge_id"]),
            user_id=int(row["user_id"]),
            kind=PaymentKind(row["kind"]),
            total_amount=int(row["total_amount"]),
            images=int(row["images"]),
            refunded=row["refunded_at"] is not None,
        )

    def last_subscription_charge(self, user_id: int) -> str | None:
        """The charge id of *user_id*'s latest subscription payment (to stop its renewal)."""
        row = query_one(
            self._db,
            "SELECT telegram_payment_charge_id FROM payments WHERE user_id = ? AND kind = ?"
            " ORDER BY id DESC LIMIT 1",
            [user_id, PaymentKind.SUBSCRIPTION.value],
        )
        return None if row is None else str(row["telegram_payment_charge_id"])

    def refund(
        self,
        telegram_payment_charge_id: str,
        *,
        now: datetime,
        event: Callable[[Refunded], EventRecord] | None = None,
    ) -> Refunded | None:
        """Take back what the charge credited, once; None for a charge never stored.

        *event* makes the ``payment_refunded`` row from what was taken back; it is written
        in the same transaction, only if this call refunded.
        """
        with self._db.atomic():
            payment = self.get(telegram_payment_charge_id)
            if payment is None:
                return None
            if payment.refunded:
                return Refunded(payment, False, 0, 0, self._balance(payment.user_id))
            balance = self._balance(payment.user_id)
            taken = min(payment.images, balance)
            self._db.execute(
                "UPDATE payments SET refunded_at = ?, refund_taken = ?, refund_missing = ?"
                " WHERE telegram_payment_charge_id = ? AND refunded_at IS NULL",
                [to_iso(now), taken, payment.images - taken, telegram_payment_charge_id],
            )
            self._db.execute(
                "UPDATE users SET image_balance = image_balance - ?,"
                " paid_images = max(0, min(paid_images, image_balance) - ?), updated_at = ?"
                " WHERE user_id = ?",
                [taken, taken, to_iso(now), payment.user_id],
            )
            if payment.kind is PaymentKind.SUBSCRIPTION:
                # A refunded month ends now; an earlier, unrefunded month is not restored.
                self._db.execute(
                    "UPDATE users SET subscription_until = ? WHERE user_id = ?"
                    " AND subscription_until > ?",
                    [to_iso(now), payment.user_id, to_iso(now)],
                )
            refunded = Refunded(payment, True, taken, payment.images - taken, balance - taken)
            if event is not None:
                self._events.add(event(refunded))
        return refunded

    def _balance(self, user_id: int) -> int:
        row = query_one(self._db, "SELECT image_balance FROM users WHERE user_id = ?", [user_id])
        return 0 if row is None else int(row["image_balance"])

    def summary(self, *, since: datetime, until: datetime) -> RevenueSummary:
        """Revenue, sales and where delivered pictures came from, in [since, until]."""
        window = [to_iso(since), to_iso(until)]
        sales = query_one(
            self._db,
            "SELECT coalesce(sum(total_amount), 0) AS stars,"
            " coalesce(sum(CASE WHEN refunded_at IS NOT NULL THEN total_amount END), 0)"
            " AS refunded, coalesce(sum(kind = 'pack'), 0) AS packs,"
            " coalesce(sum(kind = 'subscription'), 0) AS subs"
            " FROM payments WHERE created_at >= ? AND created_at <= ?",
            window,
        )
        subscribers = query_one(
            self._db,
            "SELECT count(DISTINCT users.user_id) AS n FROM users JOIN payments"
            " ON payments.user_id = users.user_id AND payments.kind = 'subscription'"
            " AND payments.refunded_at IS NULL WHERE users.subscription_until > ?",
            [to_iso(until)],
        )
        pictures = query_one(
            self._db,
            "SELECT coalesce(sum(quota_source = 'balance' AND paid = 1), 0) AS paid,"
            " coalesce(sum(quota_source = 'balance' AND paid = 0), 0) AS free,"
            " coalesce(sum(quota_source = 'subscription'), 0) AS sub"
            " FROM jobs WHERE state = 'delivered' AND finished_at >= ? AND finished_at <= ?",
            window,
        )
        assert sales is not None  # aggregates always yield a row
        assert subscribers is not None
        assert pictures is not None
        return RevenueSummary(
            stars=int(sales["stars"]) - int(sales["refunded"]),
            refunded_stars=int(sales["refunded"]),
            packs_sold=int(sales["packs"]),
            subscriptions_paid=int(sales["subs"]),
            active_subscribers=int(subscribers["n"]),
            paid_pictures=int(pictures["paid"]),
            free_pictures=int(pictures["free"]),
            subscription_pictures=int(pictures["sub"]),
        )


def revenue_summary(
    db: sqlite_utils.Database, *, since: datetime, until: datetime
) -> RevenueSummary | None:
    """:meth:`Payments.summary` over any connection (the report's read-only one too).

    None while the bot has never taken a payment (the report then has no payments
    section), and for a database from before payments existed.
    """
    try:
        if query_one(db, "SELECT 1 AS one FROM payments LIMIT 1") is None:
            return None
        return Payments(db, Events(db)).summary(since=since, until=until)
    except sqlite3.OperationalError as exc:
        if "no such" in str(exc):
            return None
        raise
