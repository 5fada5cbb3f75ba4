"""Image quota: reserve on a press, charge on delivery, release on any failure.

Theory of operation
-------------------
A user may draw on two sources: a *balance* of images (``users.image_balance``: a free
starting amount, topped up by an admin or a purchase) and a *subscription* (an end date)
that allows ``daily_limit`` images per UTC day without touching the balance. The
subscription is used first while it is active and today's allowance is not spent. Every
move of the balance or the subscription is an entry of the ledger (:mod:`store.ledger`),
posted in the same transaction as the job's own change.

A press *reserves* one image by inserting an active job row, in one transaction:

* balance: the picture comes from the free part first (``image_balance - paid_images``),
  then from the oldest pack with pictures left (the job's ``lot``); the ``reserve``
  entry takes it, and the balance's ``CHECK (>= 0)`` backs the arithmetic;
* subscription: today's active and delivered subscription jobs count against the limit;
* one active job per message: a second press on the same message finds it (and a
  unique partial index on ``jobs`` refuses a second row even if code raced);
* one job per update: the press's update is claimed in the same transaction, so the
  same update handled again (after a restart) reserves nothing twice.

A job's row then moves through one state machine, every step a guarded ``UPDATE``::

    queued → running → downloaded → delivering → delivered (charge)
       └────────┴───────────┴─────────────┴──────→ failed (release)

* ``start_delivering`` (``downloaded → delivering``) comes before the upload and
  ``release`` only from ``queued``/``running``/``downloaded``: they exclude each other,
  so a job a cancel released is never uploaded, and a cancel that comes once the upload
  has begun finds nothing to release (the user is told so);
* ``consume`` (``delivering → delivered``) charges; ``release`` from ``delivering`` is
  allowed only to the worker whose upload failed (``after_upload=True``).

Each is at most once, whoever calls it and however often. There are no awaits in here:
every operation runs to completion on the trio thread, so a cancel can only land before
or after one of them, never inside. A crash leaves either no row (nothing reserved) or an
active row that the next start resumes and ends with ``consume`` or ``release``.
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass, replace
from datetime import datetime

import sqlite_utils

from store.clock import from_iso, to_iso
from store.db import query_one
from store.events import EventRecord, Events
from store.jobs import ACTIVE_SQL, Job, Jobs, JobState, QuotaSource
from store.ledger import Cause, Entry, Ledger
from store.updates import UpdateInbox
from store.users import Users

__all__ = [
    "Granted",
    "NewJob",
    "Quota",
    "QuotaView",
    "Refusal",
    "pick_source",
    "quota_day",
]

DAY_S = 86_400
# Releasable by anyone (a cancel, a failure, a refund); ``delivering`` only by the worker
# whose upload failed.
_RELEASABLE_SQL = "('queued', 'running', 'downloaded')"


class Refusal(enum.Enum):
    NO_QUOTA = "no_quota"
    IN_FLIGHT = "in_flight"  # this message's picture is already being made
    HANDLED = "handled"  # this press (its update) was handled before: nothing more


@dataclass(frozen=True, slots=True)
class QuotaView:
    """What one user may spend right now."""

    balance: int
    subscription_until: datetime | None
    subscription_used_today: int
    daily_limit: int

    def subscription_active(self, now: datetime) -> bool:
        return self.subscription_until is not None and self.subscription_until > now

    def subscription_left_today(self, now: datetime) -> int:
        if not self.subscription_active(now):
            return 0
        return max(0, self.daily_limit - self.subscription_used_today)


def pick_source(view: QuotaView, *, now: datetime) -> QuotaSource | None:
    """Which source pays for one more image, or None when neither can."""
    if view.subscription_left_today(now) > 0:
        return QuotaSource.SUBSCRIPTION
    if view.balance > 0:
        return QuotaSource.BALANCE
    return None


@dataclass(frozen=True, slots=True)
class NewJob:
    job_id: str
    prompt_id: str
    user_id: int
    chat_id: int
    message_id: int
    persona_key: str
    language: str


@dataclass(frozen=True, slots=True)
class Granted:
    """What a ``/grant`` moved: *images* added (or taken, negative), the new balance."""

    images: int
    balance: int


def quota_day(now: datetime) -> str:
    """The UTC day a subscription image counts against."""
    return to_iso(now)[:10]


class Quota:
    """Reserve, start delivering, consume, release; grant and subscribe."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        jobs: Jobs,
        events: Events,
        ledger: Ledger,
        users: Users,
        updates: UpdateInbox,
    ) -> None:
        self._db = db
        self._jobs = jobs
        self._events = events
        self._ledger = ledger
        self._users = users
        self._updates = updates

    def view(self, user_id: int, *, now: datetime, daily_limit: int) -> QuotaView:
        row = query_one(
            self._db,
            "SELECT image_balance, subscription_until FROM users WHERE user_id = ?",
            [user_id],
        )
        balance, until = (row["image_balance"], row["subscription_until"]) if row else (0, None)
        used = query_one(
            self._db,
            "SELECT count(*) AS n FROM jobs WHERE user_id = ? AND quota_source = ?"
            " AND quota_day = ? AND state != ?",
            [user_id, QuotaSource.SUBSCRIPTION.value, quota_day(now), JobState.FAILED.value],
        )
        assert used is not None  # count(*) always yields a row
        return QuotaView(
            balance=int(balance),
            subscription_until=from_iso(until) if until else None,
            subscription_used_today=int(used["n"]),
            daily_limit=daily_limit,
        )

    def reserve(
        self,
        new: NewJob,
        *,
        now: datetime,
        daily_limit: int,
        event: EventRecord | None = None,
        update_id: int | None = None,
    ) -> Job | Refusal:
        """Reserve one image for *new* and record it as a queued job, or say why not.

        *event* (``image_requested``) is written in the same transaction as the job, so
        a job never exists without its request, nor a request without its job. With
        *update_id*, the press's update is claimed with the job (:data:`Refusal.HANDLED`
        when it was claimed before); a refusal claims nothing (its events do).
        """
        try:
            with self._db.atomic():
                if update_id is not None and self._updates.claimed(update_id):
                    return Refusal.HANDLED
                if self._jobs.active_for_message(chat_id=new.chat_id, message_id=new.message_id):
                    return Refusal.IN_FLIGHT
                view = self.view(new.user_id, now=now, daily_limit=daily_limit)
                source = pick_source(view, now=now)
                if source is None:
                    return Refusal.NO_QUOTA
                lot = self._lot_to_spend(new.user_id) if source is QuotaSource.BALANCE else None
                self._insert(new, source=source, lot=lot, now=now)
                taken = -1 if source is QuotaSource.BALANCE else 0
                self._ledger.post(
                    Entry(
                        new.user_id,
                        Cause.RESERVE,
                        new.job_id,
                        pictures=taken,
                        paid=taken if lot is not None else 0,
                        lot=lot,
                    ),
                    now=now,
                )
                if event is not None:
                    self._events.add(event)
                if update_id is not None:
                    self._updates.claim(update_id, now=now)
        except sqlite3.IntegrityError:
            return Refusal.IN_FLIGHT
        job = self._jobs.get(new.job_id)
        assert job is not None  # committed just above
        return job

    def _lot_to_spend(self, user_id: int) -> str | None:
        """The pack the next balance picture comes from: None while the free part lasts,
        then the oldest pack with pictures left."""
        row = query_one(
            self._db,
            "SELECT image_balance - paid_images AS free FROM users WHERE user_id = ?",
            [user_id],
        )
        if row is not None and row["free"] > 0:
            return None
        lot = query_one(
            self._db,
            "SELECT telegram_payment_charge_id AS charge FROM payments WHERE user_id = ?"
            " AND kind = 'pack' AND remaining > 0 ORDER BY id LIMIT 1",
            [user_id],
        )
        return str(lot["charge"]) if lot is not None else None

    def _insert(self, new: NewJob, *, source: QuotaSource, lot: str | None, now: datetime) -> None:
        stamp = to_iso(now)
        self._db.execute(
            "INSERT INTO jobs (job_id, prompt_id, user_id, chat_id, message_id, persona_key,"
            " language, state, quota_source, quota_day, lot, paid, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                new.job_id,
                new.prompt_id,
                new.user_id,
                new.chat_id,
                new.message_id,
                new.persona_key,
                new.language,
                JobState.QUEUED.value,
                source.value,
                quota_day(now),
                lot,
                int(lot is not None),
                stamp,
                stamp,
            ],
        )

    def start_delivering(self, job_id: str, *, now: datetime) -> bool:
        """The upload may begin: False if the job was released meanwhile (never upload).

        A job already ``delivering`` (resumed after a restart cut its upload short) may
        begin again.
        """
        cursor = self._db.execute(
            "UPDATE jobs SET state = ?, updated_at = ? WHERE job_id = ?"
            " AND state IN ('downloaded', 'delivering')",
            [JobState.DELIVERING.value, to_iso(now), job_id],
        )
        return cursor.rowcount == 1

    def consume(
        self, job_id: str, *, file_id: str, now: datetime, event: EventRecord | None = None
    ) -> bool:
        """Delivery happened: charge the reservation (``consume_image``). Once only.

        *event* (``image_generated``) is written in the same transaction, only if this
        call charged.
        """
        with self._db.atomic():
            cursor = self._db.execute(
                "UPDATE jobs SET state = ?, file_id = ?, updated_at = ?, finished_at = ?"
                " WHERE job_id = ? AND state = ?",
                [
                    JobState.DELIVERED.value,
                    file_id,
                    to_iso(now),
                    to_iso(now),
                    job_id,
                    JobState.DELIVERING.value,
                ],
            )
            if cursor.rowcount != 1:
                return False
            job = self._jobs.get(job_id)
            assert job is not None  # just updated
            self._ledger.post(Entry(job.user_id, Cause.CHARGE, job_id), now=now)
            self._db.execute(
                "UPDATE sent_messages SET photo_file_id = coalesce(photo_file_id, ?)"
                " WHERE chat_id = ? AND message_id = ?",
                [file_id, job.chat_id, job.message_id],
            )
            self._forget_if_asked(job)
            if event is not None:
                self._events.add(replace(event, server=event.server or job.server))
        return True

    def release(
        self,
        job_id: str,
        *,
        reason: str,
        detail: str,
        now: datetime,
        event: EventRecord | None = None,
        after_upload: bool = False,
    ) -> bool:
        """The job failed or was cancelled: give the image back. Once only.

        False when the job has ended already, or (unless *after_upload*, for the worker
        whose upload failed) when its upload has begun. The picture goes back to its pack,
        or, if that pack was refunded meanwhile, to the refund. *event* (``image_failed``)
        is written in the same transaction, only if this call released.
        """
        states = ACTIVE_SQL if after_upload else _RELEASABLE_SQL
        with self._db.atomic():
            cursor = self._db.execute(
                "UPDATE jobs SET state = ?, reason = ?, detail = ?, updated_at = ?,"
                f" finished_at = ? WHERE job_id = ? AND state IN {states}",
                [JobState.FAILED.value, reason, detail, to_iso(now), to_iso(now), job_id],
            )
            if cursor.rowcount != 1:
                return False
            job = self._jobs.get(job_id)
            assert job is not None  # just updated
            self._ledger.post(self._release_entry(job), now=now)
            self._forget_if_asked(job)
            if event is not None:
                self._events.add(replace(event, server=event.server or job.server))
        return True

    def _release_entry(self, job: Job) -> Entry:
        if job.quota_source is not QuotaSource.BALANCE:
            return Entry(job.user_id, Cause.RELEASE, job.job_id)
        if job.lot is None:
            return Entry(job.user_id, Cause.RELEASE, job.job_id, pictures=1)
        refunded = self._db.execute(
            "UPDATE payments SET refund_taken = refund_taken + 1,"
            " refund_missing = refund_missing - 1"
            " WHERE telegram_payment_charge_id = ? AND refunded_at IS NOT NULL",
            [job.lot],
        )
        if refunded.rowcount == 1:  # its pack was refunded: the refund takes the picture
            return Entry(job.user_id, Cause.RELEASE, job.job_id, lot=job.lot)
        return Entry(job.user_id, Cause.RELEASE, job.job_id, pictures=1, paid=1, lot=job.lot)

    def _forget_if_asked(self, job: Job) -> None:
        """The user asked to forget their texts while this job held its reply: now it ends,
        the reply and the job's scene go as well."""
        row = query_one(self._db, "SELECT forgotten_at FROM users WHERE user_id = ?", [job.user_id])
        if row is None or row["forgotten_at"] is None:
            return
        if from_iso(row["forgotten_at"]) < job.created_at:
            return  # a picture of a reply written after the /forget: kept
        self._db.execute(
            "DELETE FROM sent_messages WHERE chat_id = ? AND message_id = ? AND created_at <= ?",
            [job.chat_id, job.message_id, row["forgotten_at"]],
        )
        self._db.execute("UPDATE jobs SET graph = NULL WHERE job_id = ?", [job.job_id])

    def grant(
        self, user_id: int, images: int, *, now: datetime, free_images: int, ref: str
    ) -> Granted | None:
        """Add *images* to the balance (creating the user if needed); None if *ref* (the
        admin's update) was granted before.

        A negative grant takes from the free part only: pictures bought with Stars are
        taken back by refunding their payment.
        """
        with self._db.atomic():
            self._users.ensure_row(user_id, now=now, free_images=free_images)
            moved = images
            if images < 0:
                row = query_one(
                    self._db,
                    "SELECT image_balance - paid_images AS free FROM users WHERE user_id = ?",
                    [user_id],
                )
                moved = -min(-images, int(row["free"]) if row is not None else 0)
            if not self._ledger.post(Entry(user_id, Cause.GRANT, ref, pictures=moved), now=now):
                return None
        return Granted(moved, self.view(user_id, now=now, daily_limit=0).balance)

    def subscribe(
        self, user_id: int, days: int, *, now: datetime, free_images: int, ref: str
    ) -> datetime | None:
        """Add *days* to the subscription, after its end or from now; the new end, or None
        if *ref* (the admin's update) was applied before."""
        with self._db.atomic():
            self._users.ensure_row(user_id, now=now, free_images=free_images)
            entry = Entry(user_id, Cause.DAYS, ref, seconds=days * DAY_S)
            if not self._ledger.post(entry, now=now):
                return None
        until = self.view(user_id, now=now, daily_limit=0).subscription_until
        assert until is not None  # just extended
        return until
