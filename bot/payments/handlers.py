"""The payment handlers (thin): offers, invoices, pre-checkout, credit, refunds.

The rules are in :mod:`bot.payments.rules` and the money moves in
:mod:`store.payments`, one transaction each. What a cancel means here: every store call
is synchronous, so a cancel lands before a credit (the update stays in the inbox and is
handled again: the charge id makes that harmless) or after it (only the thank-you is
lost). See docs/product.md, P18.
"""

from __future__ import annotations

import logging
from typing import Final

import trio

from bot.core.buttons import BuyPack, BuySubscription
from bot.core.commands import (
    AdminCmd,
    BuyCmd,
    PayInfoCmd,
    PaymentReceived,
    PaymentRefunded,
    PreCheckout,
    Press,
)
from bot.core.deps import Deps
from bot.core.events import EventName, event_record
from bot.core.texts import Lang, t
from bot.payments.keyboards import buy_keyboard
from bot.payments.offers import (
    SUBSCRIPTION_PERIOD_S,
    PackPayload,
    SubscriptionPayload,
    encode_payload,
)
from bot.payments.rules import Unreadable, check_pre_checkout, credit_of
from bot.telegram.errors import TelegramBadRequest, TelegramError
from bot.telegram.types import InlineKeyboardButton, InlineKeyboardMarkup, LabeledPrice
from common.logfields import fields
from common.metrics import STARS, STARS_REFUNDED
from store import EventRecord, PaymentKind, Refunded

__all__ = [
    "PRE_CHECKOUT_BUDGET_S",
    "handle_buy",
    "handle_buy_press",
    "handle_pay_info",
    "handle_payment_received",
    "handle_payment_refunded",
    "handle_pre_checkout",
    "handle_refund",
    "handle_stop_renewal",
]

log = logging.getLogger(__name__)

# Telegram cancels a checkout it has no answer to after 10 s (docs/telegram.md, T15); an
# answer later than this is pointless, so the call gives up and lets the buyer retry.
PRE_CHECKOUT_BUDGET_S: Final = 8.0
DATE_FORMAT: Final = "%Y-%m-%d %H:%M"
# refundStarPayment's 400 for a charge refunded before; no error code tells it apart.
ALREADY_REFUNDED: Final = "CHARGE_ALREADY_REFUNDED"


async def handle_buy(deps: Deps, cmd: BuyCmd) -> None:
    """``/buy``: the offers, or a sentence that nothing is for sale."""
    markup = buy_keyboard(deps.settings, cmd.ctx.lang)
    if markup is None:
        await deps.api.send_message(cmd.ctx.chat_id, t("payments_off", cmd.ctx.lang))
        return
    await deps.api.send_message(cmd.ctx.chat_id, t("buy_choose", cmd.ctx.lang), reply_markup=markup)


async def handle_buy_press(deps: Deps, press: Press[BuyPack | BuySubscription]) -> None:
    """A buy button: an invoice for the pack, or a link to the subscription."""
    lang, ctx = press.ctx.lang, press.ctx
    settings = deps.settings
    if isinstance(press.button, BuyPack):
        pack = settings.pack(press.button.pictures)
        if pack is None:  # the operator changed the offers since the button was sent
            await deps.answer_query(press.query_id, text=t("pay_refused_offer", lang))
            return
        await deps.answer_query(press.query_id)
        await deps.api.send_invoice(
            ctx.chat_id,
            title=t("invoice_pack_title", lang, pictures=pack.pictures),
            description=t("invoice_pack_description", lang, pictures=pack.pictures),
            payload=encode_payload(PackPayload(pack.pictures, pack.stars, ctx.user_id)),
            price=LabeledPrice(
                label=t("invoice_pack_title", lang, pictures=pack.pictures), amount=pack.stars
            ),
        )
        return
    price = settings.stars_subscription_price
    if price <= 0:
        await deps.answer_query(press.query_id, text=t("pay_refused_offer", lang))
        return
    await deps.answer_query(press.query_id)
    daily = settings.subscription_daily_images
    link = await deps.api.create_invoice_link(
        title=t("invoice_subscription_title", lang),
        description=t("invoice_subscription_description", lang, daily=daily),
        payload=encode_payload(SubscriptionPayload(price, ctx.user_id)),
        price=LabeledPrice(label=t("invoice_subscription_title", lang), amount=price),
        subscription_period=SUBSCRIPTION_PERIOD_S,
    )
    button = InlineKeyboardButton(text=t("subscription_link_button", lang), url=link)
    await deps.api.send_message(
        ctx.chat_id,
        t("subscription_link", lang, stars=price, daily=daily),
        reply_markup=InlineKeyboardMarkup(inline_keyboard=[[button]]),
    )


