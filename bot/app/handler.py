"""One update in: route it, call its feature's handler, deal with what every handler shares.

This is the one place that knows every feature: each command goes to exactly one handler.
The admin check is here too, once, before any admin command runs.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from bot.chat.forget import handle_forget
from bot.chat.handlers import (
    handle_chat_text,
    handle_help,
    handle_non_text,
    handle_persona,
    handle_persona_choice,
    handle_privacy,
    handle_reset,
    handle_start,
    handle_unknown_callback,
    handle_unknown_command,
)
from bot.core.buttons import (
    Button,
    BuyPack,
    BuySubscription,
    Cancel,
    ChoosePersona,
    Look,
    Variant,
)
from bot.core.commands import (
    AdminCmd,
    B,
    BalanceCmd,
    BlockedChange,
    BuyCmd,
    ChatText,
    Command,
    ForgetCmd,
    HelpCmd,
    Ignored,
    NonText,
    PayInfoCmd,
    PaymentReceived,
    PaymentRefunded,
    PersonaCmd,
    PreCheckout,
    Press,
    PrivacyCmd,
    ResetCmd,
    StartCmd,
    UnknownCallback,
    UnknownCmd,
    route,
)
from bot.core.deps import Deps
from bot.core.texts import t
from bot.ops.stats import handle_stats
from bot.payments.accounts import handle_balance, handle_grant, handle_subscribe
from bot.payments.handlers import (
    handle_buy,
    handle_buy_press,
    handle_pay_info,
    handle_payment_received,
    handle_payment_refunded,
    handle_pre_checkout,
    handle_refund,
    handle_stop_renewal,
)
from bot.pictures.press import handle_cancel, request_image_on_demand
from bot.pictures.runtime import PicturesRuntime
from bot.telegram.dispatcher import TryAgainLater
from bot.telegram.errors import TelegramBadRequest, TelegramForbidden, chat_not_found
from bot.telegram.types import Update
from common.logfields import fields
from common.metrics import UPDATES, UPDATES_THROTTLED
from store import StoreError, is_transient

__all__ = ["ADMIN_HANDLERS", "command_label", "dispatch_command", "make_handler", "make_throttle"]

log = logging.getLogger(__name__)


def make_handler(
    deps: Deps, pictures: PicturesRuntime | None = None
) -> Callable[[Update], Awaitable[None]]:
    """The dispatcher's handler: route, handle, and deal with what every handler shares.

    A user who blocked the bot is marked so; a chat Telegram no longer finds ends the
    update with a log line. A store that stays unavailable (locked by
    another process, a full disk) becomes :class:`TryAgainLater`: the dispatcher runs the
    update again later instead of losing it; a press is told to try again meanwhile.
    """

    async def handle(update: Update) -> None:
        command = route(update, bot_username=deps.bot_username)
        UPDATES.labels(command=command_label(command)).inc()
        try:
            await dispatch_command(deps, command, pictures)
        except TelegramForbidden as exc:
            user_id = update.user.id if update.user is not None else None
            log.info("user_blocked_the_bot", extra=fields(user=user_id, error=exc.description))
            if user_id is not None:
                await _set_blocked(deps, user_id, blocked=True)
        except TelegramBadRequest as exc:
            if not chat_not_found(exc):
                raise
            chat = update.chat.id if update.chat is not None else None
            log.info("telegram_chat_not_found", extra=fields(chat=chat, error=exc.description))
        except (StoreError, sqlite3.Error) as exc:
            if isinstance(exc, sqlite3.Error) and not is_transient(exc):
                raise
            await _tell_presser_to_try_later(deps, update)
            raise TryAgainLater(f"store unavailable: {exc}") from exc

    return handle


def make_throttle(
    deps: Deps,
) -> tuple[Callable[[Update], bool], Callable[[Update], Awaitable[None]]]:
    """The dispatcher's rate rule and what a throttled update gets.

    Messages count against ``USER_MESSAGES_PER_MINUTE``: a throttled user is told once a
    minute, in a private chat only (a notice in every group would be a flood of its own),
    and the message itself is not handled; so is a message whose chat already has a full
    queue (the dispatcher's lane). Presses count against
    ``USER_PRESSES_PER_MINUTE``: a throttled press gets a polite toast (at most one a
    second per user; the others stop spinning by themselves) and nothing else (no picture,
    no resend). Checkouts and payments never count.
    """

    def throttled(update: Update) -> bool:
        user = update.user
        if user is None:
            return False
        if update.callback_query is not None:
            return not deps.limits.presses.take(user.id, trio.current_time())
        if update.message is None:
            return False
        return not deps.limits.messages.take(user.id, trio.current_time())

    async def handle_throttled(update: Update) -> None:
        UPDATES_THROTTLED.inc()
        # Besides updates over a rate, a chat's full lane hands over any of its updates:
        # one with no sender, an edit, a member change. Those are dropped, unanswered.
        query, message, user = update.callback_query, update.message, update.user
        if user is None:
            log.info("telegram_update_throttled", extra=fields(update_id=update.update_id))
            return
        if query is not None:
            log.info("user_press_throttled", extra=fields(user=user.id))
            if deps.limits.should_toast(user.id, trio.current_time()):
                await deps.answer_query(query.id, text=t("press_throttled", user.language_code))
            return
        chat = update.chat
        log.info(
            "user_message_throttled",
            extra=fields(user=user.id, chat=chat.id if chat is not None else None),
        )
        if message is None or message.chat.type != "private":
            return  # a notice in every group would be a flood of its own
        if deps.limits.should_tell(user.id, trio.current_time()):
            await deps.api.send_message(message.chat.id, t("throttled", user.language_code))

    return throttled, handle_throttled


async def _set_blocked(deps: Deps, user_id: int, *, blocked: bool) -> None:
    await deps.write(
        f"blocked flag of user {user_id}",
        lambda: deps.store.users.set_blocked(user_id, blocked=blocked, now=deps.now()),
    )


async def _tell_presser_to_try_later(deps: Deps, update: Update) -> None:
    """A press whose handler could not reach the store still gets its spinner stopped."""
    query = update.callback_query
    if query is not None:
        await deps.answer_query(query.id, text=t("try_later", query.from_.language_code))


async def dispatch_command(
    deps: Deps, command: Command, pictures: PicturesRuntime | None = None
) -> None:
    """Call the one handler for *command*; *pictures* is None while pictures are off."""
    match command:
        case StartCmd():
            await handle_start(deps, command)
        case HelpCmd():
            await handle_help(deps, command)
        case PersonaCmd():
            await handle_persona(deps, command)
        case BalanceCmd():
            await handle_balance(deps, command)
        case BuyCmd():
            await handle_buy(deps, command)
        case PayInfoCmd():
            await handle_pay_info(deps, command)
        case Press(button=BuyPack() | BuySubscription() as button):
            await handle_buy_press(deps, _typed(command, button))
        case PreCheckout():
            await handle_pre_checkout(deps, command)
        case PaymentReceived():
            await handle_payment_received(deps, command)
        case PaymentRefunded():
            await handle_payment_refunded(deps, command)
        case ForgetCmd():
            await handle_forget(deps, command)
        case PrivacyCmd():
            await handle_privacy(deps, command)
        case ResetCmd():
            await handle_reset(deps, command)
        case AdminCmd():
            await _admin(deps, command)
        case UnknownCmd():
            await handle_unknown_command(deps, command)
        case ChatText():
            await handle_chat_text(deps, command)
        case NonText():
            await handle_non_text(deps, command)
        case Press(button=Look() | Variant() as button):
            await request_image_on_demand(deps, pictures, _typed(command, button))
        case Press(button=ChoosePersona() as button):
            await handle_persona_choice(deps, _typed(command, button))
        case Press(button=Cancel() as button):
            await handle_cancel(deps, pictures, _typed(command, button))
        case UnknownCallback():
            await handle_unknown_callback(deps, command)
        case BlockedChange():
            log.info(
                "user_blocked_the_bot" if command.blocked else "user_unblocked_the_bot",
                extra=fields(user=command.user_id),
            )
            await _set_blocked(deps, command.user_id, blocked=command.blocked)
        case Ignored():
            log.debug("update_ignored", extra=fields(why=command.why))


def command_label(command: Command) -> str:
    """*command*'s name in the metrics: its class in snake case, a press by its button
    (``chat_text``, ``press_look``): a closed set, never an argument."""
    name = type(command.button if isinstance(command, Press) else command).__name__
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name.removesuffix("Cmd")).lower()
    return f"press_{snake}" if isinstance(command, Press) else snake


def _typed(press: Press[Button], button: B) -> Press[B]:
    """*press* typed by the button its pattern matched (mypy does not narrow a generic
    class by one of its fields)."""
    return Press(press.ctx, press.query_id, press.message_id, button)


ADMIN_HANDLERS: Final = {
    "grant": handle_grant,
    "subscribe": handle_subscribe,
    "stats": handle_stats,
    "refund": handle_refund,
    "stoprenewal": handle_stop_renewal,
}


async def _admin(deps: Deps, command: AdminCmd) -> None:
    """``ADMIN_USER_IDS`` may run admin commands; everyone else is told so."""
    if not deps.settings.is_admin(command.ctx.user_id):
        log.warning(
            "admin_command_refused", extra=fields(user=command.ctx.user_id, command=command.name)
        )
        await deps.api.send_message(command.ctx.chat_id, t("admin_only", command.ctx.lang))
        return
    await ADMIN_HANDLERS[command.name](deps, command)
