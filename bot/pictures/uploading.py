""" "Sending a photo…" in the chat while its picture is being uploaded, and only then.

A chat action belongs to an upload, not to a wait: while a job waits or is drawn, its
status message says so. Telegram shows a chat action for at most five seconds
(docs/telegram.md, T9), so :func:`showing_upload` sends ``upload_photo`` when the upload
takes longer than ``UPLOAD_SHOWN_AFTER_S`` (most uploads end sooner, and then cost no
call at all) and renews it every four seconds until the block ends. It is cosmetic: the
send budget may drop it, a failure is logged at DEBUG, and it never delays the upload.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import trio

from bot.core.deps import Deps
from bot.telegram.errors import TelegramError
from common.logfields import fields

__all__ = ["CHAT_ACTION_INTERVAL_S", "showing_upload"]

log = logging.getLogger(__name__)

T = TypeVar("T")

CHAT_ACTION_INTERVAL_S: Final = 4.0
UPLOAD_SHOWN_AFTER_S: Final = 1.0
CHAT_ACTION_DEADLINE_S: Final = 3.0


async def showing_upload(deps: Deps, chat_id: int, upload: Callable[[], Awaitable[T]]) -> T:
    """Run *upload* with ``upload_photo`` shown in *chat_id* while it lasts; its result."""
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_renew, deps, chat_id)
        try:
            result = await upload()
        except Exception as exc:  # raised below, not inside the nursery's exception group
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result


async def _renew(deps: Deps, chat_id: int) -> None:
    await trio.sleep(UPLOAD_SHOWN_AFTER_S)
    while True:
        with trio.move_on_after(CHAT_ACTION_DEADLINE_S):
            try:
                await deps.api.send_chat_action(chat_id, "upload_photo")
            except TelegramError as exc:
                log.debug("telegram_chat_action_failed", extra=fields(chat=chat_id, error=str(exc)))
        await trio.sleep(CHAT_ACTION_INTERVAL_S)
