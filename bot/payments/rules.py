"""The payment rules, from plain values (no I/O): pre-checkout, credit, refund wording.

* :func:`check_pre_checkout` decides, in the order listed there, whether a checkout may
  go on; a refusal names the text the buyer reads.
* :func:`credit_of` turns a ``successful_payment`` into the one :class:`~store.NewPayment`
  to store and credit (pictures, or the subscription's new end).

See docs/product.md, P18.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from bot.core.settings import Pack
from bot.payments.offers import (
    SUBSCRIPTION_PERIOD_S,
    PackPayload,
    SubscriptionPayload,
    decode_payload,
)
from bot.telegram.client import STARS_CURRENCY
from bot.telegram.types import PreCheckoutQuery, SuccessfulPayment
from store import NewPayment, PaymentKind

__all__ = [
    "Decline",
    "Unreadable",
    "check_pre_checkout",
    "credit_of",
]

SUBSCRIPTION_PERIOD: Final = timedelta(seconds=SUBSCRIPTION_PERIOD_S)


class Decline(enum.Enum):
    """Why a checkout is refused; the value is the text the buyer reads."""

    UNKNOWN_OFFER = "pay_refused_offer"  # not our payload, or the offer is gone or repriced
    WRONG_BUYER = "pay_refused_buyer"  # the invoice was made for someone else
    WRONG_CURRENCY = "pay_refused_offer"
    WRONG_AMOUNT = "pay_refused_offer"
    BLOCKED = "pay_refused_blocked"


def check_pre_checkout(
    query: PreCheckoutQuery,
    *,
    payer_blocked: bool,
    packs: tuple[Pack, ...],
    subscription_price: int,
) -> Decline | None:
    """None when the checkout may go on; else the first rule it breaks.

    *packs* and *subscription_price* are what is on sale now (a price of 0: no
    subscription).

    1. the payload is one this bot made, for an offer on sale now at that price;
    2. it was made for this buyer;
    3. the currency is XTR and the amount is the offer's price;
    4. the buyer is not blocked.
    """
    payload = decode_payload(query.invoice_payload)
    match payload:
        case PackPayload(pictures, stars, _):
            on_sale = Pack(pictures, stars) in packs
        case SubscriptionPayload(stars, _):
            on_sale = subscription_price > 0 and stars == subscription_price
        case None:
            return Decline.UNKNOWN_OFFER
    if not on_sale:
        return Decline.UNKNOWN_OFFER
    if payload.user_id != query.from_.id:
        return Decline.WRONG_BUYER
    if query.currency != STARS_CURRENCY:
        return Decline.WRONG_CURRENCY
    if query.total_amount != payload.stars:
        return Decline.WRONG_AMOUNT
    if payer_blocked:
        return Decline.BLOCKED
    return None


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A payment whose payload this bot cannot read: stored nowhere, logged loudly."""

    why: str


def credit_of(paid: SuccessfulPayment, *, payer_id: int, now: datetime) -> NewPayment | Unreadable:
    """What this payment credits: the pack's pictures, or the subscription to its end.

    The payment already happened, so the pack named in the payload is credited even if
    the operator has changed the offers since. A subscription runs to Telegram's
    ``subscription_expiration_date``; without one (never seen, but not promised), to
    30 days from now.
    """
    if not paid.telegram_payment_charge_id:
        return Unreadable("no telegram_payment_charge_id")
    payload = decode_payload(paid.invoice_payload)
    images, until = 0, None
    match payload:
        case PackPayload(pictures, _, _):
            kind, images = PaymentKind.PACK, pictures
        case SubscriptionPayload():
            kind = PaymentKind.SUBSCRIPTION
            expires = paid.subscription_expiration_date
            until = (
                datetime.fromtimestamp(expires, tz=UTC)
                if expires is not None
                else now + SUBSCRIPTION_PERIOD
            )
        case None:
            return Unreadable(f"unknown invoice payload {paid.invoice_payload!r}")
    return NewPayment(
        telegram_payment_charge_id=paid.telegram_payment_charge_id,
        provider_payment_charge_id=paid.provider_payment_charge_id,
        user_id=payer_id,
        kind=kind,
        invoice_payload=paid.invoice_payload,
        currency=paid.currency,
        total_amount=paid.total_amount,
        images=images,
        subscription_until=until,
        is_recurring=paid.is_recurring,
        is_first_recurring=paid.is_first_recurring,
    )
