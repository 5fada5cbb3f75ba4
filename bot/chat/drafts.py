"""A persona's reply growing on the screen while the LLM writes it (``sendMessageDraft``).

In a private chat, with an LLM that streams, the text so far is shown as a draft: the
first piece as soon as it arrives, then the latest text at most every
``DRAFT_INTERVAL_S`` (one draft id, so Telegram animates the changes). The first draft
waits its turn like a status post; the later ones are cosmetic, so under load the send
budget thins them. The reply itself is still sent with ``sendMessage`` and its button
once complete. A Bot API server that does not know the
method (404, or a 400 that names the method) turns drafts off for the process, with one
log line (``telegram_drafts_unsupported``).
"""

from __future__ import annotations

import logging
from typing import Final

import trio

from bot.core.deps import Deps
from bot.core.llm import MAX_REPLY_CHARS
from bot.telegram.errors import TelegramBadRequest, TelegramCallDropped, TelegramError
from bot.telegram.send_budget import Priority
from common.logfields import fields

__all__ = ["DRAFT_INTERVAL_S", "DraftWriter"]

log = logging.getLogger(__name__)

DRAFT_INTERVAL_S: Final = 1.0
MAX_DRAFT_ID: Final = 2**31 - 1


class DraftWriter:
    """The drafts of one reply: :meth:`show` from the LLM's reader, :meth:`run` beside it."""

    def __init__(self, deps: Deps, chat_id: int) -> None:
        self._deps = deps
        self._chat_id = chat_id
        self._draft_id = deps.rng.randint(1, MAX_DRAFT_ID)  # non-zero, as Telegram asks
        self._text = ""
        self._shown = ""
        self._changed = trio.Event()

    def show(self, text: str) -> None:
        """The reply so far (called synchronously from the LLM's reader)."""
        self._text = text[:MAX_REPLY_CHARS]
        self._changed.set()

    async def run(self) -> None:
        """Send the latest text whenever it changed, at most every ``DRAFT_INTERVAL_S``,
        until cancelled (the reply is complete) or drafts turn out to be unsupported."""
        while self._deps.drafts.available:
            await self._changed.wait()
            self._changed = trio.Event()
            if self._text == self._shown:
                continue
            first = not self._shown
            self._shown = self._text
            if not await self._send(self._shown, first=first):
                return
            await trio.sleep(DRAFT_INTERVAL_S)

    async def _send(self, text: str, *, first: bool) -> bool:
        """False once drafts are known to be unsupported here. The first draft is the
        user's first sight of the reply: like a status post, it is never dropped by the
        send budget; the later ones are cosmetic."""
        priority = Priority.STATUS if first else None
        try:
            await self._deps.api.send_message_draft(
                self._chat_id, self._draft_id, text, priority=priority
            )
        except TelegramCallDropped:
            return True  # thinned by the send budget: the next piece goes instead
        except TelegramError as exc:
            if _unsupported(exc):
                self._deps.drafts.available = False
                log.warning(
                    "telegram_drafts_unsupported",
                    extra=fields(
                        error=exc.description,
                        hint="this Bot API server has no sendMessageDraft (Bot API 9.5):"
                        " replies are shown when complete",
                    ),
                )
                return False
            log.debug("telegram_draft_failed", extra=fields(chat=self._chat_id, error=str(exc)))
        return True


def _unsupported(error: TelegramError) -> bool:
    """Telegram answers an unknown method with 404; some servers with a 400 naming it."""
    if error.error_code == 404:
        return True
    return isinstance(error, TelegramBadRequest) and "method" in error.description.lower()
