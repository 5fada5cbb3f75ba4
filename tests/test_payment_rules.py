"""Payments, pure parts and the store: offers, payloads, pre-checkout, credit, refunds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.__main__ import build_parser
from bot.core.buttons import BuyPack, BuySubscription, Variant, decode, encode
from bot.core.settings import Pack, SettingsError, load_settings, parse_packs
from bot.ops.report import format_payments_text
from bot.ops.stats import stats_main
from bot.payments.offers import (
    MAX_PAYLOAD_BYTES,
    PackPayload,
    SubscriptionPayload,
    decode_payload,
    encode_payload,
)
from bot.payments.rules import Decline, Unreadable, check_pre_checkout, credit_of
from bot.telegram.types import PreCheckoutQuery, SuccessfulPayment
from store import EventRecord, Job, NewJob, NewPayment, PaymentKind, Refunded, Store, open_store
from store.payments import revenue_summary
from tests.rows import balance, deliver, user_row

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
USER = 7
PACKS = (Pack(10, 50), Pack(50, 200))


# Offers and payloads.


def test_packs_parse_from_the_setting_and_empty_means_none() -> None:
    assert parse_packs("10:50, 50:200") == PACKS
    assert parse_packs("") == ()
    assert parse_packs(" , ") == ()


@pytest.mark.parametrize("bad", ["10", "10:0", "0:5", "a:b", "10:50,10:70", "10:50:1", "-1:5"])
def test_a_bad_pack_is_one_line_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match=r"pack|pictures") as caught:
        parse_packs(bad)
    assert "\n" not in str(caught.value)


def test_settings_read_packs_and_refuse_a_bad_one_naming_the_variable() -> None:
    settings = load_settings(env_file=None, require_token=False, stars_packs="10:50,50:200")
    assert settings.stars_packs == PACKS
    assert settings.payments_on
    assert settings.pack(50) == Pack(50, 200)
    assert settings.pack(7) is None
    off = load_settings(env_file=None, require_token=False)
    assert not off.payments_on
    only_sub = load_settings(env_file=None, require_token=False, stars_subscription_price=300)
    assert only_sub.payments_on
    with pytest.raises(SettingsError, match="STARS_PACKS"):
        load_settings(env_file=None, require_token=False, stars_packs="10-50")
    with pytest.raises(SettingsError, match="STARS_SUBSCRIPTION_PRICE"):
        load_settings(env_file=None, require_token=False, stars_subscription_price=10_001)


def test_payloads_round_trip_and_stay_within_telegrams_limit() -> None:
    for payload in (PackPayload(10, 50, 5_000_000_001), SubscriptionPayload(300, 2**62)):
        text = encode_payload(payload)
        assert 1 <= len(text.encode()) <= MAX_PAYLOAD_BYTES
        assert decode_payload(text) == payload


@pytest.mark.parametrize(
    "forged", ["", "pack:10:50", "pack:10:50:x", "sub:300", "other:1", "pack:1:2:3:4", "x" * 200]
)
def test_a_payload_this_bot_did_not_make_decodes_to_none(forged: str) -> None:
    assert decode_payload(forged) is None


def test_buy_and_variant_buttons_round_trip_and_forged_ones_do_not() -> None:
    for payload in (BuyPack(10), BuySubscription(), Variant(42)):
        assert decode(encode(payload)) == payload
    for forged in ("buy:0", "buy:-1", "buy:x", "variant:0", "variant:abc", "buy:sub:1"):
        assert decode(forged) is None


# Pre-checkout.


def checkout(
    payload: str,
    amount: int,
    *,
    payer_id: int = USER,
    currency: str = "XTR",
    payer_blocked: bool = False,
    subscription_price: int = 300,
) -> Decline | None:
    query = PreCheckoutQuery.model_validate(
        {
            "id": "q1",
            "from": {"id": payer_id, "is_bot": False, "first_name": "A"},
            "currency": currency,
            "total_amount": amount,
            "invoice_payload": payload,
        }
    )
    return check_pre_checkout(
        query, payer_blocked=payer_blocked, packs=PACKS, subscription_price=subscription_price
    )


PACK_10 = encode_payload(PackPayload(10, 50, USER))
SUB = encode_payload(SubscriptionPayload(300, USER))


def test_a_checkout_for_an_offer_on_sale_at_its_price_goes_on() -> None:
    assert checkout(PACK_10, 50) is None
    assert checkout(SUB, 300) is None


@pytest.mark.parametrize(
    ("payload", "amount", "changes", "expected"),
    [
        ("garbage", 50, {}, Decline.UNKNOWN_OFFER),
        (encode_payload(PackPayload(10, 40, USER)), 40, {}, Decline.UNKNOWN_OFFER),  # repriced
        (encode_payload(PackPayload(20, 50, USER)), 50, {}, Decline.UNKNOWN_OFFER),  # gone
        (SUB, 300, {"subscription_price": 0}, Decline.UNKNOWN_OFFER),
        (PACK_10, 50, {"payer_id": 8}, Decline.WRONG_BUYER),
        (PACK_10, 50, {"currency": "USD"}, Decline.WRONG_CURRENCY),
        (PACK_10, 49, {}, Decline.WRONG_AMOUNT),
        (PACK_10, 50, {"payer_blocked": True}, Decline.BLOCKED),
    ],
)
def test_a_checkout_breaking_a_rule_is_refused_with_that_rule(
    payload: str, amount: int, changes: dict[str, Any], expected: Decline
) -> None:
    assert checkout(payload, amount, **changes) is expected


# What a payment credits.


def paid(payload: str, amount: int, **changes: Any) -> SuccessfulPayment:
    return SuccessfulPayment.model_validate(
        {
            "currency": "XTR",
            "total_amount": amount,
            "invoice_payload": payload,
            "telegram_payment_charge_id": "ch-1",
            **changes,
        }
    )


def test_a_pack_credits_its_pictures_even_if_the_offer_changed_since() -> None:
    credit = credit_of(
        payer_id=USER, paid=paid(encode_payload(PackPayload(30, 99, USER)), 99), now=NOW
    )
    assert isinstance(credit, NewPayment)
    assert (credit.kind, credit.images, credit.subscription_until) == (PaymentKind.PACK, 30, None)


def test_a_subscription_runs_to_telegrams_expiration_date_else_thirty_days() -> None:
    expires = int((NOW + timedelta(days=30)).timestamp())
    credit = credit_of(
        payer_id=USER, paid=paid(SUB, 300, subscription_expiration_date=expires), now=NOW
    )
    assert isinstance(credit, NewPayment)
    assert credit.subscription_until == datetime.fromtimestamp(expires, tz=UTC)
    fallback = credit_of(payer_id=USER, paid=paid(SUB, 300), now=NOW)
    assert isinstance(fallback, NewPayment)
    assert fallback.subscription_until == NOW + timedelta(days=30)


def test_a_payment_this_bot_cannot_read_is_not_credited() -> None:
    assert isinstance(credit_of(payer_id=USER, paid=paid("garbage", 50), now=NOW), Unreadable)
    assert isinstance(
        credit_of(payer_id=USER, paid=paid(PACK_10, 50, telegram_payment_charge_id=""), now=NOW),
        Unreadable,
    )


# The store: once per charge, in one transaction; refunds never below zero.


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "bot.db")
    yield opened
    opened.close()


def pack_payment(charge: str = "ch-1", images: int = 10) -> NewPayment:
    return NewPayment(
        telegram_payment_charge_id=charge,
        provider_payment_charge_id="",
        user_id=USER,
        kind=PaymentKind.PACK,
        invoice_payload=encode_payload(PackPayload(images, 50, USER)),
        currency="XTR",
        total_amount=50,
        images=images,
    )


def test_the_same_charge_credits_once(store: Store) -> None:
    first = store.payments.record(pack_payment(), now=NOW, free_images=3)
    again = store.payments.record(pack_payment(), now=NOW, free_images=3)
    assert (first.new, first.balance) == (True, 13)
    assert (again.new, again.balance) == (False, 13)
    rows = list(store.db.query("SELECT count(*) AS n FROM payments"))
    assert rows[0]["n"] == 1


def test_a_crash_between_storing_and_crediting_leaves_neither(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_: object, **__: object) -> None:
        raise RuntimeError("the process died here")

    monkeypatch.setattr(store.payments, "_credit", crash)
    with pytest.raises(RuntimeError):
        store.payments.record(pack_payment(), now=NOW, free_images=3)
    assert list(store.db.query("SELECT * FROM payments")) == []
    monkeypatch.undo()
    redelivered = store.payments.record(pack_payment(), now=NOW, free_images=3)
    assert (redelivered.new, redelivered.balance) == (True, 13)


def event_names(store: Store) -> list[str]:
    return [row["event"] for row in store.db.query("SELECT event FROM events_analytics")]


def test_the_payment_event_is_written_with_the_credit_and_only_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = EventRecord(ts=NOW, event="payment_succeeded", user_id=USER, detail="stars=50")
    monkeypatch.setattr(store.payments, "_credit", _crash)
    with pytest.raises(RuntimeError):
        store.payments.record(pack_payment(), now=NOW, free_images=3, event=event)
    assert event_names(store) == []  # no credit, no event
    monkeypatch.undo()
    store.payments.record(pack_payment(), now=NOW, free_images=3, event=event)
    store.payments.record(pack_payment(), now=NOW, free_images=3, event=event)  # again
    assert event_names(store) == ["payment_succeeded"]


def test_the_refund_event_is_written_with_the_debit_and_only_once(store: Store) -> None:
    store.payments.record(pack_payment(images=10), now=NOW, free_images=0)
    spend(store, 7)

    def refund_event(refunded: Refunded) -> EventRecord:
        detail = f"taken={refunded.taken} missing={refunded.missing}"
        return EventRecord(ts=NOW, event="payment_refunded", user_id=USER, detail=detail)

    store.payments.refund("ch-1", now=NOW, event=refund_event)
    store.payments.refund("ch-1", now=NOW, event=refund_event)  # a second refund: no row
    rows = list(store.db.query("SELECT event, detail FROM events_analytics"))
    assert rows == [{"event": "payment_refunded", "detail": "taken=3 missing=7"}]


def _crash(*_: object, **__: object) -> None:
    raise RuntimeError("the process died here")


def test_every_paid_month_adds_thirty_days_in_whatever_order_renewals_arrive(
    store: Store,
) -> None:
    def month(charge: str, until: datetime) -> NewPayment:
        return NewPayment(
            telegram_payment_charge_id=charge,
            provider_payment_charge_id="",
            user_id=USER,
            kind=PaymentKind.SUBSCRIPTION,
            invoice_payload=SUB,
            currency="XTR",
            total_amount=300,
            subscription_until=until,
            is_recurring=True,
        )

    first = store.payments.record(month("m1", NOW + timedelta(days=30)), now=NOW, free_images=0)
    second = store.payments.record(month("m2", NOW + timedelta(days=60)), now=NOW, free_images=0)
    late = store.payments.record(month("m0", NOW + timedelta(days=1)), now=NOW, free_images=0)
    assert first.subscription_until == NOW + timedelta(days=30)
    assert second.subscription_until == NOW + timedelta(days=60)
    assert late.subscription_until == NOW + timedelta(days=90)  # paid: never for nothing
    assert store.payments.last_subscription_charge(USER) == "m0"


def spend(store: Store, n: int) -> None:
    for i in range(n):
        job = store.quota.reserve(
            NewJob(f"j{i}", f"p{i}", USER, USER, 100 + i, "alice", "ru"), now=NOW, daily_limit=0
        )
        assert isinstance(job, Job)
        assert deliver(store, f"j{i}", now=NOW, file_id=f"f{i}")


def test_free_pictures_are_spent_first_and_paid_ones_are_marked(store: Store) -> None:
    store.payments.record(pack_payment(images=2), now=NOW, free_images=1)  # 1 free + 2 paid
    spend(store, 3)
    paid_flags = [row["paid"] for row in store.db.query("SELECT paid FROM jobs ORDER BY job_id")]
    assert paid_flags == [0, 1, 1]
    assert balance(store, USER) == 0


def test_a_released_paid_picture_goes_back_to_the_paid_part(store: Store) -> None:
    store.payments.record(pack_payment(images=1), now=NOW, free_images=0)
    store.quota.reserve(NewJob("j", "p", USER, USER, 1, "alice", "ru"), now=NOW, daily_limit=0)
    store.quota.release("j", reason="cancelled", detail="", now=NOW)
    row = next(iter(store.db.query("SELECT image_balance, paid_images FROM users")))
    assert (row["image_balance"], row["paid_images"]) == (1, 1)


def test_a_refund_after_the_pictures_were_spent_takes_what_is_left_never_below_zero(
    store: Store,
) -> None:
    store.payments.record(pack_payment(images=10), now=NOW, free_images=0)
    spend(store, 7)
    refunded = store.payments.refund("ch-1", now=NOW)
    assert refunded is not None
    assert (refunded.new, refunded.taken, refunded.missing, refunded.balance) == (True, 3, 7, 0)
    assert balance(store, USER) == 0
    again = store.payments.refund("ch-1", now=NOW)
    assert again is not None
    assert (again.new, again.taken) == (False, 0)
    assert store.payments.refund("never-seen", now=NOW) is None


def test_a_refunded_subscription_ends_now(store: Store) -> None:
    store.payments.record(
        NewPayment(
            telegram_payment_charge_id="m1",
            provider_payment_charge_id="",
            user_id=USER,
            kind=PaymentKind.SUBSCRIPTION,
            invoice_payload=SUB,
            currency="XTR",
            total_amount=300,
            subscription_until=NOW + timedelta(days=30),
        ),
        now=NOW,
        free_images=0,
    )
    store.payments.refund("m1", now=NOW + timedelta(days=2))
    assert user_row(store, USER).subscription_until == NOW + timedelta(days=2)


def test_the_summary_counts_revenue_sales_subscribers_and_paid_versus_free(store: Store) -> None:
    store.payments.record(pack_payment("a", images=2), now=NOW, free_images=1)
    store.payments.record(pack_payment("b", images=2), now=NOW, free_images=1)
    store.payments.refund("b", now=NOW)
    spend(store, 3)
    summary = store.payments.summary(since=NOW - timedelta(days=1), until=NOW + timedelta(days=1))
    assert (summary.stars, summary.refunded_stars, summary.packs_sold) == (50, 50, 2)
    assert (summary.free_pictures, summary.paid_pictures, summary.subscription_pictures) == (
        1,
        2,
        0,
    )
    assert summary.active_subscribers == 0


# The report's payments section.


def test_the_payments_section_shows_revenue_sales_and_paid_versus_free_pictures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bot.db"
    with open_store(path) as store:
        assert revenue_summary(store.db, since=NOW - timedelta(days=7), until=NOW) is None
        store.payments.record(pack_payment("a", images=2), now=NOW, free_images=1)
        spend(store, 2)
    code = stats_main(
        build_parser().parse_args(["stats", "--database", str(path)]),
        now=lambda: NOW + timedelta(hours=1),
    )
    out = capsys.readouterr().out
    assert code == 0
    section = out.split("\n\n")[-1].splitlines()
    assert section[0] == "Payments"
    assert section[1:] == [
        "revenue, stars              50",
        "refunded, stars              0",
        "packs sold                   1",
        "subscription payments        0",
        "active subscribers           0",
        "pictures from paid balance   1",
        "pictures from free balance   1",
        "pictures by subscription     0",
    ]
    code = stats_main(
        build_parser().parse_args(["stats", "--json", "--database", str(path)]),
        now=lambda: NOW + timedelta(hours=1),
    )
    document = json.loads(capsys.readouterr().out)
    assert document["payments"]["revenue_stars"] == 50
    assert document["payments"]["pictures_from_paid_balance"] == 1
    with open_store(path) as store:
        revenue = revenue_summary(store.db, since=NOW, until=NOW + timedelta(hours=1))
    assert revenue is not None
    assert format_payments_text(revenue, "ru").splitlines()[:2] == [
        "Платежи",
        "выручка, ⭐              50",
    ]
