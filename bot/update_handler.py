"""One update in: route it, call its feature's handler, deal with what every handler shares.

This is the one place that knows every feature: each command goes to exactly one handler.
The admin check is here too, once, before any admin command runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

from bot.accounts.commands import handle_balance, handle_grant, handle_subscribe
from bot.chat.handlers import (
    handle_chat_text,
    handle_help,
    handle_non_text,
    handle_persona,
    handle_persona_choice,
    handle_reset,
    handle_start,
    handle_unknown_callback,
    handle_unknown_command,
)
from bot.deps import Deps
from bot.ops.stats import handle_stats
from bot.pictures.press import handle_cancel, request_image_on_demand
from bot.routing import (
    AdminCmd,
    BalanceCmd,
    BlockedChange,
    CancelPress,
    ChatText,
    Command,
    HelpCmd,
    Ignored,
    ImagePress,
    NonText,
    PersonaChoice,
    PersonaCmd,
    ResetCmd,
    StartCmd,
    UnknownCallback,
    UnknownCmd,
    route,
)
from bot.telegram.errors import TelegramForbidden
from bot.telegram.types import Update
from bot.texts import t
from comfy.logfields import fields

__all__ = ["ADMIN_HANDLERS", "dispatch_command", "make_handler"]

log = logging.getLogger(__name__)


def make_handler(deps: Deps) -> Callable[[Update], Awaitable[None]]:
    """The dispatcher's handler: route, handle, and mark users who blocked the bot."""

    async def handle(update: Update) -> None:
        command = route(update, bot_username=deps.bot_username)
        try:
            await dispatch_command(deps, command)
        except TelegramForbidden as exc:
            user_id = update.user.id if update.user is not None else None
            log.info("user blocked the bot", extra=fields(user=user_id, error=exc.description))
            if user_id is not None:
                deps.store.users.set_blocked(user_id, blocked=True, now=deps.now())

    return handle


async def dispatch_command(deps: Deps, command: Command) -> None:
    """Call the one handler for *command*."""
    match command:
        case StartCmd():
            await handle_start(deps, command)
        case HelpCmd():
            await handle_help(deps, command)
        case PersonaCmd():
            await handle_persona(deps, command)
        case BalanceCmd():
            await handle_balance(deps, command)
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
        case ImagePress():
            await request_image_on_demand(deps, command)
        case PersonaChoice():
            await handle_persona_choice(deps, command)
        case CancelPress():
            await handle_cancel(deps, command)
        case UnknownCallback():
            await handle_unknown_callback(deps, command)
        case BlockedChange():
            log.info(
                "user %s the bot",
                "blocked" if command.blocked else "unblocked",
                extra=fields(user=command.user_id),
            )
            deps.store.users.set_blocked(command.user_id, blocked=command.blocked, now=deps.now())
        case Ignored():
            log.debug("update ignored: %s", command.why)


ADMIN_HANDLERS: Final = {
    "grant": handle_grant,
    "subscribe": handle_subscribe,
    "stats": handle_stats,
}


async def _admin(deps: Deps, command: AdminCmd) -> None:
    """``ADMIN_USER_IDS`` may run admin commands; everyone else is told so."""
    if not deps.settings.is_admin(command.ctx.user_id):
        log.warning(
            "admin command refused", extra=fields(user=command.ctx.user_id, command=command.name)
        )
        await deps.api.send_message(command.ctx.chat_id, t("admin_only", command.ctx.lang))
        return
    await ADMIN_HANDLERS[command.name](deps, command)
