"""What the bot does with Telegram before it polls: find itself, publish its commands.

A network outage at boot is waited out (with backoff, one warning per try) instead of
ending the process; a token Telegram refuses ends it at once, since no wait will fix it.
"""

from __future__ import annotations

import logging
import random
from typing import Final

import trio

from bot.telegram.client import TelegramApi
from bot.telegram.errors import TelegramError, TelegramUnauthorized
from bot.telegram.types import BotCommand, User
from bot.texts import COMMAND_MENU, PAYMENT_MENU
from comfy.backoff import backoff_delays

__all__ = ["set_commands", "wait_for_telegram"]

log = logging.getLogger(__name__)

STARTUP_BACKOFF_INITIAL_S: Final = 2.0
STARTUP_BACKOFF_MAX_S: Final = 60.0


async def wait_for_telegram(api: TelegramApi, *, rng: random.Random) -> User:
    """``getMe`` until Telegram answers; the bot's own user.

    Raises:
        TelegramUnauthorized: the token is wrong.
    """
    delays = backoff_delays(
        initial_s=STARTUP_BACKOFF_INITIAL_S, maximum_s=STARTUP_BACKOFF_MAX_S, rng=rng
    )
    while True:
        try:
            return await api.get_me()
        except TelegramUnauthorized:
            raise
        except TelegramError as exc:
            delay = next(delays)
            log.warning("Telegram not reachable at start (%s); trying again in %.1f s", exc, delay)
            await trio.sleep(delay)


async def set_commands(api: TelegramApi, *, payments_on: bool = False) -> None:
    """The command menu in both languages; cosmetic, so failures are only logged.

    While something is for sale, ``/buy``, ``/paysupport`` and ``/terms`` are listed too
    (docs/telegram.md, T15).
    """
    for lang, basic in COMMAND_MENU.items():
        commands = basic + PAYMENT_MENU[lang] if payments_on else basic
        try:
            await api.set_my_commands(
                [BotCommand(command=c, description=d) for c, d in commands],
                language_code=None if lang == "ru" else lang,
            )
        except TelegramError as exc:
            log.warning("setMyCommands failed (%s): %s", lang, exc)
