"""Quota arithmetic (pure) and the reserve / consume / release operations on a real file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from store import (
    Granted,
    JobState,
    NewJob,
    NewPayment,
    PaymentKind,
    QuotaSource,
    QuotaView,
    Refusal,
    Store,
    open_store,
    pick_source,
)
from tests.rows import balance, deliver

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAILY = 3


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "bot.db")
    yield opened
    opened.close()


def new_job(n: int, *, user_id: int = 7, message_id: int | None = None) -> NewJob:
    return NewJob(
        job_id=f"job-{n}",
        prompt_id=f"00000000-0000-4000-8000-{n:012d}",
        user_id=user_id,
        chat_id=user_id,
        message_id=message_id if message_id is not None else 100 + n,
        persona_key="alice",
        language="ru",
    )


def pack(images: int, *, charge: str = "ch-1") -> NewPayment:
    return NewPayment(
        telegram_payment_charge_id=charge,
        provider_payment_charge_id="",
        user_id=7,
        kind=PaymentKind.PACK,
        invoice_payload=f"pack:{images}:50:7",
        currency="XTR",
        total_amount=50,
        images=images,
    )


def test_pick_source_prefers_an_active_subscription_with_allowance_left() -> None:
    view = QuotaView(
        balance=5,
        subscription_until=NOW + timedelta(days=1),
        subscription_used_today=0,
        daily_limit=2,
    )
    assert pick_source(view, now=NOW) is QuotaSource.SUBSCRIPTION


def test_pick_source_falls_back_to_balance_when_today_is_spent_or_expired() -> None:
    spent = QuotaView(5, NOW + timedelta(days=1), subscription_used_today=2, daily_limit=2)
    expired = QuotaView(5, NOW - timedelta(seconds=1), subscription_used_today=0, daily_limit=2)
    assert pick_source(spent, now=NOW) is QuotaSource.BALANCE
    assert pick_source(expired, now=NOW) is QuotaSource.BALANCE


def test_pick_source_refuses_with_nothing_left() -> None:
    assert pick_source(QuotaView(0, None, 0, 2), now=NOW) is None


def test_two_presses_with_one_image_left_make_one_job(store: Store) -> None:
    store.users.ensure(7, now=NOW, free_images=1)
    first = store.quota.reserve(new_job(1), now=NOW, daily_limit=DAILY)
    second = store.quota.reserve(new_job(2), now=NOW, daily_limit=DAILY)
    assert not isinstance(first, Refusal)
    assert first.state is JobState.QUEUED
    assert second is Refusal.NO_QUOTA
    assert balance(store, 7) == 0


def test_a_second_press_on_the_same_message_is_in_flight(store: Store) -> None:
    store.users.ensure(7, now=NOW, free_images=5)
    store.quota.reserve(new_job(1, message_id=55), now=NOW, daily_limit=DAILY)
    again = store.quota.reserve(new_job(2, message_id=55), now=NOW, daily_limit=DAILY)
    assert again is Refusal.IN_FLIGHT
    assert balance(store, 7) == 4


def test_release_gives_the_image_back_once(store: Store) -> None:
    store.users.ensure(7, now=NOW, free_images=1)
    store.quota.reserve(new_job(1), now=NOW, daily_limit=DAILY)
    assert store.quota.release("job-1", reason="generation_error", detail="x", now=NOW)
    assert not store.quota.release("job-1", reason="generation_error", detail="x", now=NOW)
    assert balance(store, 7) == 1
    job = store.jobs.get("job-1")
    assert job is not None
    assert (job.state, job.reason) == (JobState.FAILED, "generation_error")


def test_consume_charges_once_and_a_later_release_changes_nothing(store: Store) -> None:
    store.users.ensure(7, now=NOW, free_images=2)
    store.sent.add(chat_id=7, message_id=101, user_id=7, persona_key="alice", text="t", now=NOW)
    store.quota.reserve(new_job(1), now=NOW, daily_limit=DAILY)
    assert deliver(store, "job-1", now=NOW, file_id="F1")
    assert not store.quota.consume("job-1", file_id="F1", now=NOW)
    assert not store.quota.release("job-1", reason="send_error", detail="late", now=NOW)
    assert balance(store, 7) == 1
    sent = store.sent.get(chat_id=7, message_id=101)
    assert sent is not None
    assert sent.photo_file_id == "F1"


def test_subscription_allows_the_daily_limit_without_touching_the_balance(store: Store) -> None:
    store.users.ensure(7, now=NOW, free_images=1)
    store.quota.subscribe(7, 30, now=NOW, free_images=1, ref="test-1")
    for n in range(DAILY):
        job = store.quota.reserve(new_job(n), now=NOW, daily_limit=DAILY)
        assert not isinstance(job, Refusal)
        assert job.quota_source is QuotaSource.SUBSCRIPTION
    fourth = store.quota.reserve(new_job(10), now=NOW, daily_limit=DAILY)
    assert not isinstance(fourth, Refusal)
    assert fourth.quota_source is QuotaSource.BALANCE
    assert store.quota.reserve(new_job(11), now=NOW, daily_limit=DAILY) is Refusal.NO_QUOTA
    tomorrow = NOW + timedelta(days=1)
    job = store.quota.reserve(new_job(12), now=tomorrow, daily_limit=DAILY)
    assert not isinstance(job, Refusal)
    assert job.quota_source is QuotaSource.SUBSCRIPTION


def test_a_failed_subscription_image_does_not_count_against_today(store: Store) -> None:
    store.users.ensure(7, now=NOW, free_images=0)
    store.quota.subscribe(7, 1, now=NOW, free_images=0, ref="test-2")
    for n in range(DAILY):
        store.quota.reserve(new_job(n), now=NOW, daily_limit=DAILY)
    store.quota.release("job-0", reason="generation_error", detail="x", now=NOW)
    again = store.quota.reserve(new_job(20), now=NOW, daily_limit=DAILY)
    assert not isinstance(again, Refusal)


def test_subscription_expires(store: Store) -> None:
    store.users.ensure(7, now=NOW, free_images=0)
    until = store.quota.subscribe(7, 2, now=NOW, free_images=0, ref="test-3")
    assert until == NOW + timedelta(days=2)
    later = until + timedelta(seconds=1)
    assert store.quota.reserve(new_job(1), now=later, daily_limit=DAILY) is Refusal.NO_QUOTA


def test_subscribe_extends_from_the_current_end(store: Store) -> None:
    first = store.quota.subscribe(7, 10, now=NOW, free_images=0, ref="test-4")
    second = store.quota.subscribe(7, 5, now=NOW + timedelta(days=1), free_images=0, ref="test-5")
    assert second == first + timedelta(days=5)


def test_grant_creates_the_user_and_adds_images(store: Store) -> None:
    assert store.quota.grant(99, 5, now=NOW, free_images=3, ref="g1") == Granted(5, 8)
    assert store.quota.grant(99, -100, now=NOW, free_images=3, ref="g2") == Granted(-8, 0)
    assert store.quota.grant(99, 5, now=NOW, free_images=3, ref="g1") is None  # once per ref


def test_a_negative_grant_takes_from_the_free_part_only(store: Store) -> None:
    store.payments.record(pack(2), now=NOW, free_images=3)  # 3 free, 2 bought
    assert store.quota.grant(7, -10, now=NOW, free_images=3, ref="g") == Granted(-3, 2)


def test_reservations_survive_reopening_the_file(tmp_path: Path) -> None:
    first = open_store(tmp_path / "bot.db")
    first.users.ensure(7, now=NOW, free_images=1)
    first.quota.reserve(new_job(1), now=NOW, daily_limit=DAILY)
    first.close()
    second = open_store(tmp_path / "bot.db")
    assert [job.job_id for job in second.jobs.unfinished()] == ["job-1"]
    assert balance(second, 7) == 0
    second.close()
