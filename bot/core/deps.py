"""What every handler needs, passed explicitly as one frozen object (no kwargs DI).

Besides the services, :class:`Deps` carries the small acts every feature shares: a store
write that waits out a locked database and announces the events it wrote
(:meth:`Deps.write`), making sure the user has a row (:meth:`Deps.ensure_user`) and
stopping a button's spinner (:meth:`Deps.answer_query`), so no feature has to import
them from another. What one feature offers another (the buy buttons under the picture
feature's "no pictures left") is handed in here by the process that wires them.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from bot.core.commands import Context
from bot.core.events import announce
from bot.core.limits import UserLimits
from bot.core.llm import ChatCompletions
from bot.core.personas import PersonaBook
from bot.core.settings import (
    DEFAULT_LLM_REPLIES_PER_USER_PER_MINUTE,
    DEFAULT_USER_MESSAGES_PER_MINUTE,
    DEFAULT_USER_PRESSES_PER_MINUTE,
    Settings,
)
from bot.core.texts import Lang
from bot.telegram.client import TelegramApi
from bot.telegram.errors import TelegramError
from bot.telegram.types import InlineKeyboardMarkup
from common.logfields import fields
from store import EventRecord, Store, User
from store.patience import STORE_PATIENCE_S, persist

__all__ = ["Deps", "DraftSupport", "Offers"]

log = logging.getLogger(__name__)

T = TypeVar("T")
# The buy buttons in a language, or None while nothing is for sale.
Offers = Callable[[Lang], InlineKeyboardMarkup | None]


def _default_limits() -> UserLimits:
    return UserLimits.per_minute(
        messages=DEFAULT_USER_MESSAGES_PER_MINUTE,
        llm_replies=DEFAULT_LLM_REPLIES_PER_USER_PER_MINUTE,
        presses=DEFAULT_USER_PRESSES_PER_MINUTE,
    )


def _nothing_for_sale(_: Lang) -> None:
    return None


@dataclass(slots=True)
class DraftSupport:
    """Whether this Bot API server knows ``sendMessageDraft``: until one refuses it."""

    available: bool = True


@dataclass(frozen=True, slots=True)
class Deps:
    api: TelegramApi
    store: Store
    personas: PersonaBook
    settings: Settings
    llm: ChatCompletions | None
    rng: random.Random
    now: Callable[[], datetime]
    bot_username: str | None = None
    limits: UserLimits = field(default_factory=_default_limits)
    offers: Offers = _nothing_for_sale
    drafts: DraftSupport = field(default_factory=DraftSupport)

    async def write(
        self, what: str, operation: Callable[[], T], *, patience_s: float = STORE_PATIENCE_S
    ) -> T:
        """Run one store operation (one transaction), waiting out a locked database
        (``store/patience.py``); then announce on stdout the events it wrote.

        Only the attempt that committed counts: a retried one's rolled-back rows are
        never announced.
        """
        written: list[EventRecord] = []

        def attempt() -> T:
            with self.store.events.recording() as events:
                result = operation()
            written[:] = events
            return result

        result = await persist(what, attempt, rng=self.rng, patience_s=patience_s)
        for record in written:
            announce(record)
        return result

    async def ensure_user(self, ctx: Context) -> User:
        """The user's row, created with ``FREE_IMAGES`` on first sight."""
        return await self.write(
            f"user {ctx.user_id}",
            lambda: self.store.users.ensure(
                ctx.user_id,
                now=self.now(),
                free_images=self.settings.free_images,
                first_name=ctx.first_name,
                language=ctx.language_code,
            ),
        )

    async def answer_query(
        self, query_id: str, text: str | None = None, *, show_alert: bool = False
    ) -> None:
        """Stop a button's spinner; the press is still handled if this fails.

        Telegram refuses answers to queries older than a few seconds ("query is too old"),
        which is normal for presses handled after a restart.
        """
        try:
            await self.api.answer_callback_query(query_id, text=text, show_alert=show_alert)
        except TelegramError as exc:
            log.info(
                "telegram_callback_query_not_answered",
                extra=fields(query=query_id, error=exc.description),
            )
