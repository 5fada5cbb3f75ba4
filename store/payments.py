"""Telegram Stars payments: stored once, credited in the same transaction, refunded once.

Theory of operation
-------------------
Telegram may deliver one ``successful_payment`` more than once (a redelivered update, a
restart before the update left the inbox). The row's unique index on
``telegram_payment_charge_id`` makes the first delivery insert and every later one find
the row; the credit (pictures on the balance, or the subscription's new end) is written
in the *same* transaction as the insert, so a crash leaves either both or neither, and a
redelivery after such a crash credits exactly once.

The credit is a ledger entry (:mod:`store.ledger`): a pack's pictures go on the balance
and into the pack's own ``remaining`` (the pictures of it not yet reserved); a
subscription month adds 30 days after the current end (or from now), so a paid month
always adds its days, whatever an admin granted before.

A refund is the mirror image, in one transaction guarded by ``refunded_at IS NULL``, so
an admin's ``/refund`` and Telegram's ``refunded_payment`` message for the same charge
debit once. It takes back exactly what is left of what that payment gave: a pack's
pictures not yet reserved (a picture reserved from it and later released goes to the
refund too, not back to the user: ``store.quota``); a month's days not yet used, never a
newer month's (days added after it stay whole). Pictures already delivered cannot be
taken back; the row keeps how many were taken and how many were missing.

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
from store.ledger import Cause, Entry, Ledger
from store.users import Users

__all__ = [
    "SUBSCRIPTION_MONTH_S",
    "NewPayment",
    "PaymentKind",
    "PaymentRow",
    "Payments",
    "Recorded",
    "Refunded",
    "RevenueSummary",
    "revenue_summary",
]

SUBSCRIPTION_MONTH_S = 2_592_000  # 30 days: Telegram's only subscription period


class PaymentKind(enum.StrEnum):
    PACK = "pack"
    SUBSCRIPTION = "subscription"


@dataclass(frozen=True, slots=True)
class NewPayment:
    """A ``successful_payment`` and what it buys: *images*, or a subscription month
    (*subscription_until* is the end Telegram named; the month adds its 30 days)."""

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
    days_taken: float = 0.0  # of a subscription month


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

    def __init__(
        self, db: sqlite_utils.Database, events: Events, ledger: Ledger, users: Users
    ) -> None:
        self._db = db
        self._events = events
        self._ledger = ledger
        self._users = users

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
            self._users.ensure_row(payment.user_id, now=now, free_images=free_images)
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
        charge = payment.telegram_payment_charge_id
        if payment.kind is PaymentKind.PACK:
            entry = Entry(
                payment.user_id,
                Cause.PACK,
                charge,
                pictures=payment.images,
                paid=payment.images,
                lot=charge,
            )
        else:
            entry = Entry(payment.user_id, Cause.MONTH, charge, seconds=SUBSCRIPTION_MONTH_S)
        self._ledger.post(entry, now=now)

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
        """Take back what is left of what the charge gave, once; None for a charge never
        stored.

        *event* makes the ``payment_refunded`` row from what was taken back; it is written
        in the same transaction, only if this call refunded.
        """
        charge = telegram_payment_charge_id
        with self._db.atomic():
            payment = self.get(charge)
            if payment is None:
                return None
            if payment.refunded:
                return Refunded(payment, False, 0, 0, self._balance(payment.user_id))
            taken, seconds = 0, 0
            if payment.kind is PaymentKind.PACK:
                row = query_one(
                    self._db,
                    "SELECT remaining FROM payments WHERE telegram_payment_charge_id = ?",
                    [charge],
                )
                taken = int(row["remaining"]) if row is not None else 0
            else:
                seconds = self._month_left(payment.user_id, charge, now=now)
            entry = Entry(
                payment.user_id,
                Cause.REFUND,
                charge,
                pictures=-taken,
                paid=-taken,
                lot=charge if payment.kind is PaymentKind.PACK else None,
                seconds=-seconds,
            )
            self._ledger.post(entry, now=now)
            self._db.execute(
                "UPDATE payments SET refunded_at = ?, refund_taken = ?, refund_missing = ?"
                " WHERE telegram_payment_charge_id = ? AND refunded_at IS NULL",
                [to_iso(now), taken, payment.images - taken, charge],
            )
            refunded = Refunded(
                payment,
                True,
                taken,
                payment.images - taken,
                self._balance(payment.user_id),
                days_taken=seconds / 86_400,
            )
            if event is not None:
                self._events.add(event(refunded))
        return refunded

    def _month_left(self, user_id: int, charge: str, *, now: datetime) -> int:
        """Seconds of the month paid by *charge* not used yet: the time left on the
        subscription, less the days stacked after that month (which stay whole)."""
        row = query_one(
            self._db,
            "SELECT u.subscription_until AS until, l.seconds FROM users AS u JOIN ledger AS l"
            " ON l.user_id = u.user_id AND l.cause = ? AND l.ref = ? WHERE u.user_id = ?",
            [Cause.MONTH.value, charge, user_id],
        )
        if row is None or row["until"] is None:
            return 0
        left = (from_iso(row["until"]) - now).total_seconds()
        left -= self._ledger.later_subscription_seconds(user_id, charge)
        return int(max(0, min(int(row["seconds"]), left)))

    def _balance(self, user_id: int) -> int:
        row = query_one(self._db, "SELECT image_balance FROM users WHERE user_id = ?", [user_id])
        return 0 if row is None else int(row["image_balance"])

    def summary(self, *, since: datetime, until: datetime) -> RevenueSummary:
        """Revenue, sales and where delivered pictures came from, in [since, until]."""
        return _summary(self._db, since=since, until=until)


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
        return _summary(db, since=since, until=until)
    except sqlite3.OperationalError as exc:
        if "no such" in str(exc):
            return None
        raise


def _summary(db: sqlite_utils.Database, *, since: datetime, until: datetime) -> RevenueSummary:
    """Revenue, sales and where delivered pictures came from, in [since, until]."""
    window = [to_iso(since), to_iso(until)]
    sales = query_one(
        db,
        "SELECT coalesce(sum(total_amount), 0) AS stars,"
        " coalesce(sum(CASE WHEN refunded_at IS NOT NULL THEN total_amount END), 0)"
        " AS refunded, coalesce(sum(kind = 'pack'), 0) AS packs,"
        " coalesce(sum(kind = 'subscription'), 0) AS subs"
        " FROM payments WHERE created_at >= ? AND created_at <= ?",
        window,
    )
    subscribers = query_one(
        db,
        "SELECT count(DISTINCT users.user_id) AS n FROM users JOIN payments"
        " ON payments.user_id = users.user_id AND payments.kind = 'subscription'"
        " AND payments.refunded_at IS NULL WHERE users.subscription_until > ?",
        [to_iso(until)],
    )
    pictures = query_one(
        db,
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
