"""What the simulated users do: write, get replies with «👁️ Посмотреть», press them.

A reply can be drawn once (a second press re-sends the same photo), so a user who is to
press *n* times first writes *n* messages and gets *n* replies. Users are numbered from
``FIRST_USER_ID``; in a private chat the chat id is the user id.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Final

import trio

from benchmarks.fakes import PressKey, TimedTelegram
from bot.core.texts import LOOK_BUTTON

__all__ = [
    "FIRST_USER_ID",
    "interleave",
    "prepare_replies",
    "press",
    "press_all",
    "press_spread",
    "user_ids",
]

FIRST_USER_ID: Final = 7_000_000_001
PREPARE_TIMEOUT_S: Final = 60.0
_LOOK_DATA: Final = "look"


def user_ids(count: int, *, offset: int = 0) -> list[int]:
    return [FIRST_USER_ID + offset + index for index in range(count)]


async def prepare_replies(
    telegram: TimedTelegram, users: Sequence[int], *, per_user: int
) -> list[list[PressKey]]:
    """Each user writes *per_user* messages; the replies under which they can press.

    Raises:
        trio.TooSlowError: the replies did not all come within ``PREPARE_TIMEOUT_S``.
        RuntimeError: a reply came without the «👁️ Посмотреть» button.
    """
    with trio.fail_after(PREPARE_TIMEOUT_S):
        for user in users:
            for index in range(per_user):
                telegram.fake.user_says(f"расскажи, что ты видишь ({index + 1})", user_id=user)
        keys: list[list[PressKey]] = []
        for user in users:
            await telegram.wait_sent(user, per_user)
            replies = [r for r in telegram.sent_by_chat[user] if r.kind == "message"]
            if any((LOOK_BUTTON, _LOOK_DATA) not in r.buttons() for r in replies):
                raise RuntimeError(f"a reply to user {user} has no {LOOK_BUTTON!r} button")
            keys.append([(r.chat_id, r.message_id) for r in replies])
    return keys


def interleave(keys_by_user: Sequence[Sequence[PressKey]]) -> list[PressKey]:
    """Round robin over users: each one's first reply, then each one's second, ..."""
    rounds = itertools.zip_longest(*keys_by_user)
    return [key for round_ in rounds for key in round_ if key is not None]


def press(telegram: TimedTelegram, key: PressKey) -> None:
    chat_id, message_id = key
    telegram.fake.user_presses(message_id, _LOOK_DATA, user_id=chat_id)


def press_all(telegram: TimedTelegram, keys: Sequence[PressKey]) -> None:
    """A burst: every press at the same moment (one getUpdates answer carries them)."""
    for key in keys:
        press(telegram, key)


async def press_spread(
    telegram: TimedTelegram, keys: Sequence[PressKey], *, interval_s: float
) -> None:
    """One press every *interval_s* (scheduled on absolute times, so no drift)."""
    start = trio.current_time()
    for index, key in enumerate(keys):
        await trio.sleep_until(start + index * interval_s)
        press(telegram, key)
