"""What must hold after any schedule, however the faults fell; each a plain check.

:func:`violations` reads the bot's database, the fakes' records and the world's
:class:`~tests.simulation.world.Record`, and returns one line per broken rule:

* every press ended in exactly one terminal event, and no job is left active;
* every balance, bought part, pack and subscription end agrees with the ledger
  (``store.ledger.check``: what was given minus what was charged, never negative), at
  the end and at every kill;
* every job has one reservation and, being final, exactly one charge (delivered) or one
  release (failed); no picture of a released job was uploaded; no message holding a
  picture was deleted (a picture lands in its status message; recovery must not mistake
  it for a leftover status), and none was covered by a preview landing after it;
* each payment credited at most once; a refund took at most what its payment gave: a
  pack's pictures, a month's days not used yet, never days added after that month;
* every picture of a pack is accounted for: left, reserved, delivered or refunded, and a
  refunded pack has none left to spend; every paid month added its whole 30 days;
* each admin command's effect applied at most once; each press made at most one job;
* every checkout answered within Telegram's 10 s where the bot could answer;
* no chat held up by another chat's 429s or a user's press flood;
* after /forget, no text of that user older than it is left once their jobs ended;
* no prompt of ours left on any ComfyUI server.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Final

from store import Store
from store.clock import from_iso
from store.ledger import check
from store.payments import SUBSCRIPTION_MONTH_S
from tests.fakes.comfy import JPEG_MAGIC, FakeComfy
from tests.fakes.telegram import FakeTelegram
from tests.simulation.world import Record

__all__ = ["CHECKOUT_LIMIT_S", "violations"]

CHECKOUT_LIMIT_S: Final = 10.0  # Telegram cancels a checkout not answered by then


def violations(
    store: Store, record: Record, telegram: FakeTelegram, comfies: list[FakeComfy]
) -> list[str]:
    found: list[str] = []
    if not record.quiet:
        found.append("the bot never became quiet: work left after the schedule")
    found += [f"at a kill: {line}" for line in record.at_kills]
    found += [m.line() for m in check(store.db, limit=50)]
    found += _terminal_events(store)
    found += _job_entries(store)
    found += _uploads_of_released_jobs(store, telegram, comfies)
    found += _pictures_kept(telegram)
    found += _pictures_uncovered(telegram)
    found += _payments(store)
    found += _month_refunds(store)
    found += _packs(store)
    found += _updates_once(store, record)
    found += _checkouts(record, telegram)
    found += [f"another chat held this one up: {line}" for line in record.unfair]
    found += _forgotten(store)
    found += _comfy_left(comfies)
    return found


def _terminal_events(store: Store) -> list[str]:
    found: list[str] = []
    counts = Counter(
        (row["event"], row["job_id"])
        for row in store.db.query(
            "SELECT event, job_id FROM events_analytics WHERE event IN"
            " ('image_requested', 'image_generated', 'image_failed')"
        )
    )
    requested = sum(n for (event, _), n in counts.items() if event == "image_requested")
    finished = sum(n for (event, _), n in counts.items() if event != "image_requested")
    if requested != finished:
        found.append(f"{requested} presses requested, {finished} ended (generated + failed)")
    jobs = {row["job_id"] for row in store.db.query("SELECT job_id FROM jobs")}
    for job in jobs:
        ends = counts[("image_generated", job)] + counts[("image_failed", job)]
        if counts[("image_requested", job)] != 1 or ends != 1:
            found.append(f"job {job}: {counts[('image_requested', job)]} requested, {ends} ends")
    for job in store.jobs.unfinished():
        found.append(f"job {job.job_id} still {job.state.value} after the schedule")
    return found


def _job_entries(store: Store) -> list[str]:
    found: list[str] = []
    entries = Counter(
        (row["ref"], row["cause"])
        for row in store.db.query(
            "SELECT ref, cause FROM ledger WHERE cause IN ('reserve', 'charge', 'release')"
        )
    )
    for row in store.db.query("SELECT job_id, state FROM jobs"):
        job, state = row["job_id"], row["state"]
        expected = {
            "reserve": 1,
            "charge": int(state == "delivered"),
            "release": int(state == "failed"),
        }
        got = {cause: entries[(job, cause)] for cause in expected}
        if got != expected:
            found.append(f"job {job} ({state}): ledger {got}, expected {expected}")
    return found


def _uploads_of_released_jobs(
    store: Store, telegram: FakeTelegram, comfies: list[FakeComfy]
) -> list[str]:
    """Every uploaded picture is of a delivered job (a released one is never sent)."""
    prompt_of = {
        fake.files[filename]: prompt_id
        for fake in comfies
        for prompt_id, filename in fake.saved
        if filename in fake.files
    }
    states = {
        row["prompt_id"]: row["state"]
        for row in store.db.query("SELECT prompt_id, state FROM jobs")
    }
    found: list[str] = []
    for sent in telegram.sent:
        if sent.kind not in ("photo", "document") or not sent.content:
            continue  # a resend by file_id carries no picture of its own
        prompt = prompt_of.get(sent.content)
        if prompt is not None and states.get(prompt) == "failed":
            found.append(f"the picture of released prompt {prompt} was uploaded")
    return found


def _pictures_kept(telegram: FakeTelegram) -> list[str]:
    """No message that carries a picture is ever deleted: a picture lands in its status
    message, so recovery must never take that message for a leftover status. (A status
    message showing a preview is no picture: a cancel deletes it.)"""
    deleted = set(telegram.deleted)
    return [
        f"the picture in message {sent.message_id} of chat {sent.chat_id} was deleted"
        for sent in telegram.sent
        if sent.kind in ("photo", "document")
        and not _is_preview(sent.content)
        and (sent.chat_id, sent.message_id) in deleted
    ]


def _pictures_uncovered(telegram: FakeTelegram) -> list[str]:
    """A message a picture landed in still shows a picture: no preview upload that was
    in flight when the picture came lands on it afterwards."""
    now = {(sent.chat_id, sent.message_id): sent for sent in telegram.sent}
    landed = {
        (edit.chat_id, edit.message_id)
        for edit in telegram.media_edits
        if edit.content is not None and not _is_preview(edit.content)
    }
    return [
        f"the picture in message {message} of chat {chat} was covered by a preview"
        for chat, message in sorted(landed)
        if _is_preview(now[chat, message].content)
    ]


def _is_preview(content: bytes | None) -> bool:
    return content is not None and content.startswith(JPEG_MAGIC)


def _payments(store: Store) -> list[str]:
    found: list[str] = []
    for row in store.db.query(
        "SELECT p.telegram_payment_charge_id AS charge, p.images, p.refund_taken,"
        " (SELECT count(*) FROM ledger WHERE ref = p.telegram_payment_charge_id"
        " AND cause IN ('pack', 'month')) AS credits FROM payments AS p"
    ):
        if row["credits"] != 1:
            found.append(f"payment {row['charge']} credited {row['credits']} times")
        taken = row["refund_taken"]
        if taken is not None and not 0 <= taken <= row["images"]:
            found.append(f"refund of {row['charge']} took {taken} of {row['images']} pictures")
    return found


def _packs(store: Store) -> list[str]:
    found: list[str] = []
    for row in store.db.query(
        "SELECT p.telegram_payment_charge_id AS charge, p.images, p.remaining, p.refunded_at,"
        " coalesce(p.refund_taken, 0) AS taken,"
        " (SELECT count(*) FROM jobs WHERE lot = p.telegram_payment_charge_id"
        "  AND state = 'delivered') AS delivered,"
        " (SELECT count(*) FROM jobs WHERE lot = p.telegram_payment_charge_id"
        "  AND state NOT IN ('delivered', 'failed')) AS held"
        " FROM payments AS p WHERE p.kind = 'pack'"
    ):
        accounted = row["remaining"] + row["held"] + row["delivered"] + row["taken"]
        if accounted != row["images"]:
            found.append(
                f"pack {row['charge']} of {row['images']}: {row['remaining']} left,"
                f" {row['held']} reserved, {row['delivered']} delivered, {row['taken']} refunded"
            )
        if row["refunded_at"] is not None and row["remaining"]:
            found.append(f"refunded pack {row['charge']} still has {row['remaining']} to spend")
    for row in store.db.query("SELECT ref, seconds FROM ledger WHERE cause = 'month'"):
        if row["seconds"] != SUBSCRIPTION_MONTH_S:
            found.append(f"paid month {row['ref']} added {row['seconds']} s, not 30 days")
    return found


def _month_refunds(store: Store) -> list[str]:
    """A month's refund takes at most its 30 days, and leaves every day added after it."""
    found: list[str] = []
    refunds = store.db.query(
        "SELECT r.id, r.ts, r.user_id, r.ref, -r.seconds AS taken, r.until AS after,"
        " m.id AS month_id, m.seconds AS month_s FROM ledger AS r JOIN ledger AS m"
        " ON m.cause = 'month' AND m.ref = r.ref WHERE r.cause = 'refund'"
    )
    for refund in list(refunds):
        if refund["taken"] > refund["month_s"]:
            found.append(f"refund of {refund['ref']} took {refund['taken']} s of a month")
        # Days added after that month, less what their own refunds took back since.
        later = next(
            store.db.query(
                "SELECT coalesce(sum(seconds), 0) AS s FROM ledger AS e WHERE user_id = :user"
                " AND id > :month AND id < :refund AND (seconds > 0 OR (cause = 'refund'"
                " AND ref IN (SELECT ref FROM ledger WHERE user_id = :user AND id > :month"
                " AND seconds > 0)))",
                {"user": refund["user_id"], "month": refund["month_id"], "refund": refund["id"]},
            )
        )["s"]
        before = next(
            store.db.query(
                "SELECT until FROM ledger WHERE user_id = ? AND id < ? AND until IS NOT NULL"
                " ORDER BY id DESC LIMIT 1",
                [refund["user_id"], refund["id"]],
            ),
            {"until": None},
        )["until"]
        if before is None or refund["after"] is None:
            continue
        at, end_before, end_after = (
            from_iso(refund["ts"]),
            from_iso(before),
            from_iso(refund["after"]),
        )
        kept = min(end_before, at + timedelta(seconds=later)) - timedelta(seconds=1)
        if end_after < kept:
            found.append(
                f"refund of {refund['ref']} ended the subscription at {end_after:%d %H:%M},"
                f" before the {later} s added after that month"
            )
    return found


