"""Telegram's send budget: which waiting Bot API call goes next, and which are dropped.

Telegram asks a bot to stay around 30 messages a second overall and about one a second
in one chat, short bursts tolerated, and answers more with 429 (docs/telegram.md, T7).
Every call that writes to Telegram waits here for its turn. This module is the rules and
nothing else (no I/O, no clock of its own; :mod:`bot.telegram.throttle` is the async
shell that waits); its tests are synchronous.

Theory of operation:

* **Classes.** :func:`classify` sorts a call by its method: a press's toast
  (``answerCallbackQuery``) is :attr:`Priority.TOAST`, Telegram refuses it after a few
  seconds; replies, photos and notices are :attr:`Priority.MESSAGE`; the status board
  marks its posts and deletes :attr:`Priority.STATUS` (never dropped either, but when the
  budget is short they wait behind the pictures themselves); chat actions, and the edits
  the board marks so (queue places, progress), are :attr:`Priority.COSMETIC`; the
  board's preview pictures are :attr:`Priority.PREVIEW`, cosmetic in every rule below and
  the last of them to go. Polling and start-up calls write nothing to a chat and are not
  counted.
* **Windows.** At most ``per_second`` granted calls in any window of one second, and at
  most ``per_chat`` in any ``chat_window_s`` in one private chat (an average of one a
  second, bursts of ``per_chat``); a group (a chat id below zero) gets Telegram's group
  budget, ``per_group`` in any ``group_window_s``. Sliding windows, not token buckets, so
  no one-second window ever holds more than ``per_second``.
* **Order.** The waiting call with the best priority that both windows allow goes next;
  among equals, the one that waited longest. A toast is neither held by the windows nor
  counted in them: it is no message in a chat, there is one per press, and a burst of
  presses must not hold the photos of pictures already drawn. Status and cosmetic calls
  never take the last ``cosmetic_per_second`` slots of a second, kept for replies and
  photos.
* **Thinning.** Cosmetic calls share at most ``cosmetic_per_second`` of each second;
  they and the status posts leave the last two slots of every chat's window to replies
  and photos. So while
  pictures are few every edit and chat action goes out, and as the picture rate rises
  their share stays fixed: calls per picture fall. A cosmetic call still waiting after
  ``cosmetic_max_wait_s`` is dropped (a stale "drawing 40 %" is worth nothing), and a
  newer cosmetic call with the same merge key (the same message's edit, the same chat's
  action) replaces an older one still waiting. Toasts, messages and status posts and
  deletes are never dropped.
* **429.** :meth:`SendBudget.rate_limited` holds the chat the refused call was about
  until ``retry_after`` has passed, and nothing else: one busy group must not stop every
  chat. Only when several chats get one within ``STORM_WINDOW_S`` (Telegram is telling
  the bot, not a chat, to slow down), or the call was about no chat, is every call held.
  Answers to presses and to checkouts are never held (a pre-checkout not answered within
  10 s is a payment Telegram cancels): if Telegram refuses one, only it waits.

A withdrawn ticket (its caller was cancelled while waiting) leaves no trace; a granted
one counts whether or not its call then reaches Telegram, which only errs on the safe
side.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "CHAT_WRITES",
    "DEFAULT_PER_SECOND",
    "PRIORITY_OF",
    "Drop",
    "Grant",
    "Priority",
    "SendBudget",
    "SendRules",
    "Ticket",
    "classify",
]

DEFAULT_PER_SECOND: Final = 25  # a margin under Telegram's "about 30" (docs/telegram.md, T7)
WINDOW_S: Final = 1.0
COSMETIC_SHARE: Final = 5  # cosmetic calls may use one call in this many of each second
# Of a chat's window, kept for replies and photos: a user who pressed five times at once
# gets their status posts, but never so many that a finished photo waits behind them.
CHAT_SLOTS_KEPT: Final = 2
# 429s in this many different chats within STORM_WINDOW_S seconds hold every chat.
STORM_CHATS: Final = 3
STORM_WINDOW_S: Final = 1.0


class Priority(enum.IntEnum):
    """Lower goes first."""

    TOAST = 0  # answerCallbackQuery: useless once the query is too old
    MESSAGE = 1  # replies, photos, notices: never dropped
    STATUS = 2  # status posts and their deletes: never dropped, but after the pictures
    COSMETIC = 3  # chat actions, status edits: thinned under load, dropped when stale
    PREVIEW = 4  # the forming picture in a status message: cosmetic, and after the others

    @property
    def cosmetic(self) -> bool:
        return self >= Priority.COSMETIC


# The class of each method the bot calls; a method not listed is not counted (polling,
# start-up, webhook calls write nothing to a chat).
PRIORITY_OF: Final[Mapping[str, Priority]] = {
    "answerCallbackQuery": Priority.TOAST,
    # Telegram cancels a checkout not answered within 10 s (docs/telegram.md, T15): it
    # never waits behind pictures, and it is no chat message.
    "answerPreCheckoutQuery": Priority.TOAST,
    "sendMessage": Priority.MESSAGE,
    "sendInvoice": Priority.MESSAGE,
    "sendPhoto": Priority.MESSAGE,
    "sendDocument": Priority.MESSAGE,
    "editMessageText": Priority.MESSAGE,
    "editMessageReplyMarkup": Priority.MESSAGE,
    "editMessageCaption": Priority.MESSAGE,
    "editMessageMedia": Priority.MESSAGE,  # a finished picture landing in its status message
    "deleteMessage": Priority.MESSAGE,
    "sendChatAction": Priority.COSMETIC,
    "sendMessageDraft": Priority.COSMETIC,  # a reply still being written; the next replaces it
}
# Messages and their edits count against the chat's own limit (docs/telegram.md, T7); a
# toast belongs to no chat, a chat action is no message, and deleting one sends nothing.
CHAT_WRITES: Final = frozenset(
    {
        "sendMessage",
        "sendInvoice",
        "sendPhoto",
        "sendDocument",
        "editMessageText",
        "editMessageReplyMarkup",
        "editMessageCaption",
        "editMessageMedia",
    }
)


@dataclass(frozen=True, slots=True)
class SendRules:
    """The budget's numbers, e.g. ``SendRules(per_second=25, per_chat=5)``."""

    per_second: int = DEFAULT_PER_SECOND
    # Bursts of five, one a second on average: a reply, its status post and its photo,
    # twice over, fit without a wait.
    per_chat: int = 5
    chat_window_s: float = 5.0
    # Groups: Telegram allows about 20 messages a minute in one (docs/telegram.md, T7).
    per_group: int = 20
    group_window_s: float = 60.0
    cosmetic_per_second: int = 5
    cosmetic_max_wait_s: float = 3.0

    @classmethod
    def overall(cls, per_second: int) -> SendRules:
        """The rules for *per_second* calls overall, a fifth of them for cosmetic calls."""
        cosmetic = max(1, per_second // COSMETIC_SHARE)
        return cls(per_second=per_second, cosmetic_per_second=cosmetic)

    def __post_init__(self) -> None:
        if (
            self.per_second < 1
            or min(self.per_chat, self.per_group) <= CHAT_SLOTS_KEPT
            or self.cosmetic_per_second < 1
        ):
            raise ValueError(
                "per_second and cosmetic_per_second must be at least 1 and per_chat and"
                f" per_group at least {CHAT_SLOTS_KEPT + 1}, got {self.per_second!r},"
                f" {self.cosmetic_per_second!r}, {self.per_chat!r}, {self.per_group!r}"
            )
        if 2 * self.cosmetic_per_second > self.per_second:
            raise ValueError(
                f"cosmetic_per_second {self.cosmetic_per_second!r} exceeds half of"
                f" per_second {self.per_second!r}"
            )


@dataclass(frozen=True, slots=True)
class CallClass:
    priority: Priority
    chat_id: int | None  # the chat whose own limit the call counts against
    merge_key: Hashable | None  # cosmetic calls with equal keys: only the newest goes
    holder: int | None = None  # the chat a 429 for this call holds (None: every chat)


def classify(
    method: str, params: Mapping[str, object], *, priority: Priority | None = None
) -> CallClass | None:
    """How *method* with *params* is budgeted; None: not counted. *priority* overrides the
    method's own class (the status board marks its edits cosmetic)."""
    klass = priority if priority is not None else PRIORITY_OF.get(method)
    if klass is None:
        return None
    raw_chat = params.get("chat_id")
    chat = raw_chat if isinstance(raw_chat, int) and method in CHAT_WRITES else None
    merge_key: Hashable | None = None
    if klass.cosmetic:
        merge_key = (method, raw_chat, params.get("message_id"))
    holder = raw_chat if isinstance(raw_chat, int) else None
    return CallClass(klass, chat, merge_key, holder)


@dataclass(frozen=True, slots=True)
class Ticket:
    """One call waiting for its turn."""

    seq: int
    call: CallClass
    since: float

    @property
    def order(self) -> tuple[int, int]:
        return (self.call.priority, self.seq)


@dataclass(frozen=True, slots=True)
class Grant:
    ticket: Ticket


@dataclass(frozen=True, slots=True)
class Drop:
    ticket: Ticket
    reason: str  # "stale" or "merged"


@dataclass(slots=True)
class _Sent:
    """Grant times, oldest first, of the windows still open."""

    all: deque[float] = field(default_factory=deque)
    cosmetic: deque[float] = field(default_factory=deque)
    by_chat: dict[int, deque[float]] = field(default_factory=dict)


class SendBudget:
    """The waiting calls and the calls granted in the open windows (sans-IO)."""

    def __init__(self, rules: SendRules | None = None) -> None:
        self.rules = rules if rules is not None else SendRules()
        # By priority, each in arrival order (so also in order of ``since``).
        self._waiting: dict[Priority, dict[int, Ticket]] = {p: {} for p in Priority}
        self._seq = itertools.count()
        self._sent = _Sent()
        self._resume_at = -math.inf  # every chat held until then
        self._held: dict[int, float] = {}  # chat -> held until then
        self._refused: deque[tuple[float, int]] = deque()  # (when, chat) of recent 429s
        self._dropped: deque[Drop] = deque()

    @property
    def waiting(self) -> int:
        return sum(len(tickets) for tickets in self._waiting.values())

    def add(self, call: CallClass, now: float) -> Ticket:
        """A call asks for its turn; an older cosmetic call with its merge key is dropped."""
        same_class = self._waiting[call.priority]
        if call.merge_key is not None:
            for older in [t for t in same_class.values() if t.call.merge_key == call.merge_key]:
                del same_class[older.seq]
                self._dropped.append(Drop(older, "merged"))
        ticket = Ticket(next(self._seq), call, now)
        same_class[ticket.seq] = ticket
        return ticket

    def withdraw(self, ticket: Ticket) -> bool:
        """The caller gave up waiting (cancelled): nothing was sent, nothing is counted.
        False if the ticket was no longer waiting (granted or dropped already)."""
        return self._waiting[ticket.call.priority].pop(ticket.seq, None) is not None

    def rate_limited(self, now: float, retry_after_s: float, *, chat: int | None = None) -> bool:
        """Telegram answered 429 for a call about *chat*: that chat waits until
        ``now + retry_after_s``; every chat does when the call was about none, or when
        several chats got one at once (answers never wait: see the module docstring).
        True when every chat is held."""
        until = now + retry_after_s
        if chat is None:
            self._resume_at = max(self._resume_at, until)
            return True
        self._held[chat] = max(self._held.get(chat, -math.inf), until)
        self._refused.append((now, chat))
        while self._refused and self._refused[0][0] <= now - STORM_WINDOW_S:
            self._refused.popleft()
        if len({refused for _, refused in self._refused}) >= STORM_CHATS:
            self._resume_at = max(self._resume_at, until)
            return True
        return False

    def next(self, now: float) -> Grant | Drop | float:
        """The next decision at *now*: a call to send, a call to drop, or, when neither,
        the time to ask again (``math.inf``: nothing is waiting)."""
        if self._dropped:
            return self._dropped.popleft()
        self._forget(now)
        wake_at = math.inf
        for priority in (Priority.COSMETIC, Priority.PREVIEW):
            cosmetic = self._waiting[priority]
            for ticket in cosmetic.values():  # the oldest first: only it can be stale
                stale_at = ticket.since + self.rules.cosmetic_max_wait_s
                if now >= stale_at:
                    del cosmetic[ticket.seq]
                    return Drop(ticket, "stale")
                wake_at = min(wake_at, stale_at)
                break
        for priority, tickets in self._waiting.items():
            if not tickets:
                continue
            # The second's window is the same for the whole class: one look decides it.
            class_ready = self._second_ready_at(priority)
            if class_ready > now:
                wake_at = min(wake_at, class_ready)
                continue
            for ticket in tickets.values():
                ready = max(self._held_until(ticket.call), self._chat_ready_at(ticket.call))
                if ready <= now:
                    del tickets[ticket.seq]
                    self._record(ticket.call, now)
                    return Grant(ticket)
                wake_at = min(wake_at, ready)
        return wake_at

    def _held_until(self, call: CallClass) -> float:
        """Until when a 429 holds *call* (answers are never held)."""
        if call.priority is Priority.TOAST:
            return -math.inf
        held = self._resume_at
        if call.holder is not None:
            held = max(held, self._held.get(call.holder, -math.inf))
        return held

    def _second_ready_at(self, priority: Priority) -> float:
        """When the one-second windows have room for a call of *priority*."""
        rules, sent = self.rules, self._sent
        if priority is Priority.TOAST:
            # Never held by the window: a toast is no message in a chat, there is one per
            # press, and a late one is refused (docs/telegram.md, T8).
            return -math.inf
        if priority is Priority.MESSAGE:
            return _free_at(sent.all, rules.per_second, WINDOW_S)
        # Status and cosmetic calls leave the second's last slots to replies and photos,
        # so a photo finds room at once even while status posts are queued.
        kept = rules.cosmetic_per_second
        ready = _free_at(sent.all, rules.per_second - kept, WINDOW_S)
        if priority.cosmetic:
            ready = max(ready, _free_at(sent.cosmetic, rules.cosmetic_per_second, WINDOW_S))
        return ready

    def _chat_ready_at(self, call: CallClass) -> float:
        """When *call*'s chat window has room for it (status and cosmetic calls leave the
        last ``CHAT_SLOTS_KEPT`` slots to replies and photos)."""
        if call.chat_id is None:
            return -math.inf
        in_chat = self._sent.by_chat.get(call.chat_id)
        if in_chat is None:
            return -math.inf
        limit, window_s = self._chat_limit(call.chat_id)
        if call.priority >= Priority.STATUS:
            limit -= CHAT_SLOTS_KEPT
        return _free_at(in_chat, limit, window_s)

    def _chat_limit(self, chat_id: int) -> tuple[int, float]:
        """A chat's own limit and window: a group's (its id is negative) or a private one's."""
        if chat_id < 0:
            return self.rules.per_group, self.rules.group_window_s
        return self.rules.per_chat, self.rules.chat_window_s

    def _record(self, call: CallClass, now: float) -> None:
        if call.priority is Priority.TOAST:
            return  # not a message: it takes nobody's slot (a burst of presses would)
        self._sent.all.append(now)
        if call.priority.cosmetic:
            self._sent.cosmetic.append(now)
        if call.chat_id is not None:
            self._sent.by_chat.setdefault(call.chat_id, deque()).append(now)

    def _forget(self, now: float) -> None:
        """Drop grant times whose windows have closed."""
        _expire(self._sent.all, now - WINDOW_S)
        _expire(self._sent.cosmetic, now - WINDOW_S)
        for chat in list(self._sent.by_chat):
            times = self._sent.by_chat[chat]
            _expire(times, now - self._chat_limit(chat)[1])
            if not times:
                del self._sent.by_chat[chat]
        for chat in [chat for chat, until in self._held.items() if until <= now]:
            del self._held[chat]


def _free_at(times: deque[float], limit: int, window_s: float) -> float:
    """When a window holding *times* (oldest first) has room for one more under *limit*."""
    if len(times) < limit:
        return -math.inf
    return times[len(times) - limit] + window_s


def _expire(times: deque[float], before: float) -> None:
    while times and times[0] <= before:
        times.popleft()
