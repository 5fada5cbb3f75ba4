"""What every handler needs, passed explicitly as one frozen object (no kwargs DI).

Besides the services, :class:`Deps` carries the two small acts every feature shares:
making sure the user has a row (:meth:`Deps.ensure_user`) and stopping a button's
spinner (:meth:`Deps.answer_query`), so no feature has to import them from another.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.llm import ChatCompletions
from bot.personas import PersonaBook
from bot.pictures.runtime import PicturesRuntime
from bot.routing import Context
from bot.settings import Settings
from bot.telegram.client import TelegramApi
from bot.telegram.errors import TelegramError
from comfy.logfields import fields
from store import Store, User

__all__ = ["Deps"]

log = logging.getLogger(__name__)


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

    def ensure_user(self, ctx: Context) -> User:
        """The user's row, created with ``FREE_IMAGES`` on first sight."""
        return self.store.users.ensure(
            ctx.user_id,
            now=self.now(),
            free_images=self.settings.free_images,
            first_name=ctx.first_name,
            language=ctx.language_code,
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
