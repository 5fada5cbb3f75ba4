"""Concurrent update handling that keeps each chat's updates in order.

A user waiting for an LLM reply or a picture must not hold up anyone else, yet one chat's
messages must be handled in the order they were sent. So each active chat gets a *lane*:
a bounded channel and one task that drains it and ends when it is empty. Lanes run side
by side in the dispatcher's own nursery; a :class:`trio.CapacityLimiter` bounds how many
handlers run at once. An update with no chat gets a lane of its own user.

After its handler returns or raises (the exception is logged, the dispatcher goes on) an
update is marked done in the inbox. An update whose handler was cancelled is not marked
done, so it is handled again after a restart. When the input channel is closed, the
dispatcher finishes everything queued and in flight, then returns.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from bot.telegram.inbox import Inbox
from bot.telegram.types import Update
from comfy.logfields import fields

__all__ = [
    "DEFAULT_MAX_CONCURRENT",
    "LANE_CAPACITY",
    "LaneKey",
    "lane_key",
    "run_dispatcher",
]

DEFAULT_MAX_CONCURRENT: Final = 32  # handlers running at once, all chats together
LANE_CAPACITY: Final = 64  # queued updates per chat; more are dropped (a flood)

LaneKey = tuple[str, int]
Handler = Callable[[Update], Awaitable[None]]

log = logging.getLogger(__name__)


def lane_key(update: Update) -> LaneKey:
    """The lane an update is handled in: its chat, else its user, else its own.

    Button presses get a lane of their own beside their chat's messages: a press must be
    answered at once (Telegram shows a spinner until then), and it refers to a message
    already sent, so it need not wait for the chat's earlier messages to be answered.
    """
    chat = update.chat
    if chat is not None:
        return ("press" if update.callback_query is not None else "chat", chat.id)
    user = update.user
    if user is not None:
        return ("user", user.id)
    return ("update", update.update_id)


async def run_dispatcher(
    updates_in: trio.MemoryReceiveChannel[Update],
    handle: Handler,
    inbox: Inbox,
    *,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    lane_capacity: int = LANE_CAPACITY,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Handle updates from ``updates_in`` until it is closed and all work is finished.

    Args:
        updates_in: parsed updates, in the order Telegram numbered them.
        handle: the handler; its exceptions are logged, never raised here.
        inbox: marks each update done once its handler returned or raised.
        max_concurrent: most handlers running at the same time.
        lane_capacity: most updates queued for one chat; a further one is dropped,
            logged and marked done, so one flooding chat cannot stall the others.
    """
    limiter = trio.CapacityLimiter(max_concurrent)
    lanes: dict[LaneKey, trio.MemorySendChannel[Update]] = {}
    async with trio.open_nursery() as nursery, updates_in:
        task_status.started()
        async for update in updates_in:
            key = lane_key(update)
            lane = lanes.get(key)
            if lane is None:
                lane, lane_in = trio.open_memory_channel[Update](lane_capacity)
                lanes[key] = lane
                nursery.start_soon(_run_lane, key, lane_in, lanes, handle, inbox, limiter)
            try:
                lane.send_nowait(update)
            except trio.WouldBlock:
                log.warning(
                    "telegram_update_dropped",
                    extra=fields(
                        update_id=update.update_id,
                        lane=f"{key[0]}:{key[1]}",
                        reason=f"lane full ({lane_capacity} queued)",
                    ),
                )
                inbox.mark_done(update.update_id)


async def _run_lane(
    key: LaneKey,
    lane_in: trio.MemoryReceiveChannel[Update],
    lanes: dict[LaneKey, trio.MemorySendChannel[Update]],
    handle: Handler,
    inbox: Inbox,
    limiter: trio.CapacityLimiter,
) -> None:
    # The lane ends the moment its queue is empty. Between receive_nowait() failing and
    # the lane leaving `lanes` there is no checkpoint, and the dispatcher only uses
    # send_nowait(), so no update can be put into a lane that is ending.
    async with lane_in:
        while True:
            try:
                update = lane_in.receive_nowait()
            except trio.WouldBlock:
                lanes.pop(key).close()
                return
            await _handle_one(update, handle, inbox, limiter)


async def _handle_one(
    update: Update, handle: Handler, inbox: Inbox, limiter: trio.CapacityLimiter
) -> None:
    async with limiter:
        try:
            await handle(update)
        except Exception:
            log.exception(
                "telegram_handler_failed",
                extra=fields(update_id=update.update_id, type=update.kind),
            )
    inbox.mark_done(update.update_id)
