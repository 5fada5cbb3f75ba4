"""Concurrent update handling that keeps each chat in order and is fair between users.

A user waiting for an LLM reply or a picture must not hold up anyone else, yet one chat's
messages must be handled in the order they were sent. So:

* **Urgent updates** (:func:`is_urgent`: button presses, which Telegram shows a spinner
  for until they are answered; pre-checkout queries, which it cancels after 10 s; payment
  messages) run at once in a task of their own, before any lane. Money never waits:
  checkouts and payments take no limit at all. Presses share ``MAX_URGENT`` tasks, and one
  user holds at most ``max_urgent_per_user`` of them: a press beyond that is dropped (its
  spinner stops by itself), so one account pressing hundreds of times can neither fill
  the urgent tasks nor make the dispatcher stop reading.
* **Throttled updates** (the caller's ``throttled`` rule, e.g. a user over their message
  rate) are handed to ``handle_throttled`` at once as well; it only tells the user, and
  they never take a place in a lane.
* Everything else goes into its chat's **lane**: a bounded channel and one task that
  drains it in order and ends when it is empty. A handler runs holding a slot of its
  **user** (``max_per_user``) and then one of the shared limit (``max_concurrent``), so one
  account writing in a hundred groups holds at most ``max_per_user`` of the shared slots.
* A lane holds ``lane_capacity`` updates. One that is full never makes the dispatcher
  wait (every other chat would wait with it): the update goes to ``handle_throttled``
  like a message over its user's rate, and is done. Only a crowded group whose replies
  are stuck (a long 429 on that chat) or a user far ahead of a slow LLM gets there; a
  reply minutes late is worth less than the whole bot stalling. One log line when a lane
  overflows, one with the count when it empties.
* Lanes and queued updates are bounded in total. When the bot as a whole is saturated
  the dispatcher stops reading its input, so polling slows down; nothing is dropped.

An update is marked done in the inbox only after its handler succeeded. A handler that
raises :class:`TryAgainLater` (its store was unavailable) is run again after a pause, up
to ``attempts`` times; an update that still fails, or whose handler raised anything else,
is *parked* in the inbox with one log line: kept for the operator, never lost, never a
crash. An update whose handler was cancelled stays pending and is handled again after a
restart. When the input channel is closed, the dispatcher finishes everything queued and
in flight, then returns.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import trio

from bot.telegram.inbox import Inbox
from bot.telegram.types import Update
from common.backoff import backoff_delays
from common.logfields import fields
from store.errors import StoreUnavailable
from store.patience import persist

__all__ = [
    "ATTEMPTS",
    "DEFAULT_MAX_CONCURRENT",
    "LANE_CAPACITY",
    "MAX_LANES",
    "MAX_PER_USER",
    "MAX_QUEUED",
    "MAX_URGENT",
    "MAX_URGENT_PER_USER",
    "LaneKey",
    "TryAgainLater",
    "is_urgent",
    "lane_key",
    "run_dispatcher",
]

DEFAULT_MAX_CONCURRENT: Final = 32  # handlers running at once, all chats together
MAX_PER_USER: Final = 2  # handlers of one user running at once, across all their chats
MAX_URGENT: Final = 256  # press handlers at once; far above any real press rate
MAX_URGENT_PER_USER: Final = 4  # press handlers of one user at once; more are dropped
LANE_CAPACITY: Final = 64  # queued updates per chat; beyond it, an update is throttled
MAX_LANES: Final = 1000  # chats with updates queued or in hand, all together
MAX_QUEUED: Final = 2000  # updates queued or in hand in lanes, all together
ATTEMPTS: Final = 3  # runs of a handler whose store was unavailable, before parking
RETRY_INITIAL_S: Final = 2.0  # seconds before the second run; it doubles
INBOX_PATIENCE_S: Final = 60.0  # marking an update done or parked, before giving up

LaneKey = tuple[str, int]
Handler = Callable[[Update], Awaitable[None]]

log = logging.getLogger(__name__)


class TryAgainLater(Exception):
    """Raised by a handler that could not finish for a passing reason (a locked store).

    The dispatcher runs it again after a pause, and parks the update if it keeps failing.
    """


def is_urgent(update: Update) -> bool:
    """Handle this update at once, beside everything, never queued behind a chat.

    Telegram waits for an answer to a press and to a ``pre_checkout_query`` (unanswered
    after 10 s, the payment is cancelled: docs/telegram.md, T15). A ``successful_payment``
    or ``refunded_payment`` message waits for nobody, but it is a user's money: each is
    idempotent and independent of the chat's other messages, so it is credited at once
    rather than behind a slow LLM reply.
    """
    if update.callback_query is not None or update.pre_checkout_query is not None:
        return True
    message = update.message
    return message is not None and (
        message.successful_payment is not None or message.refunded_payment is not None
    )


def lane_key(update: Update) -> LaneKey:
    """The lane an update is handled in: its chat, else its user, else its own."""
    chat = update.chat
    if chat is not None:
        return ("chat", chat.id)
    user = update.user
    if user is not None:
        return ("user", user.id)
    return ("update", update.update_id)


def _never(_: Update) -> bool:
    return False


async def _ignore(_: Update) -> None:
    pass


class _Limits:
    """The shared limit, one limiter per busy user, and the totals; owned by one run."""

    def __init__(
        self,
        *,
        max_concurrent: int,
        max_per_user: int,
        max_lanes: int,
        max_queued: int,
        max_urgent_per_user: int,
    ) -> None:
        self.shared = trio.CapacityLimiter(max_concurrent)
        self.urgent = trio.CapacityLimiter(MAX_URGENT)
        self.max_urgent_per_user = max_urgent_per_user
        self.urgent_by_user: dict[int, int] = {}
        self.lanes = trio.Semaphore(max_lanes)
        self.queued = trio.Semaphore(max_queued)
        self._max_per_user = max_per_user
        self._users: dict[int, tuple[trio.CapacityLimiter, int]] = {}

    def user_limiter(self, user_id: int) -> trio.CapacityLimiter:
        limiter, users = self._users.get(user_id, (None, 0))
        if limiter is None:
            limiter = trio.CapacityLimiter(self._max_per_user)
        self._users[user_id] = (limiter, users + 1)
        return limiter

    def take_press(self, user_id: int) -> bool:
        """One of *user_id*'s press tasks, if they hold fewer than their share."""
        running = self.urgent_by_user.get(user_id, 0)
        if running >= self.max_urgent_per_user:
            return False
        self.urgent_by_user[user_id] = running + 1
        return True

    def press_done(self, user_id: int) -> None:
        running = self.urgent_by_user.pop(user_id) - 1
        if running:
            self.urgent_by_user[user_id] = running

    def user_done(self, user_id: int) -> None:
        limiter, users = self._users[user_id]
        if users <= 1:
            del self._users[user_id]  # no handler of this user waits or runs any more
        else:
            self._users[user_id] = (limiter, users - 1)


