"""Image quota: reserve on a press, charge on delivery, release on any failure.

Theory of operation
-------------------
A user may draw on two sources: a *balance* of images (``users.image_balance``: a free
starting amount, topped up by an admin or a purchase) and a *subscription* (an end date)
that allows ``daily_limit`` images per UTC day without touching the balance. The
subscription is used first while it is active and today's allowance is not spent.

A press *reserves* one image by inserting an active job row, in one transaction:

* balance: ``UPDATE users SET image_balance = image_balance - 1 WHERE ... > 0`` is the
  single statement that decides; two presses with one image left cannot both pass it.
* subscription: today's active and delivered subscription jobs count against the limit.
* one active job per message: a second press on the same message finds it (and a
  unique partial index on ``jobs`` refuses a second row even if code raced).

Then exactly one of two things ends the reservation:

* ``consume`` (delivery): the job becomes ``delivered``; the balance was already taken,
  so nothing moves: this is the moment the image counts as charged.
* ``release`` (any failure, cancel, timeout): the job becomes ``failed`` and a balance
  image is given back.

Both are guarded state changes (``WHERE state IN active``), so calling either twice, or
one after the other, changes money at most once. There are no awaits in here: every
operation runs to completion on the trio thread, so a cancel can only land before or
after one of them, never inside. A crash leaves either no row (nothing reserved) or an
active row that the next start resumes and ends with ``consume`` or ``release``.
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import sqlite_utils

from store.clock import from_iso, to_iso
from store.db import query_one
from store.events import EventRecord, Events
from store.jobs import ACTIVE_SQL, Job, Jobs, JobState, QuotaSource

__all__ = [
    "NewJob",
    "Quota",
    "QuotaView",
    "Refusal",
    "pick_source",
]


class Refusal(enum.Enum):
    NO_QUOTA = "no_quota"
    IN_FLIGHT = "in_flight"  # this message's picture is already being made


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


def quota_day(now: datetime) -> str:
    """The UTC day a subscription image counts against."""
    return to_iso(now)[:10]


class Quota:
    """Reserve, consume and release, each one transaction."""

    def __init__(self, db: sqlite_utils.Database, jobs: Jobs, events: Events) -> None:
        self._db = db
        self._jobs = jobs
        self._events = events

    def view(self, user_id: int, *, now: datetime, daily_limit: int) -> QuotaView:
        rows = list(
            self._db.query(
                "SELECT image_balance, subscription_until FROM users WHERE user_id = ?",
                [user_id],
            )
        )
        balance, until = (
            (rows[0]["image_balance"], rows[0]["subscription_until"]) if rows else (0, None)
        )
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
    ) -> Job | Refusal:
        """Reserve one image for *new* and record it as a queued job, or say why not.

        *event* (``image_requested``) is written in the same transaction as the job, so
        a job never exists without its request, nor a request without its job.
        """
        try:
            with self._db.atomic():
                if self._jobs.active_for_message(chat_id=new.chat_id, message_id=new.message_id):
                    return Refusal.IN_FLIGHT
                view = self.view(new.user_id, now=now, daily_limit=daily_limit)
                source = pick_source(view, now=now)
                if source is None:
                    return Refusal.NO_QUOTA
                if source is QuotaSource.BALANCE and not self._take_balance(new.user_id):
                    return Refusal.NO_QUOTA
                paid = source is QuotaSource.BALANCE and self._take_paid(new.user_id)
                self._insert(new, source=source, now=now)
                if paid:
                    self._db.execute("UPDATE jobs SET paid = 1 WHERE job_id = ?", [new.job_id])
                if event is not None:
                    self._events.add(event)
        except sqlite3.IntegrityError:
            return Refusal.IN_FLIGHT
        job = self._jobs.get(new.job_id)
        assert job is not None  # committed just above
        return job

    def _take_balance(self, user_id: int) -> bool:
        cursor = self._db.execute(
            "UPDATE users SET image_balance = image_balance - 1"
            " WHERE user_id = ? AND image_balance > 0",
            [user_id],
        )
        return cursor.rowcount == 1

    def _take_paid(self, user_id: int) -> bool:
        """After one picture left the balance: was it a bought one?

        The free part (``image_balance - paid_images``) is spent first; once the balance
        is no larger than its bought part, the picture just taken was bought.
        """
        cursor = self._db.execute(
            "UPDATE users SET paid_images = image_balance"
            " WHERE user_id = ? AND paid_images > image_balance",
            [user_id],
        )
        return cursor.rowcount == 1

    def _insert(self, new: NewJob, *, source: QuotaSource, now: datetime) -> None:
        stamp = to_iso(now)
        self._db.execute(
            "INSERT INTO jobs (job_id, prompt_id, user_id, chat_id, message_id, persona_key,"
            " language, state, quota_source, quota_day, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                stamp,
                stamp,
            ],
        )

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
                f" WHERE job_id = ? AND state IN {ACTIVE_SQL}",
                [JobState.DELIVERED.value, file_id, to_iso(now), to_iso(now), job_id],
            )
            if cursor.rowcount != 1:
                return False
            self._db.execute(
                "UPDATE sent_messages SET photo_file_id = coalesce(photo_file_id, ?)"
                " WHERE (chat_id, message_id) ="
                " (SELECT chat_id, message_id FROM jobs WHERE job_id = ?)",
                [file_id, job_id],
            )
            if event is not None:
                self._events.add(self._with_server(event, job_id))
        return True

    def _with_server(self, event: EventRecord, job_id: str) -> EventRecord:
        """*event* naming the server the job was last handed to, for the per-server report."""
        if event.server is not None:
            return event
        row = query_one(self._db, "SELECT server FROM jobs WHERE job_id = ?", [job_id])
        return replace(event, server=row["server"] if row is not None else None)

    def release(
        self,
        job_id: str,
        *,
        reason: str,
        detail: str,
        now: datetime,
        event: EventRecord | None = None,
    ) -> bool:
        """The job failed or was cancelled: give the image back. Once only.

        *event* (``image_failed``) is written in the same transaction, only if this call
        released.
        """
        with self._db.atomic():
            cursor = self._db.execute(
                "UPDATE jobs SET state = ?, reason = ?, detail = ?, updated_at = ?,"
                f" finished_at = ? WHERE job_id = ? AND state IN {ACTIVE_SQL}",
                [JobState.FAILED.value, reason, detail, to_iso(now), to_iso(now), job_id],
            )
            if cursor.rowcount != 1:
                return False
            self._db.execute(
                "UPDATE users SET image_balance = image_balance + 1, paid_images = paid_images"
                " + (SELECT paid FROM jobs WHERE job_id = ?) WHERE user_id ="
                " (SELECT user_id FROM jobs WHERE job_id = ? AND quota_source = ?)",
                [job_id, job_id, QuotaSource.BALANCE.value],
            )
            if event is not None:
                self._events.add(self._with_server(event, job_id))
        return True

    def grant(self, user_id: int, images: int, *, now: datetime, free_images: int) -> int:
        """Add *images* to the balance (creating the user if needed); the new balance."""
        with self._db.atomic():
            self._ensure_row(user_id, now=now, free_images=free_images)
            self._db.execute(
                "UPDATE users SET image_balance = max(0, image_balance + ?), updated_at = ?"
                " WHERE user_id = ?",
                [images, to_iso(now), user_id],
            )
        return int(self.view(user_id, now=now, daily_limit=0).balance)

    def subscribe(self, user_id: int, days: int, *, now: datetime, free_images: int) -> datetime:
        """Extend the subscription by *days* from its end or from now; the new end."""
        with self._db.atomic():
            self._ensure_row(user_id, now=now, free_images=free_images)
            current = self.view(user_id, now=now, daily_limit=0).subscription_until
            start = current if current is not None and current > now else now
            until = start + _days(days)
            self._db.execute(
                "UPDATE users SET subscription_until = ?, updated_at = ? WHERE user_id = ?",
                [to_iso(until), to_iso(now), user_id],
            )
        return until

    def _ensure_row(self, user_id: int, *, now: datetime, free_images: int) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO users (user_id, image_balance, created_at, updated_at)"
            " VALUES (?, ?, ?, ?)",
            [user_id, max(0, free_images), to_iso(now), to_iso(now)],
        )


def _days(days: int) -> timedelta:
    return timedelta(days=days)
