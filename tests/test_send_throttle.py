"""The send budget in front of TelegramApi, under the autojump clock against the fake Bot API."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.testing
from pydantic import SecretStr

from bot.telegram.client import TelegramApi
from bot.telegram.errors import TelegramCallDropped
from bot.telegram.send_budget import Priority, SendRules
from bot.telegram.throttle import SendThrottle
from tests.fakes.telegram import FAKE_BASE_URL, FakeTelegram
from tests.fakes.telegram_fixtures import API_SEED

RULES = SendRules(per_second=5, per_chat=3, chat_window_s=3.0, cosmetic_per_second=1)
FIRST_CHAT = 9_000_000_001


@pytest.fixture
async def throttled_api(fake_telegram: FakeTelegram) -> AsyncIterator[TelegramApi]:
    transport = httpx.MockTransport(fake_telegram.handler)
    async with httpx.AsyncClient(transport=transport) as http:
        yield TelegramApi(
            http,
            SecretStr(fake_telegram.token),
            base_url=FAKE_BASE_URL,
            rng=random.Random(API_SEED),
            throttle=SendThrottle(RULES),
        )


def chats(fake: FakeTelegram, count: int) -> list[int]:
    """*count* private chats the bot may write to (each user wrote once)."""
    ids = [FIRST_CHAT + index for index in range(count)]
    for chat in ids:
        fake.user_says("привет", user_id=chat)
    return ids


def times_of(fake: FakeTelegram, method: str) -> list[float]:
    return [r.at for r in fake.requests if r.method == method]


async def test_twelve_replies_go_five_a_second(
    throttled_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async with trio.open_nursery() as nursery:
        for chat in chats(fake_telegram, 12):
            nursery.start_soon(throttled_api.send_message, chat, "ответ")
    assert times_of(fake_telegram, "sendMessage") == [0.0] * 5 + [1.0] * 5 + [2.0] * 2
    assert len(fake_telegram.sent) == 12


async def test_a_429_holds_the_chat_it_was_for_and_nothing_else(
    throttled_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    first, second = chats(fake_telegram, 2)
    query = fake_telegram.user_presses(1, "look", user_id=first)
    fake_telegram.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)

    async def a_second_later() -> None:
        await trio.sleep(1.0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(throttled_api.send_message, first, "первый, ещё")
            nursery.start_soon(throttled_api.send_message, second, "второй")
            nursery.start_soon(throttled_api.answer_callback_query, query)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(throttled_api.send_message, first, "первый")
        nursery.start_soon(a_second_later)
    # The refused chat waits its 7 s; the other chat and the press's answer do not.
    assert [(s.chat_id, s.at) for s in fake_telegram.sent] == [
        (second, 1.0),
        (first, 7.0),
        (first, 7.0),
    ]
    assert fake_telegram.callback_answers[query].at == 1.0


async def test_429s_in_several_chats_at_once_hold_every_chat(
    throttled_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    *refused, spared = chats(fake_telegram, 4)
    fake_telegram.fail_next("sendMessage", 429, "Too Many Requests", retry_after=5, times=3)
    async with trio.open_nursery() as nursery:
        for chat in refused:
            nursery.start_soon(throttled_api.send_message, chat, "ответ")
        await trio.sleep(0.5)
        nursery.start_soon(throttled_api.send_message, spared, "и этот ждёт")
    assert [s.at for s in fake_telegram.sent if s.chat_id == spared] == [5.0]


async def test_a_toast_neither_waits_for_the_window_nor_takes_a_slot(
    throttled_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    ids = chats(fake_telegram, 12)
    query = fake_telegram.user_presses(1, "look", user_id=ids[0])
    async with trio.open_nursery() as nursery:
        for chat in ids:
            nursery.start_soon(throttled_api.send_message, chat, "ответ")
        await trio.sleep(0.5)
        nursery.start_soon(throttled_api.answer_callback_query, query)
    assert fake_telegram.callback_answers[query].at == 0.5  # seven replies still waiting
    assert times_of(fake_telegram, "sendMessage") == [0.0] * 5 + [1.0] * 5 + [2.0] * 2


async def test_chat_actions_are_thinned_and_a_stale_one_is_dropped(
    throttled_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    ids = chats(fake_telegram, 5)
    outcomes: dict[int, str] = {}

    async def act(chat: int) -> None:
        try:
            await throttled_api.send_chat_action(chat, "upload_photo")
            outcomes[chat] = f"sent at {trio.current_time():g}"
        except TelegramCallDropped as exc:
            outcomes[chat] = f"dropped at {trio.current_time():g}: {exc.description}"

    async with trio.open_nursery() as nursery:
        for chat in ids:
            nursery.start_soon(act, chat)
    # One cosmetic call a second; the fourth and fifth would be three seconds stale.
    assert sorted(outcomes.values()) == [
        "dropped at 3: dropped by the send budget (stale)",
        "dropped at 3: dropped by the send budget (stale)",
        "sent at 0",
        "sent at 1",
        "sent at 2",
    ]
    assert len(fake_telegram.chat_actions) == 3


async def test_a_newer_edit_of_one_message_replaces_the_waiting_one(
    throttled_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    (chat,) = chats(fake_telegram, 1)
    status = await throttled_api.send_message(chat, "в очереди: 2")
    # Two messages in the chat: an edit, cosmetic, must leave the third slot to a message.
    await throttled_api.send_message(chat, "ответ")
    outcomes: list[str] = []

    async def edit(text: str) -> None:
        try:
            await throttled_api.edit_message_text(
                chat, status.message_id, text, priority=Priority.COSMETIC
            )
            outcomes.append(f"{text} at {trio.current_time():g}")
        except TelegramCallDropped:
            outcomes.append(f"{text} merged")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(edit, "в очереди: 1")
        await trio.sleep(0.2)
        nursery.start_soon(edit, "рисую: 10 %")
    assert outcomes == ["в очереди: 1 merged", "рисую: 10 % at 3"]
    assert [e.text for e in fake_telegram.edits] == ["рисую: 10 %"]


async def test_a_cancelled_wait_sends_nothing_and_frees_its_place(
    throttled_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    ids = chats(fake_telegram, 7)
    async with trio.open_nursery() as nursery:
        for chat in ids[:5]:
            nursery.start_soon(throttled_api.send_message, chat, "ответ")
        await trio.sleep(0.1)
        with trio.move_on_after(0.5):
            await throttled_api.send_message(ids[5], "не дождался")
        nursery.start_soon(throttled_api.send_message, ids[6], "дождался")
    assert [s.text for s in fake_telegram.sent].count("не дождался") == 0
    assert times_of(fake_telegram, "sendMessage") == [0.0] * 5 + [1.0]


async def test_polling_is_not_budgeted(
    throttled_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    ids = chats(fake_telegram, 5)
    async with trio.open_nursery() as nursery:
        for chat in ids:
            nursery.start_soon(throttled_api.send_message, chat, "ответ")
    await throttled_api.get_updates(offset=None, timeout_s=0, allowed_updates=["message"])
    assert trio.current_time() == 0.0