def _updates_once(store: Store, record: Record) -> list[str]:
    found: list[str] = []
    grants = next(store.db.query("SELECT count(*) AS n FROM ledger WHERE cause = 'grant'"))["n"]
    if grants > len(record.grants):
        found.append(f"{grants} grants applied for {len(record.grants)} /grant commands")
    days = next(store.db.query("SELECT count(*) AS n FROM ledger WHERE cause = 'days'"))["n"]
    if days > len(record.subscribes):
        found.append(f"{days} /subscribe applied for {len(record.subscribes)} commands")
    jobs = next(store.db.query("SELECT count(*) AS n FROM jobs"))["n"]
    if jobs > record.presses:
        found.append(f"{jobs} jobs from {record.presses} presses")
    return found


def _checkouts(record: Record, telegram: FakeTelegram) -> list[str]:
    found: list[str] = []
    for query, sent_at in record.checkouts:
        if any(start - 1.0 <= sent_at <= end for start, end in record.disturbed):
            continue  # Telegram itself, a kill or a lock stood between: not the bot's to keep
        answer = telegram.checkout_answers.get(query)
        if answer is None or answer.at - sent_at > CHECKOUT_LIMIT_S:
            at = "never" if answer is None else f"after {answer.at - sent_at:.1f} s"
            found.append(f"checkout {query} sent at {sent_at:.1f} s answered {at}")
    return found


