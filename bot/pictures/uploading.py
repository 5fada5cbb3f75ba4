""" "Sending a photo…" in every chat whose picture waits or is being made.

Telegram shows a chat action for at most five seconds (docs/telegram.md, T9), so one task
renews it every four for each chat with an active job, whether that job waits in our
queue, runs on ComfyUI or is being delivered, and stops when the chat has none left.
It wakes at once when a job is queued, so the action appears with the press's toast.
"""

from __future__ import annotations

import logging
import math
from typing import Final

import trio

from bot.core.deps import Deps
from bot.pictures.runtime import PicturesRuntime
from bot.telegram.errors import TelegramError
from common.logfields import fields

__all__ = ["CHAT_ACTION_INTERVAL_S", "run_chat_actions"]

log = logging.getLogger(__name__)

CHAT_ACTION_INTERVAL_S: Final = 4.0
CHAT_ACTION_DEADLINE_S: Final = 3.0


async def run_chat_actions(
    deps: Deps,
    runtime: PicturesRuntime,
    *,
    interval_s: float = CHAT_ACTION_INTERVAL_S,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Renew ``upload_photo`` in every chat with an active job, forever."""
    task_status.started()
    last_sent: dict[int, float] = {}
    while True:
        now = trio.current_time()
        chats = deps.store.jobs.active_chats()
        due = [chat for chat in chats if now - last_sent.get(chat, -math.inf) >= interval_s]
        for gone in set(last_sent) - set(chats):
            del last_sent[gone]
        async with trio.open_nursery() as nursery:
            for chat in due:
                last_sent[chat] = now
                nursery.start_soon(_show_uploading, deps, chat)
        await runtime.queue.wait_changed(timeout_s=interval_s)


async def _show_uploading(deps: Deps, chat_id: int) -> None:
    """Cosmetic: a failure is logged at DEBUG and never retried past its deadline."""
    with trio.move_on_after(CHAT_ACTION_DEADLINE_S):
        try:
            await deps.api.send_chat_action(chat_id, "upload_photo")
        except TelegramError as exc:
            log.debug("telegram_chat_action_failed", extra=fields(chat=chat_id, error=str(exc)))
