"""``/balance`` for everyone; ``/grant`` and ``/subscribe`` for admins.

Who is an admin is decided once, before these handlers run (:mod:`bot.app.handler`).
"""

from __future__ import annotations

import logging
from typing import Final

from bot.core.commands import AdminCmd, BalanceCmd
from bot.core.deps import Deps
from bot.core.texts import t
from bot.payments.keyboards import buy_keyboard
from common.logfields import fields

__all__ = ["handle_balance", "handle_grant", "handle_subscribe", "update_ref"]

log = logging.getLogger(__name__)

MAX_GRANT: Final = 100_000  # pictures one /grant may add or take
MAX_SUBSCRIPTION_DAYS: Final = 3660  # about ten years
# Telegram's user ids have at most 52 significant bits (docs/telegram.md, T2); a larger
# number is a typo, and beyond 2**63 SQLite cannot even store it.
MAX_USER_ID: Final = 2**52 - 1
DATE_FORMAT: Final = "%Y-%m-%d %H:%M"  # UTC, as /balance and the admin answers show it


async def handle_balance(deps: Deps, cmd: BalanceCmd) -> None:
    await deps.ensure_user(cmd.ctx)
    now = deps.now()
    daily = deps.settings.subscription_daily_images
    view = deps.store.quota.view(cmd.ctx.user_id, now=now, daily_limit=daily)
    lines = [t("balance", cmd.ctx.lang, balance=view.balance)]
    if view.subscription_active(now) and view.subscription_until is not None:
        lines.append(
            t(
                "balance_subscription",
                cmd.ctx.lang,
                until=view.subscription_until.strftime(DATE_FORMAT),
                left=view.subscription_left_today(now),
                daily=daily,
            )
        )
        if deps.store.payments.last_subscription_charge(cmd.ctx.user_id) is not None:
            # A paid subscription renews on its last day (docs/product.md, P18).
            until = view.subscription_until.strftime(DATE_FORMAT)
            lines.append(t("balance_renewal", cmd.ctx.lang, until=until))
    markup = buy_keyboard(deps.settings, cmd.ctx.lang)
    await deps.api.send_message(cmd.ctx.chat_id, "\n".join(lines), reply_markup=markup)


def update_ref(update_id: int) -> str:
    """The ledger's reference for an effect of one update (an admin's command)."""
    return f"update:{update_id}"


def _parse_args(args: tuple[str, ...], *, maximum: int) -> tuple[int, int] | None:
    """``<user_id> <n>`` with sane bounds, or None."""
    if len(args) != 2:
        return None
    try:
        user_id, amount = int(args[0]), int(args[1])
    except ValueError:
        return None
    if not 0 < user_id <= MAX_USER_ID or not -maximum <= amount <= maximum:
        return None
    return user_id, amount


async def handle_grant(deps: Deps, cmd: AdminCmd) -> None:
    """``/grant <user_id> <n>``: add (or with a negative n, take) pictures."""
    lang = cmd.ctx.lang
    parsed = _parse_args(cmd.args, maximum=MAX_GRANT)
    if parsed is None:
        await deps.api.send_message(cmd.ctx.chat_id, t("grant_usage", lang))
        return
    user_id, images = parsed
    now = deps.now()
    granted = await deps.write(
        f"grant to user {user_id}",
        lambda: deps.store.quota.grant(
            user_id,
            images,
            now=now,
            free_images=deps.settings.free_images,
            ref=update_ref(cmd.ctx.update_id),
        ),
    )
    await deps.ensure_user(cmd.ctx)
    if granted is None:  # this update was handled before (a restart): tell, change nothing
        balance = deps.store.quota.view(user_id, now=now, daily_limit=0).balance
        text = t("grant_again", lang, user_id=user_id, balance=balance)
    else:
        log.info(
            "admin_grant",
            extra=fields(
                by=cmd.ctx.user_id, user=user_id, images=granted.images, balance=granted.balance
            ),
        )
        text = t(
            "grant_done", lang, user_id=user_id, images=granted.images, balance=granted.balance
        )
    await deps.api.send_message(cmd.ctx.chat_id, text)


async def handle_subscribe(deps: Deps, cmd: AdminCmd) -> None:
    """``/subscribe <user_id> <days>``: extend a subscription."""
    lang = cmd.ctx.lang
    parsed = _parse_args(cmd.args, maximum=MAX_SUBSCRIPTION_DAYS)
    if parsed is None or parsed[1] <= 0:
        await deps.api.send_message(cmd.ctx.chat_id, t("subscribe_usage", lang))
        return
    user_id, days = parsed
    now = deps.now()
    until = await deps.write(
        f"subscription of user {user_id}",
        lambda: deps.store.quota.subscribe(
            user_id,
            days,
            now=now,
            free_images=deps.settings.free_images,
            ref=update_ref(cmd.ctx.update_id),
        ),
    )
    await deps.ensure_user(cmd.ctx)
    if until is None:  # this update was handled before (a restart): tell, change nothing
        current = deps.store.quota.view(user_id, now=now, daily_limit=0).subscription_until
        shown = current.strftime(DATE_FORMAT) if current is not None else "-"
        text = t("subscribe_again", lang, user_id=user_id, until=shown)
    else:
        log.info(
            "admin_subscribe",
            extra=fields(by=cmd.ctx.user_id, user=user_id, days=days, until=until),
        )
        text = t("subscribe_done", lang, user_id=user_id, until=until.strftime(DATE_FORMAT))
    await deps.api.send_message(cmd.ctx.chat_id, text)
