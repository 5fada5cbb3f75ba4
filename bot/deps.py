"""What every handler needs, passed explicitly as one frozen object (no kwargs DI).

Besides the services, :class:`Deps` carries the small acts every feature shares: a store
write that waits out a locked database (:meth:`Deps.write`), making sure the user has a
row (:meth:`Deps.ensure_user`) and stopping a button's spinner (:meth:`Deps.answer_query`),
so no feature has to import them from another.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from bot.llm import ChatCompletions
from bot.persist import STORE_PATIENCE_S, persist
from bot.personas import PersonaBook
from bot.pictures.runtime import PicturesRuntime
from bot.routing import Context
from bot.settings import (
    DEFAULT_LLM_REPLIES_PER_USER_PER_MINUTE,
    DEFAULT_USER_MESSAGES_PER_MINUTE,
    Settings,
)
from bot.telegram.client import TelegramApi
from bot.telegram.errors import TelegramError
from bot.user_limits import UserLimits
from comfy.logfields import fields
from store import Store, User

__all__ = ["Deps"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def _default_limits() -> UserLimits:
    return UserLimits.per_minute(
        messages=DEFAULT_USER_MESSAGES_PER_MINUTE,
        llm_replies=DEFAULT_LLM_REPLIES_PER_USER_PER_MINUTE,
    )


@dataclass(frozen=True, slots=True)
class Deps:
    api: TelegramApi
    store: Store
    personas: PersonaBook
    settings: Settings
    llm: ChatCompletions | None
    rng: random.Random
    now: Callable[[], datetime]
    pictures: PicturesRuntime | None = None  # None without COMFYUI_BASE_URL
    bot_username: str | None = None
    limits: UserLimits = field(default_factory=_default_limits)

    async def write(
        self, what: str, operation: Callable[[], T], *, patience_s: float = STORE_PATIENCE_S
    ) -> T:
        """Run one store operation, waiting out a locked database (``bot/persist.py``)."""
        return await persist(what, operation, rng=self.rng, patience_s=patience_s)

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
                "callback query not answered", extra=fields(query=query_id, error=exc.description)
            )