async def handle_pre_checkout(deps: Deps, cmd: PreCheckout) -> None:
    """Answer at once: go on, or a sentence the buyer reads (the dispatcher runs this
    outside every lane and limit; docs/telegram.md, T15)."""
    query = cmd.query
    user = deps.store.users.get(query.from_.id)
    decline = check_pre_checkout(
        query,
        payer_blocked=user is not None and user.blocked,
        packs=deps.settings.stars_packs,
        subscription_price=deps.settings.stars_subscription_price,
    )
    if decline is not None:
        log.info(
            "payment_pre_checkout_refused",
            extra=fields(user=query.from_.id, payload=query.invoice_payload, rule=decline.name),
        )
    with trio.move_on_after(PRE_CHECKOUT_BUDGET_S) as scope:
        try:
            await deps.api.answer_pre_checkout_query(
                query.id,
                ok=decline is None,
                error_message=None if decline is None else t(decline.value, cmd.lang),
            )
        except TelegramError as exc:
            log.warning(
                "payment_pre_checkout_not_answered", extra=fields(query=query.id, error=str(exc))
            )
    if scope.cancelled_caught:
        log.warning(
            "payment_pre_checkout_not_answered",
            extra=fields(query=query.id, after_s=PRE_CHECKOUT_BUDGET_S),
        )


async def handle_payment_received(deps: Deps, cmd: PaymentReceived) -> None:
    """``successful_payment``: store and credit once (the charge id), then thank."""
    paid = cmd.payment
    ctx = cmd.ctx
    now = deps.now()
    credit = credit_of(paid, payer_id=ctx.user_id, now=now)
    if isinstance(credit, Unreadable):
        # Money arrived that this bot cannot place: the operator must look (or refund).
        log.error(
            "payment_not_credited",
            extra=fields(
                user=ctx.user_id,
                charge=paid.telegram_payment_charge_id,
                stars=paid.total_amount,
                reason=credit.why,
            ),
        )
        return
    await deps.ensure_user(ctx)
    renewal = paid.is_recurring and not paid.is_first_recurring
    succeeded = event_record(
        EventName.SUBSCRIPTION_RENEWED if renewal else EventName.PAYMENT_SUCCEEDED,
        now=deps.now,
        user_id=ctx.user_id,
        chat_id=ctx.chat_id,
        detail=f"stars={paid.total_amount} kind={credit.kind.value} images={credit.images}"
        f" charge={paid.telegram_payment_charge_id}",
    )
    recorded = await deps.write(
        f"payment {paid.telegram_payment_charge_id}",
        lambda: deps.store.payments.record(
            credit, now=now, free_images=deps.settings.free_images, event=succeeded
        ),
    )
    if not recorded.new:
        log.info(
            "payment_seen_before",
            extra=fields(charge=paid.telegram_payment_charge_id),
        )
        return
    STARS.labels(kind=credit.kind.value).inc(paid.total_amount)
    lang = ctx.lang
    if credit.kind is PaymentKind.PACK:
        text = t("pay_thanks_pack", lang, pictures=credit.images, balance=recorded.balance)
    else:
        until = recorded.subscription_until
        shown = until.strftime(DATE_FORMAT) if until is not None else "-"
        text = t("pay_thanks_subscription", lang, until=shown, balance=recorded.balance)
    await deps.api.send_message(ctx.chat_id, text)


async def handle_payment_refunded(deps: Deps, cmd: PaymentRefunded) -> None:
    """``refunded_payment`` from Telegram: take back what the charge credited, once."""
    refunded = await _refund_in_store(deps, cmd.refund.telegram_payment_charge_id)
    if refunded is None or not refunded.new:
        return
    await deps.api.send_message(cmd.ctx.chat_id, _told_user(refunded, cmd.ctx.lang))


