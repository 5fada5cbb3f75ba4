"""The ledger: every change to pictures and subscriptions is an entry, balances agree."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils

from store import Job, NewJob, NewPayment, PaymentKind, Store, open_store
from store.db import connect
from store.ledger import check, subscription_after
from store.schema import MIGRATIONS
from tests.rows import balance, deliver, user_row

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
USER = 7
DAY = timedelta(days=1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "bot.db")
    yield opened
    opened.close()


def pack(charge: str, images: int) -> NewPayment:
    return NewPayment(
        telegram_payment_charge_id=charge,
        provider_payment_charge_id="",
        user_id=USER,
        kind=PaymentKind.PACK,
        invoice_payload=f"pack:{images}:50:{USER}",
        currency="XTR",
        total_amount=50,
        images=images,
    )


def month(charge: str) -> NewPayment:
    return NewPayment(
        telegram_payment_charge_id=charge,
        provider_payment_charge_id="",
        user_id=USER,
        kind=PaymentKind.SUBSCRIPTION,
        invoice_payload=f"sub:300:{USER}",
        currency="XTR",
        total_amount=300,
        is_recurring=True,
    )


def reserve(store: Store, n: int, *, now: datetime = NOW) -> Job:
    job = store.quota.reserve(
        NewJob(f"j{n}", f"p{n}", USER, USER, 100 + n, "alice", "ru"), now=now, daily_limit=0
    )
    assert isinstance(job, Job)
    return job


def test_subscription_days_stack_after_the_end_or_start_now() -> None:
    assert subscription_after(None, NOW, 86_400) == NOW + DAY
    assert subscription_after(NOW + 5 * DAY, NOW, 86_400) == NOW + 6 * DAY
    assert subscription_after(NOW - 5 * DAY, NOW, 86_400) == NOW + DAY  # lapsed: from now
    assert subscription_after(NOW + 5 * DAY, NOW, -86_400) == NOW + 4 * DAY
    assert subscription_after(None, NOW, -86_400) is None


def test_every_move_is_an_entry_and_the_balances_agree_with_them(store: Store) -> None:
    store.users.ensure(USER, now=NOW, free_images=2)
    store.payments.record(pack("a", 3), now=NOW, free_images=2)
    store.quota.grant(USER, 1, now=NOW, free_images=2, ref="update:1")
    store.quota.subscribe(USER, 10, now=NOW, free_images=2, ref="update:2")
    store.payments.record(month("m"), now=NOW, free_images=2)
    for n in range(5):
        reserve(store, n)
    deliver(store, "j0", now=NOW)
    store.quota.release("j1", reason="cancelled", detail="", now=NOW)
    assert check(store.db) == []
    causes = [row["cause"] for row in store.db.query("SELECT cause FROM ledger ORDER BY id")]
    assert causes[:5] == ["free", "pack", "grant", "days", "month"]
    assert causes.count("reserve") == 5
    assert (causes.count("charge"), causes.count("release")) == (1, 1)
    assert user_row(store, USER).subscription_until == NOW + 40 * DAY


def test_the_check_names_a_balance_the_ledger_does_not_explain(store: Store) -> None:
    store.users.ensure(USER, now=NOW, free_images=2)
    store.db.execute("UPDATE users SET image_balance = 9 WHERE user_id = ?", [USER])
    [mismatch] = check(store.db)
    assert mismatch.line() == f"user {USER} balance: stored 9, the ledger says 2"


def test_free_pictures_go_first_then_the_oldest_pack(store: Store) -> None:
    store.payments.record(pack("old", 1), now=NOW, free_images=1)
    store.payments.record(pack("new", 1), now=NOW, free_images=1)
    lots = [reserve(store, n).lot for n in range(3)]
    assert lots == [None, "old", "new"]
    assert balance(store, USER) == 0
    assert check(store.db) == []


def test_a_refunded_pack_takes_what_is_left_and_later_its_released_pictures(
    store: Store,
) -> None:
    store.payments.record(pack("a", 4), now=NOW, free_images=0)
    reserve(store, 1)  # drawn and delivered: spent
    deliver(store, "j1", now=NOW)
    reserve(store, 2)  # reserved when the refund comes
    refunded = store.payments.refund("a", now=NOW)
    assert refunded is not None
    assert (refunded.taken, refunded.missing, refunded.balance) == (2, 2, 0)
    store.quota.release("j2", reason="cancelled", detail="", now=NOW)
    assert balance(store, USER) == 0  # the refund took the released picture, not the user
    row = next(store.db.query("SELECT refund_taken, refund_missing FROM payments"))
    assert (row["refund_taken"], row["refund_missing"]) == (3, 1)  # one was delivered
    assert check(store.db) == []


def test_refunding_a_month_takes_only_its_unused_days(store: Store) -> None:
    store.payments.record(month("m1"), now=NOW, free_images=0)
    store.payments.record(month("m2"), now=NOW + 29 * DAY, free_images=0)  # renewal
    store.quota.subscribe(USER, 5, now=NOW + 29 * DAY, free_images=0, ref="update:9")
    # At day 29: m1 has 1 day left, m2 its 30, the admin's 5 days come after.
    refunded = store.payments.refund("m1", now=NOW + 29 * DAY)
    assert refunded is not None
    assert refunded.days_taken == 1
    assert user_row(store, USER).subscription_until == NOW + 29 * DAY + 35 * DAY
    # m2 refunded on day 40: 19 of its days are left; the admin's 5 stay.
    refunded = store.payments.refund("m2", now=NOW + 40 * DAY)
    assert refunded is not None
    assert refunded.days_taken == 19
    assert user_row(store, USER).subscription_until == NOW + 40 * DAY + 5 * DAY
    assert check(store.db) == []


def test_a_database_from_before_the_ledger_opens_with_entries_that_explain_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    db = connect(path)
    MIGRATIONS.apply(db, stop_before="0008_ledger")
    stamp = NOW.isoformat()
    db.execute(
        "INSERT INTO users (user_id, image_balance, paid_images, subscription_until,"
        " created_at, updated_at) VALUES (?, 6, 4, ?, ?, ?)",
        [USER, (NOW + 3 * DAY).isoformat(), stamp, stamp],
    )
    for charge, images in (("a", 5), ("b", 3)):
        db.execute(
            "INSERT INTO payments (telegram_payment_charge_id, user_id, kind, invoice_payload,"
            " currency, total_amount, images, created_at) VALUES (?, ?, 'pack', '', 'XTR', 50,"
            " ?, ?)",
            [charge, USER, images, stamp],
        )
    db.close()
    with open_store(path) as store:
        assert check(store.db) == []
        remaining = {
            r["telegram_payment_charge_id"]: r["remaining"]
            for r in store.db.query("SELECT telegram_payment_charge_id, remaining FROM payments")
        }
        assert remaining == {"a": 1, "b": 3}  # the newest pack holds what is left
        assert (balance(store, USER), user_row(store, USER).subscription_until) == (
            6,
            NOW + 3 * DAY,
        )
        lots = [reserve(store, n).lot for n in range(6)]
        assert lots == [None, None, "a", "b", "b", "b"]


def test_the_ledger_keeps_each_cause_once_per_reference(store: Store) -> None:
    store.users.ensure(USER, now=NOW, free_images=1)
    assert store.quota.grant(USER, 3, now=NOW, free_images=1, ref="update:5") is not None
    assert store.quota.grant(USER, 3, now=NOW, free_images=1, ref="update:5") is None
    store.payments.record(pack("a", 2), now=NOW, free_images=1)
    store.payments.record(pack("a", 2), now=NOW, free_images=1)
    assert balance(store, USER) == 6
    rows = sqlite_utils.Database(store.db.conn).execute(
        "SELECT count(*) FROM ledger WHERE cause = 'grant'"
    )
    assert rows.fetchone() == (1,)
