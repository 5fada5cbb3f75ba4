"""The async shell of the send budget: a call waits here until the budget grants it.

:class:`SendThrottle` keeps one :class:`~bot.telegram.send_budget.SendBudget` for the
whole process. It has no task of its own: each waiting call asks the budget for its
decisions (:meth:`SendBudget.next`), hands grants and drops to the calls they belong to,
and sleeps until it is woken or the budget's next time comes. So every wait lives in the
task of the call that waits, and a cancel there (a deadline, a stop) withdraws that
call's ticket and nothing else.
"""

from __future__ import annotations

import enum
import logging
import math

import trio

from bot.telegram.errors import TelegramCallDropped
from bot.telegram.send_budget import CallClass, Drop, Grant, SendBudget, SendRules, Ticket
from common.logfields import fields
from common.metrics import SEND_DROPPED, SEND_WAIT_SECONDS

__all__ = ["SendThrottle"]

log = logging.getLogger(__name__)


class _Outcome(enum.Enum):
    GRANTED = "granted"
    DROPPED = "dropped"


class SendThrottle:
    """One process's outbound limiter in front of the Bot API (docs/telegram.md, T7)."""

    def __init__(self, rules: SendRules | None = None) -> None:
        self._budget = SendBudget(rules)
        self._outcomes: dict[int, tuple[_Outcome, str]] = {}
        self._changed = trio.Event()
        self._wake_at = math.inf
        # Every waiter wakes on a change and asks for decisions; only the first needs to:
        # until something changes or the budget's next time comes, the answer is the same.
        self._dirty = False

    @property
    def rules(self) -> SendRules:
        return self._budget.rules

    async def wait_turn(self, method: str, call: CallClass) -> None:
        """Return when *call* may be sent.

        Raises:
            TelegramCallDropped: a cosmetic call dropped as stale or replaced by a newer one.
        """
        asked_at = trio.current_time()
        ticket = self._budget.add(call, asked_at)
        self._dirty = True
        try:
            while True:
                self._decide()
                outcome = self._outcomes.pop(ticket.seq, None)
                if outcome is not None:
                    break
                with trio.move_on_at(self._wake_at):
                    await self._changed.wait()
        finally:
            if self._budget.withdraw(ticket):  # this call was cancelled while waiting
                self._wake()
            self._outcomes.pop(ticket.seq, None)
        if outcome[0] is _Outcome.DROPPED:
            SEND_DROPPED.labels(reason=outcome[1]).inc()
            raise TelegramCallDropped(method, f"dropped by the send budget ({outcome[1]})")
        SEND_WAIT_SECONDS.observe(trio.current_time() - asked_at)

    def rate_limited(self, retry_after_s: float, *, chat: int | None = None) -> None:
        """Telegram answered 429 for a call about *chat*: that chat waits *retry_after_s*
        from now (every chat, for a call about none, or when several chats got one)."""
        everyone = self._budget.rate_limited(trio.current_time(), retry_after_s, chat=chat)
        log.info(
            "telegram_rate_limited",
            extra=fields(
                retry_after_s=round(retry_after_s, 3),
                chat=chat,
                held="all" if everyone else "chat",
                waiting=self._budget.waiting,
            ),
        )
        self._wake()

    def _decide(self) -> None:
        """Apply every decision the budget can make now; wake whoever they concern."""
        now = trio.current_time()
        if not self._dirty and now < self._wake_at:
            return
        self._dirty = False
        decided = False
        while True:
            step = self._budget.next(now)
            if isinstance(step, Grant):
                self._settle(step.ticket, _Outcome.GRANTED, "")
            elif isinstance(step, Drop):
                self._settle(step.ticket, _Outcome.DROPPED, step.reason)
            else:
                self._wake_at = step
                break
            decided = True
        if decided:
            self._wake()

    def _settle(self, ticket: Ticket, outcome: _Outcome, reason: str) -> None:
        self._outcomes[ticket.seq] = (outcome, reason)

    def _wake(self) -> None:
        self._dirty = True
        self._changed.set()
        self._changed = trio.Event()
