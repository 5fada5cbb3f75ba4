"""Routing the new updates and presses, and the variant's press rule (pure)."""

from __future__ import annotations

from bot.core.buttons import BuyPack, BuySubscription, Variant
from bot.core.commands import (
    AdminCmd,
    BuyCmd,
    Context,
    PayInfoCmd,
    PaymentReceived,
    PaymentRefunded,
    PreCheckout,
    Press,
    route,
)
from bot.pictures.decision import AlreadyDrawing, PressFacts, Resend, Reserve, Stale, decide_press
from bot.telegram.types import Update
from store import SentMessage
from tests.test_routing import USER, message, press

CTX = Context(
    chat_id=42, chat_type="private", user_id=42, first_name="Аня", language_code="en", update_id=2
)
PAID = {"currency": "XTR", "total_amount": 50, "invoice_payload": "pack:10:50:42"}


def test_buy_paysupport_terms_and_the_admin_payment_commands() -> None:
    assert isinstance(route(message("/buy")), BuyCmd)
    info = route(message("/paysupport"))
    assert isinstance(info, PayInfoCmd)
    assert info.name == "paysupport"
    terms = route(message("/terms@persona_test_bot"), bot_username="persona_test_bot")
    assert isinstance(terms, PayInfoCmd)
    assert terms.name == "terms"
    refund = route(message("/refund stxABC"))
    assert isinstance(refund, AdminCmd)
    assert (refund.name, refund.args) == ("refund", ("stxABC",))
    stop = route(message("/stoprenewal 42"))
    assert isinstance(stop, AdminCmd)
    assert stop.name == "stoprenewal"


def test_payment_service_messages_route_before_the_text_rules() -> None:
    charge = {"telegram_payment_charge_id": "c1"}
    received = route(
        message(None, successful_payment={**PAID, **charge, "provider_payment_charge_id": ""})
    )
    assert isinstance(received, PaymentReceived)
    assert received.payment.telegram_payment_charge_id == "c1"
    refunded = route(message(None, refunded_payment={**PAID, **charge}))
    assert isinstance(refunded, PaymentRefunded)
    assert refunded.refund.total_amount == 50


def test_a_pre_checkout_query_is_routed_with_the_buyers_language() -> None:
    update = Update.model_validate(
        {"update_id": 3, "pre_checkout_query": {"id": "p1", "from": USER, **PAID}}
    )
    checkout = route(update)
    assert isinstance(checkout, PreCheckout)
    assert (checkout.query.id, checkout.lang) == ("p1", "en")


def test_buy_and_variant_presses() -> None:
    assert route(press("buy:10")) == Press(CTX, "q1", 9, BuyPack(10))
    assert route(press("buy:sub")) == Press(CTX, "q1", 9, BuySubscription())
    # The variant names the text it illustrates (5); the button sits under the photo (9).
    assert route(press("variant:5")) == Press(CTX, "q1", 9, Variant(5))


def variant_facts(
    *, file_id: str | None, job_active: bool = False, user_id: int = 42
) -> PressFacts:
    sent = SentMessage(
        chat_id=42,
        message_id=5,
        user_id=user_id,
        persona_key="alice",
        text="a scene",
        photo_file_id=file_id,
    )
    return PressFacts(
        private_chat=True,
        chat_id=42,
        user_id=42,
        sent=sent,
        job_active=job_active,
        pictures_on=True,
        variant=True,
    )


def test_a_variant_reserves_a_new_job_even_after_delivery() -> None:
    assert isinstance(decide_press(variant_facts(file_id="f1")), Reserve)
    assert isinstance(decide_press(variant_facts(file_id="f1", job_active=True)), AlreadyDrawing)
    assert isinstance(decide_press(variant_facts(file_id="f1", user_id=7)), Stale)
    look = variant_facts(file_id="f1")
    look_facts = PressFacts(
        private_chat=True,
        chat_id=42,
        user_id=42,
        sent=look.sent,
        job_active=False,
        pictures_on=True,
    )
    assert isinstance(decide_press(look_facts), Resend)