async def handle_refund(deps: Deps, cmd: AdminCmd) -> None:
    """``/refund <charge_id>``: refundStarPayment, then take back what it credited."""
    lang = cmd.ctx.lang
    if len(cmd.args) != 1:
        await deps.api.send_message(cmd.ctx.chat_id, t("refund_usage", lang))
        return
    (charge,) = cmd.args
    payment = deps.store.payments.get(charge)
    if payment is None:
        await deps.api.send_message(cmd.ctx.chat_id, t("refund_unknown", lang, charge=charge))
        return
    if not payment.refunded:
        try:
            await deps.api.refund_star_payment(payment.user_id, charge)
        except TelegramBadRequest as exc:
            # Refunded already (an earlier /refund cut short before its debit, or a
            # refund made elsewhere): the stars are back, so the debit is still owed.
            if ALREADY_REFUNDED not in exc.description:
                await _refund_refused(deps, cmd, charge, exc)
                return
        except TelegramError as exc:
            await _refund_refused(deps, cmd, charge, exc)
            return
    refunded = await _refund_in_store(deps, charge)
    assert refunded is not None  # the row was read above and rows are never deleted
    if not refunded.new:
        await deps.api.send_message(cmd.ctx.chat_id, t("refund_again", lang, charge=charge))
        return
    log.info("admin_refund", extra=fields(by=cmd.ctx.user_id, charge=charge))
    await deps.api.send_message(
        cmd.ctx.chat_id,
        t(
            "refund_done",
            lang,
            charge=charge,
            stars=payment.total_amount,
            taken=refunded.taken,
            images=payment.images,
            missing=refunded.missing,
            user_id=payment.user_id,
            balance=refunded.balance,
        ),
    )
    user = deps.store.users.get(payment.user_id)
    try:
        await deps.api.send_message(
            payment.user_id, _told_user(refunded, user.language if user else "ru")
        )
    except TelegramError as exc:
        log.info("payment_refund_not_told", extra=fields(user=payment.user_id, error=str(exc)))


async def _refund_refused(deps: Deps, cmd: AdminCmd, charge: str, exc: TelegramError) -> None:
    text = t("refund_refused", cmd.ctx.lang, charge=charge, error=exc.description)
    await deps.api.send_message(cmd.ctx.chat_id, text)


async def _refund_in_store(deps: Deps, charge: str) -> Refunded | None:
    def refund_event(refunded: Refunded) -> EventRecord:
        return event_record(
            EventName.PAYMENT_REFUNDED,
            now=deps.now,
            user_id=refunded.payment.user_id,
            detail=f"stars={refunded.payment.total_amount} kind={refunded.payment.kind.value}"
            f" taken={refunded.taken} missing={refunded.missing} charge={charge}",
        )

    refunded = await deps.write(
        f"refund {charge}",
        lambda: deps.store.payments.refund(charge, now=deps.now(), event=refund_event),
    )
    if refunded is None:
        log.warning("payment_refund_unknown_charge", extra=fields(charge=charge))
    elif refunded.new:
        STARS_REFUNDED.inc(refunded.payment.total_amount)
    return refunded


def _told_user(refunded: Refunded, lang: str) -> str:
    return t(
        "refunded_to_user",
        lang,
        stars=refunded.payment.total_amount,
        taken=refunded.taken,
        balance=refunded.balance,
    )


async def handle_stop_renewal(deps: Deps, cmd: AdminCmd) -> None:
    """``/stoprenewal <user_id>``: the subscription runs to its paid end, then stops."""
    lang = cmd.ctx.lang
    try:
        (user_id,) = (int(arg) for arg in cmd.args)
    except ValueError:
        await deps.api.send_message(cmd.ctx.chat_id, t("stoprenewal_usage", lang))
        return
    charge = deps.store.payments.last_subscription_charge(user_id)
    if charge is None:
        await deps.api.send_message(cmd.ctx.chat_id, t("stoprenewal_none", lang, user_id=user_id))
        return
    try:
        await deps.api.edit_user_star_subscription(user_id, charge, is_canceled=True)
    except TelegramError as exc:
        text = t("stoprenewal_refused", lang, error=exc.description)
        await deps.api.send_message(cmd.ctx.chat_id, text)
        return
    log.info("admin_stopped_renewal", extra=fields(by=cmd.ctx.user_id, user=user_id, charge=charge))
    await deps.api.send_message(cmd.ctx.chat_id, t("stoprenewal_done", lang, user_id=user_id))


async def handle_pay_info(deps: Deps, cmd: PayInfoCmd) -> None:
    """``/paysupport`` and ``/terms``: the operator's own words from the personas file."""
    texts = deps.personas.texts
    chosen = texts.paysupport if cmd.name == "paysupport" else texts.terms
    lang: Lang = cmd.ctx.lang
    contact = deps.settings.support_contact
    if chosen is not None:
        text = chosen.get(lang)
    elif cmd.name == "paysupport" and contact:
        text = t("paysupport_contact", lang, contact=contact)
    else:
        text = t("pay_info_missing", lang)
    await deps.api.send_message(cmd.ctx.chat_id, text)