def _forgotten(store: Store) -> list[str]:
    found: list[str] = []
    for user in store.db.query("SELECT user_id, forgotten_at FROM users WHERE forgotten_at"):
        user_id, at = user["user_id"], user["forgotten_at"]
        texts = next(
            store.db.query(
                "SELECT count(*) AS n FROM sent_messages WHERE user_id = ? AND created_at < ?",
                [user_id, at],
            )
        )["n"]
        turns = next(
            store.db.query(
                "SELECT count(*) AS n FROM turns WHERE user_id = ? AND created_at < ?",
                [user_id, at],
            )
        )["n"]
        scenes = next(
            store.db.query(
                "SELECT count(*) AS n FROM jobs WHERE user_id = ? AND created_at < ?"
                " AND graph IS NOT NULL",
                [user_id, at],
            )
        )["n"]
        if texts or turns or scenes:
            found.append(
                f"user {user_id} forgot at {from_iso(at):%H:%M:%S}: {texts} texts,"
                f" {turns} turns, {scenes} scenes left"
            )
    return found


def _comfy_left(comfies: list[FakeComfy]) -> list[str]:
    return [
        f"ComfyUI server {index + 1} still holds prompt {item.prompt_id}"
        for index, fake in enumerate(comfies)
        for item in [*fake.pending, *fake.running]
    ]
