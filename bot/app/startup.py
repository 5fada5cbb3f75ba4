"""What the bot does with Telegram before it polls: find itself, make room for polling,
publish its commands.

An outage at boot (no network, a proxy needed and not set, Telegram down) is waited out
instead of ending the process: each call is tried once per cycle (the client's own
retries are off, so an outage is one log line per cycle, naming where the bot is trying to
go and when it tries next), with the project's backoff between cycles, and a 429's own
wait when Telegram names one. A token Telegram refuses ends the start at once, since no
wait will fix it. httpx honours ``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY`` from the
environment (docs/libraries.md, L31), so the route line names the proxy it will use.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Final, TypeVar
from urllib.parse import urlsplit
from urllib.request import getproxies

import trio

from bot.core.texts import ADMIN_MENU, COMMAND_MENU, PAYMENT_MENU, t
from bot.telegram.client import TelegramApi
from bot.telegram.errors import TelegramError, TelegramRetryAfter, TelegramUnauthorized
from bot.telegram.types import BotCommand, User
from common.backoff import backoff_delays
from common.logfields import fields

__all__ = [
    "STARTUP_BACKOFF_INITIAL_S",
    "STARTUP_BACKOFF_MAX_S",
    "route_to",
    "set_commands",
    "until_answered",
    "wait_for_telegram",
]

log = logging.getLogger(__name__)

PROFILE_DEADLINE_S: Final = 120.0

STARTUP_BACKOFF_INITIAL_S: Final = 2.0
STARTUP_BACKOFF_MAX_S: Final = 60.0

T = TypeVar("T")


def route_to(base_url: str, proxies: Mapping[str, str] | None = None) -> str:
    """Where the Bot API calls go: ``api.telegram.org``, or ``api.telegram.org via proxy
    host:port``; *proxies* as ``urllib.request.getproxies()`` reads them (the default).

    Only the proxy's host and port are named: its URL may carry a password.
    """
    url = urlsplit(base_url)
    host = url.netloc.rpartition("@")[2] or base_url
    proxies = getproxies() if proxies is None else proxies
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or _bypassed(url.hostname or "", proxies.get("no", "")):
        return host
    return f"{host} via proxy {urlsplit(proxy).netloc.rpartition('@')[2] or proxy}"


def _bypassed(host: str, no_proxy: str) -> bool:
    """``NO_PROXY`` covers *host*: ``*``, the host itself, or a domain above it."""
    for entry in (part.strip().lstrip(".") for part in no_proxy.split(",")):
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


async def until_answered(
    call: Callable[[], Awaitable[T]], *, what: str, route: str, rng: random.Random
) -> T:
    """``await call()`` until Telegram answers; one log line per failed cycle.

    Raises:
        TelegramUnauthorized: the token is wrong.
    """
    delays = backoff_delays(
        initial_s=STARTUP_BACKOFF_INITIAL_S, maximum_s=STARTUP_BACKOFF_MAX_S, rng=rng
    )
    while True:
        try:
            return await call()
        except TelegramUnauthorized:
            raise
        except TelegramRetryAfter as exc:
            delay = exc.retry_after
            log.warning(
                "telegram_start_waiting",
                extra=fields(
                    step=what,
                    route=route,
                    delay_s=round(delay, 1),
                    error=str(exc),
                    hint="Telegram asks to wait",
                ),
            )
        except TelegramError as exc:
            delay = next(delays)
            log.warning(
                "telegram_start_waiting",
                extra=fields(
                    step=what,
                    route=route,
                    delay_s=round(delay, 1),
                    error=str(exc),
                    hint="Telegram not reachable; if this host needs a proxy, set HTTPS_PROXY",
                ),
            )
        await trio.sleep(delay)


async def wait_for_telegram(api: TelegramApi, *, route: str, rng: random.Random) -> User:
    """``getMe`` until Telegram answers; the bot's own user.

    Raises:
        TelegramUnauthorized: the token is wrong.
    """
    return await until_answered(api.get_me, what="getMe", route=route, rng=rng)


async def set_commands(
    api: TelegramApi, *, payments_on: bool = False, admins: Iterable[int] = ()
) -> None:
    """The bot's profile in both languages: its description and short description, the
    command menu, and each admin's own menu with the admin commands (a menu scoped to
    that admin's private chat, so nobody else sees them). Cosmetic: failures are logged.

    While something is for sale, ``/buy``, ``/paysupport`` and ``/terms`` are listed too
    (docs/telegram.md, T15). Russian is the default for languages without their own.
    Runs beside polling and gives up after ``PROFILE_DEADLINE_S`` (a 429 on these calls
    can ask for minutes).
    """
    with trio.move_on_after(PROFILE_DEADLINE_S) as deadline:
        await _set_profile(api, payments_on=payments_on, admins=admins)
    if deadline.cancelled_caught:
        log.warning(
            "telegram_profile_not_set", extra=fields(what="all", after_s=PROFILE_DEADLINE_S)
        )


async def _set_profile(api: TelegramApi, *, payments_on: bool, admins: Iterable[int]) -> None:
    for lang, basic in COMMAND_MENU.items():
        code = None if lang == "ru" else lang
        commands = basic + PAYMENT_MENU[lang] if payments_on else basic
        menu = [BotCommand(command=c, description=d) for c, d in commands]
        admin_menu = menu + [BotCommand(command=c, description=d) for c, d in ADMIN_MENU[lang]]
        calls: Sequence[tuple[str, Callable[[], Awaitable[bool]]]] = [
            ("description", partial(api.set_my_description, t("bot_description", lang),
                                    language_code=code)),
            ("short_description", partial(api.set_my_short_description,
                                          t("bot_short_description", lang), language_code=code)),
            ("commands", partial(api.set_my_commands, menu, language_code=code)),
        ] + [
            ("admin_commands", partial(api.set_my_commands, admin_menu, language_code=code,
                                       chat_id=admin))
            for admin in sorted(admins)
        ]  # fmt: skip
        for what, call in calls:
            try:
                await call()
            except TelegramError as exc:
                log.warning(
                    "telegram_profile_not_set", extra=fields(what=what, lang=lang, error=str(exc))
                )
