""" "Sending a photo…" in the chat while a picture is made (SPEC §3.2, ENGINEERING E7).

Telegram shows a chat action for at most five seconds, so it is renewed every four,
from a task that lives exactly as long as the job (cancelled when the job ends).
"""

from __future__ import annotations

import logging
from typing import Final

import trio

from bot.telegram_api import TelegramApi
from bot.telegram_errors import TelegramError

__all__ = ["CHAT_ACTION_INTERVAL_S", "keep_uploading_photo"]

log = logging.getLogger(__name__)

CHAT_ACTION_INTERVAL_S: Final = 4.0
CHAT_ACTION_DEADLINE_S: Final = 10.0


async def keep_uploading_photo(
    api: TelegramApi,
    chat_id: int,
    *,
    interval_s: float = CHAT_ACTION_INTERVAL_S,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Send ``upload_photo`` now and every *interval_s* until cancelled; never fails."""
    task_status.started()
    while True:
        try:
            with trio.move_on_after(CHAT_ACTION_DEADLINE_S):
                await api.send_chat_action(chat_id, "upload_photo")
        except TelegramError as exc:
            log.debug("chat action failed chat=%s: %s", chat_id, exc)
        await trio.sleep(interval_s)
