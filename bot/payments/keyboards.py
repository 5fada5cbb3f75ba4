"""The buy buttons: under ``/buy``, ``/balance`` and the ``no_quota`` message.

Shared by the payments, accounts and pictures rooms, so it lives at the top of ``bot/``.
No buttons at all while payments are off (``STARS_PACKS`` empty and no subscription
price).
"""

from __future__ import annotations

from bot.core.buttons import BuyPack, BuySubscription, encode
from bot.core.settings import Settings
from bot.core.texts import Lang, t
from bot.telegram.types import InlineKeyboardButton, InlineKeyboardMarkup

__all__ = ["buy_keyboard"]


def buy_keyboard(settings: Settings, lang: Lang) -> InlineKeyboardMarkup | None:
    """One button per pack, then the subscription; None when nothing is for sale."""
    rows = [
        [
            InlineKeyboardButton(
                text=t("buy_pack_button", lang, pictures=pack.pictures, stars=pack.stars),
                callback_data=encode(BuyPack(pack.pictures)),
            )
        ]
        for pack in settings.stars_packs
    ]
    if settings.stars_subscription_price > 0:
        text = t(
            "buy_subscription_button",
            lang,
            daily=settings.subscription_daily_images,
            stars=settings.stars_subscription_price,
        )
        rows.append([InlineKeyboardButton(text=text, callback_data=encode(BuySubscription()))])
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None