async def run_dispatcher(
    updates_in: trio.MemoryReceiveChannel[Update],
    handle: Handler,
    inbox: Inbox,
    *,
    throttled: Callable[[Update], bool] = _never,
    handle_throttled: Handler = _ignore,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    max_per_user: int = MAX_PER_USER,
    lane_capacity: int = LANE_CAPACITY,
    max_lanes: int = MAX_LANES,
    max_queued: int = MAX_QUEUED,
    max_urgent_per_user: int = MAX_URGENT_PER_USER,
    attempts: int = ATTEMPTS,
    rng: random.Random | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Handle updates from *updates_in* until it is closed and all work is finished.

    Args:
        updates_in: parsed updates, in the order Telegram numbered them.
        handle: the handler. :class:`TryAgainLater` means "run me again later"; any
            other exception is logged and the update parked.
        inbox: marks each update done, or parks it.
        throttled: updates to pass to *handle_throttled* instead, at once, outside lanes.
    """
    limits = _Limits(
        max_concurrent=max_concurrent,
        max_per_user=max_per_user,
        max_lanes=max_lanes,
        max_queued=max_queued,
        max_urgent_per_user=max_urgent_per_user,
    )
    work = _Work(handle, inbox, limits, attempts, rng if rng is not None else random.Random())
    lanes: dict[LaneKey, _Lane] = {}
    async with trio.open_nursery() as nursery, updates_in:
        task_status.started()
        async for update in updates_in:
            if is_money(update):
                nursery.start_soon(work.run_money, update, handle)
            elif is_urgent(update):
                chosen = handle_throttled if throttled(update) else handle
                await _start_press(update, chosen, nursery, work)
            elif throttled(update):
                await limits.urgent.acquire_on_behalf_of(update.update_id)
                nursery.start_soon(work.run_urgent, update, handle_throttled)
            else:
                await limits.queued.acquire()
                if not await _enqueue(update, lanes, nursery, work, lane_capacity):
                    limits.queued.release()
                    await limits.urgent.acquire_on_behalf_of(update.update_id)
                    nursery.start_soon(work.run_urgent, update, handle_throttled)


def is_money(update: Update) -> bool:
    """A checkout to answer, or a payment to credit: never limited, never queued."""
    message = update.message
    return update.pre_checkout_query is not None or (
        message is not None
        and (message.successful_payment is not None or message.refunded_payment is not None)
    )


async def _start_press(update: Update, handle: Handler, nursery: trio.Nursery, work: _Work) -> None:
    """A press in a task of its own, within its user's share; beyond it, dropped and done."""
    user = update.user
    if user is not None and not work.limits.take_press(user.id):
        log.info("telegram_press_dropped", extra=fields(update_id=update.update_id, user=user.id))
        await work.done(update)
        return
    await work.limits.urgent.acquire_on_behalf_of(update.update_id)
    nursery.start_soon(work.run_press, update, handle)


@dataclass
class _Lane:
    """A chat's queue as the dispatcher sees it, and how many updates found it full."""

    send: trio.MemorySendChannel[Update]
    overflowed: int = 0


async def _enqueue(
    update: Update,
    lanes: dict[LaneKey, _Lane],
    nursery: trio.Nursery,
    work: _Work,
    lane_capacity: int,
) -> bool:
    """Queue *update* in its chat's lane, opened if needed; False when the lane is full."""
    key = lane_key(update)
    lane = lanes.get(key)
    if lane is None:
        await work.limits.lanes.acquire()
        lane_send, lane_in = trio.open_memory_channel[Update](lane_capacity)
        lane = lanes[key] = _Lane(lane_send)
        nursery.start_soon(_run_lane, key, lane_in, lanes, work)
    # No checkpoint since the lookup: the lane cannot have ended in between (it ends
    # only once its channel is empty, and leaves `lanes` at that moment).
    try:
        lane.send.send_nowait(update)
    except trio.WouldBlock:
        if not lane.overflowed:
            log.warning(
                "telegram_lane_full", extra=fields(**{key[0]: key[1]}, capacity=lane_capacity)
            )
        lane.overflowed += 1
        return False
    return True


async def _run_lane(
    key: LaneKey,
    lane_in: trio.MemoryReceiveChannel[Update],
    lanes: dict[LaneKey, _Lane],
    work: _Work,
) -> None:
    # The lane ends the moment its queue is empty. Between receive_nowait() failing and
    # the lane leaving `lanes` there is no checkpoint, so no update can be put into a
    # lane that is ending (the dispatcher's send would find the lane gone and open a
    # new one).
    async with lane_in:
        try:
            while True:
                try:
                    update = lane_in.receive_nowait()
                except trio.WouldBlock:
                    lane = lanes.pop(key)
                    lane.send.close()
                    if lane.overflowed:
                        log.info(
                            "telegram_lane_overflow_ended",
                            extra=fields(**{key[0]: key[1]}, overflowed=lane.overflowed),
                        )
                    return
                try:
                    await work.run_in_lane(update)
                finally:
                    work.limits.queued.release()
        finally:
            work.limits.lanes.release()


class _Work:
    """Runs one update's handler with retries, then marks it done or parks it."""

    def __init__(
        self, handle: Handler, inbox: Inbox, limits: _Limits, attempts: int, rng: random.Random
    ) -> None:
        self.handle = handle
        self.inbox = inbox
        self.limits = limits
        self.attempts = attempts
        self.rng = rng

    async def run_urgent(self, update: Update, handle: Handler) -> None:
        try:
            await self._run(update, handle, self._unlimited)
        finally:
            self.limits.urgent.release_on_behalf_of(update.update_id)

    async def run_press(self, update: Update, handle: Handler) -> None:
        try:
            await self.run_urgent(update, handle)
        finally:
            if update.user is not None:
                self.limits.press_done(update.user.id)

    async def run_money(self, update: Update, handle: Handler) -> None:
        await self._run(update, handle, self._unlimited)

    async def done(self, update: Update) -> None:
        await self._patiently(
            f"mark update {update.update_id} done", lambda: self.inbox.mark_done(update.update_id)
        )

    async def run_in_lane(self, update: Update) -> None:
        await self._run(update, self.handle, self._limited)

    async def _unlimited(self, update: Update, handle: Handler) -> None:
        await handle(update)

    async def _limited(self, update: Update, handle: Handler) -> None:
        user = update.user
        if user is None:
            async with self.limits.shared:
                await handle(update)
            return
        limiter = self.limits.user_limiter(user.id)
        try:
            # The user's own slot first: waiting for it never holds a shared slot.
            async with limiter, self.limits.shared:
                await handle(update)
        finally:
            self.limits.user_done(user.id)

    async def _run(
        self,
        update: Update,
        handle: Handler,
        runner: Callable[[Update, Handler], Awaitable[None]],
    ) -> None:
        delays = backoff_delays(
            initial_s=RETRY_INITIAL_S, maximum_s=RETRY_INITIAL_S * 8, jitter="equal", rng=self.rng
        )
        for attempt in range(1, self.attempts + 1):
            try:
                await runner(update, handle)
            except TryAgainLater as exc:
                if attempt == self.attempts:
                    await self._park(update, f"still failing after {attempt} tries: {exc}")
                    return
                delay = next(delays)
                log.warning(
                    "telegram_update_retry",
                    extra=fields(
                        update_id=update.update_id,
                        attempt=attempt,
                        delay_s=round(delay, 1),
                        reason=str(exc),
                    ),
                )
                await trio.sleep(delay)
            except Exception as exc:
                log.exception(
                    "telegram_handler_failed",
                    extra=fields(update_id=update.update_id, type=update.kind),
                )
                await self._park(update, f"{type(exc).__name__}: {exc}")
                return
            else:
                await self.done(update)
                return

    async def _park(self, update: Update, why: str) -> None:
        log.error(
            "telegram_update_parked",
            extra=fields(update_id=update.update_id, type=update.kind, reason=why),
        )
        await self._patiently(
            f"park update {update.update_id}", lambda: self.inbox.park(update.update_id, why)
        )

    async def _patiently(self, what: str, operation: Callable[[], None]) -> None:
        """The inbox may be locked by another process for a while: wait, do not crash.

        Given up after ``INBOX_PATIENCE_S``, the update stays pending in the inbox and is
        handled again after a restart. An error no wait can mend is raised.
        """
        try:
            await persist(what, operation, rng=self.rng, patience_s=INBOX_PATIENCE_S)
        except StoreUnavailable as exc:
            log.error("telegram_inbox_unavailable", extra=fields(what=what, error=str(exc)))
