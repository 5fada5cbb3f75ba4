"""The dispatcher: chats run side by side, each chat in order, bounded, never crashing."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from bot.logging_setup import plain_fields
from bot.telegram.dispatcher import lane_key, run_dispatcher
from bot.telegram.types import Update
from tests.fakes.telegram import MemoryInbox

CHAT_A = 5_000_000_001
CHAT_B = 5_000_000_002
USER = {"id": 77, "is_bot": False, "first_name": "Аня"}


def message(update_id: int, chat_id: int, text: str) -> Update:
    chat = {"id": chat_id, "type": "private"}
    raw = {"message_id": update_id, "date": 1, "chat": chat, "from": USER, "text": text}
    return Update.model_validate({"update_id": update_id, "message": raw})


def text_of(update: Update) -> str:
    assert update.message is not None
    assert update.message.text is not None
    return update.message.text


async def dispatch_all(
    updates: Sequence[Update], handle: Any, inbox: MemoryInbox, **options: Any
) -> None:
    """Queue every update, close the input, and run the dispatcher until it returns."""
    send, receive = trio.open_memory_channel[Update](len(updates))
    with send:
        for update in updates:
            send.send_nowait(update)
    await run_dispatcher(receive, handle, inbox, **options)


async def test_a_slow_chat_does_not_delay_another(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox = MemoryInbox()
    finished: list[tuple[str, float]] = []

    async def handle(update: Update) -> None:
        await trio.sleep(10 if text_of(update) == "A1" else 1)
        finished.append((text_of(update), trio.current_time()))

    await dispatch_all([message(1, CHAT_A, "A1"), message(2, CHAT_B, "B1")], handle, inbox)
    assert finished == [("B1", 1.0), ("A1", 10.0)]
    assert inbox.done == [2, 1]


async def test_each_chat_keeps_its_order(autojump_clock: trio.testing.MockClock) -> None:
    inbox = MemoryInbox()
    durations = {"A1": 3, "A2": 1, "A3": 0, "B1": 2}
    finished: list[tuple[str, float]] = []

    async def handle(update: Update) -> None:
        await trio.sleep(durations[text_of(update)])
        finished.append((text_of(update), trio.current_time()))

    updates = [
        message(1, CHAT_A, "A1"),
        message(2, CHAT_A, "A2"),
        message(3, CHAT_B, "B1"),
        message(4, CHAT_A, "A3"),
    ]
    await dispatch_all(updates, handle, inbox)
    assert finished == [("B1", 2.0), ("A1", 3.0), ("A2", 4.0), ("A3", 4.0)]
    assert sorted(inbox.done) == [1, 2, 3, 4]


async def test_concurrency_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    inbox = MemoryInbox()
    running = 0
    peak = 0
    finished: list[float] = []

    async def handle(update: Update) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(10)
        running -= 1
        finished.append(trio.current_time())

    updates = [message(n, CHAT_A + n, f"m{n}") for n in range(1, 6)]
    await dispatch_all(updates, handle, inbox, max_concurrent=2)
    assert peak == 2
    assert finished == [10.0, 10.0, 20.0, 20.0, 30.0]


async def test_a_failing_handler_is_logged_and_the_update_marked_done(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = MemoryInbox()
    handled: list[str] = []

    async def handle(update: Update) -> None:
        if text_of(update) == "boom":
            raise ValueError("handler bug")
        handled.append(text_of(update))

    updates = [message(1, CHAT_A, "boom"), message(2, CHAT_A, "after")]
    await dispatch_all(updates, handle, inbox)
    assert handled == ["after"]
    assert inbox.done == [1, 2]
    failures = [r for r in caplog.records if r.name == "bot.telegram.dispatcher"]
    assert [(r.levelno, r.getMessage() + plain_fields(r)) for r in failures] == [
        (logging.ERROR, "telegram_handler_failed update_id=1 type=message")
    ]
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], ValueError)


async def test_closing_the_input_finishes_queued_and_running_work(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox = MemoryInbox()

    async def handle(update: Update) -> None:
        await trio.sleep(5)

    updates = [message(n, CHAT_A, f"m{n}") for n in range(1, 4)] + [message(4, CHAT_B, "b")]
    await dispatch_all(updates, handle, inbox)
    assert trio.current_time() == 15.0
    assert sorted(inbox.done) == [1, 2, 3, 4]


async def test_a_cancelled_handler_leaves_its_update_pending(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox = MemoryInbox()

    async def handle(update: Update) -> None:
        await trio.sleep(1 if text_of(update) == "quick" else 1000)

    send, receive = trio.open_memory_channel[Update](10)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_dispatcher, receive, handle, inbox)
        send.send_nowait(message(1, CHAT_A, "slow"))
        send.send_nowait(message(2, CHAT_B, "quick"))
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert inbox.done == [2]


async def test_a_flooding_chat_drops_beyond_its_lane(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = MemoryInbox()
    handled: list[str] = []

    async def handle(update: Update) -> None:
        await trio.sleep(10)
        handled.append(text_of(update))

    send, receive = trio.open_memory_channel[Update](10)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_dispatcher, receive, handle, inbox, lane_capacity=1))
        async with send:
            await send.send(message(1, CHAT_A, "first"))
            await trio.testing.wait_all_tasks_blocked()  # "first" is in its handler
            await send.send(message(2, CHAT_A, "queued"))
            await send.send(message(3, CHAT_A, "dropped"))
    assert handled == ["first", "queued"]
    assert inbox.done == [3, 1, 2]
    dropped = [
        r.getMessage() + plain_fields(r)
        for r in caplog.records
        if r.name == "bot.telegram.dispatcher"
    ]
    assert dropped == [
        f'telegram_update_dropped update_id=3 lane=chat:{CHAT_A} reason="lane full (1 queued)"'
    ]


def test_lane_key_is_the_chat_or_its_presses_then_the_user_then_the_update() -> None:
    assert lane_key(message(1, CHAT_A, "hi")) == ("chat", CHAT_A)
    inline_press = Update.model_validate(
        {"update_id": 2, "callback_query": {"id": "q", "from": USER, "chat_instance": "c"}}
    )
    assert lane_key(inline_press) == ("user", 77)
    press_in_chat = Update.model_validate(
        {
            "update_id": 5,
            "callback_query": {
                "id": "q",
                "from": USER,
                "chat_instance": "c",
                "message": {"message_id": 1, "date": 1, "chat": {"id": CHAT_A, "type": "private"}},
            },
        }
    )
    assert lane_key(press_in_chat) == ("press", CHAT_A)  # beside the chat's messages
    blocked = Update.model_validate(
        {
            "update_id": 3,
            "my_chat_member": {
                "chat": {"id": CHAT_B, "type": "private"},
                "from": USER,
                "date": 1,
                "new_chat_member": {"status": "kicked", "user": USER},
            },
        }
    )
    assert lane_key(blocked) == ("chat", CHAT_B)
    unknown = Update.model_validate({"update_id": 4, "poll": {"id": "p"}})
    assert (lane_key(unknown), unknown.kind) == (("update", 4), "unknown")
