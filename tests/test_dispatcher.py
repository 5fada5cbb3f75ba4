"""The dispatcher: chats run side by side, each chat in order, bounded, never crashing."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

import pytest
import trio
import trio.testing

from bot.core.logs import plain_fields
from bot.telegram.dispatcher import (
    MAX_URGENT_PER_USER,
    TryAgainLater,
    is_urgent,
    lane_key,
    run_dispatcher,
)
from bot.telegram.types import Update
from tests.fakes.comfy_fixtures import NoJitter
from tests.fakes.telegram import MemoryInbox

CHAT_A = 5_000_000_001
CHAT_B = 5_000_000_002
CHAT_GROUP = -1_005_000_003
USER = {"id": 77, "is_bot": False, "first_name": "Аня"}


def message(
    update_id: int, chat_id: int, text: str, *, user: dict[str, Any] | None = None
) -> Update:
    chat = {"id": chat_id, "type": "private" if chat_id > 0 else "group"}
    sender = user if user is not None else USER
    raw = {"message_id": update_id, "date": 1, "chat": chat, "from": sender, "text": text}
    return Update.model_validate({"update_id": update_id, "message": raw})


def press(update_id: int, chat_id: int) -> Update:
    message = {"message_id": 1, "date": 1, "chat": {"id": chat_id, "type": "private"}}
    query = {"id": f"q{update_id}", "from": USER, "chat_instance": "c", "message": message}
    return Update.model_validate({"update_id": update_id, "callback_query": query, "data": "x"})


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


async def test_a_failing_handler_is_logged_and_its_update_parked_not_lost(
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
    assert inbox.done == [2]
    assert inbox.parked == [(1, "ValueError: handler bug")]
    failures = [r for r in caplog.records if r.name == "bot.telegram.dispatcher"]
    assert [(r.levelno, r.getMessage() + plain_fields(r)) for r in failures] == [
        (logging.ERROR, "telegram_handler_failed update_id=1 type=message"),
        (
            logging.ERROR,
            'telegram_update_parked update_id=1 type=message reason="ValueError: handler bug"',
        ),
    ]
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], ValueError)


async def test_a_handler_whose_store_is_unavailable_runs_again_then_is_done(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox = MemoryInbox()
    runs: list[float] = []

    async def handle(update: Update) -> None:
        runs.append(trio.current_time())
        if len(runs) < 3:
            raise TryAgainLater("database is locked")

    await dispatch_all([message(1, CHAT_A, "hi")], handle, inbox, rng=NoJitter())
    assert runs == [0.0, 1.0, 3.0]  # equal jitter at its floor: 1 s, then 2 s
    assert (inbox.done, inbox.parked) == ([1], [])


async def test_an_update_whose_store_stays_unavailable_is_parked_after_its_tries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox = MemoryInbox()

    async def handle(update: Update) -> None:
        raise TryAgainLater("database is locked")

    await dispatch_all([message(1, CHAT_A, "hi")], handle, inbox, attempts=2, rng=NoJitter())
    assert inbox.done == []
    assert inbox.parked == [(1, "still failing after 2 tries: database is locked")]


async def test_an_inbox_locked_elsewhere_is_waited_out_when_marking_done(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class LockedInbox(MemoryInbox):
        refusals = 3

        def mark_done(self, update_id: int) -> None:
            if self.refusals:
                self.refusals -= 1
                raise sqlite3.OperationalError("database is locked")
            super().mark_done(update_id)

    inbox = LockedInbox()

    async def handle(update: Update) -> None:
        pass

    await dispatch_all([message(1, CHAT_A, "hi")], handle, inbox)
    assert inbox.done == [1]


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


async def test_a_full_lane_holds_up_no_other_chat_and_its_overflow_is_throttled(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A crowded group whose replies are stuck (a 429 on that chat) fills its lane; the
    next message there goes to the throttled handler (silent in a group, a notice in a
    private chat) instead of making the dispatcher wait, so every other chat goes on."""
    inbox = MemoryInbox()
    handled: dict[str, float] = {}
    throttled: list[str] = []

    async def handle(update: Update) -> None:
        if update.chat is not None and update.chat.id == CHAT_GROUP:
            await trio.sleep(100)  # its reply waits out a long 429
        handled[text_of(update)] = trio.current_time()

    async def handle_throttled(update: Update) -> None:
        throttled.append(text_of(update))

    group = [message(n, CHAT_GROUP, f"g{n}") for n in range(1, 6)]
    caplog.set_level(logging.INFO, logger="bot.telegram.dispatcher")
    await dispatch_all(
        [*group, message(6, CHAT_B, "B1")],
        handle,
        inbox,
        handle_throttled=handle_throttled,
        lane_capacity=2,
    )
    assert handled["B1"] == 0.0  # not behind the group
    # g1 in hand, g2 and g3 queued: g4 and g5 found the lane full.
    assert throttled == ["g4", "g5"]
    assert [text for text in handled if text != "B1"] == ["g1", "g2", "g3"]
    assert sorted(inbox.done) == [1, 2, 3, 4, 5, 6]  # never replayed
    full = [r for r in caplog.records if r.getMessage() == "telegram_lane_full"]
    assert len(full) == 1  # once per crowding, not per message
    assert plain_fields(full[0]) == f" chat={CHAT_GROUP} capacity=2"
    ended = [r for r in caplog.records if r.getMessage() == "telegram_lane_overflow_ended"]
    assert [plain_fields(r) for r in ended] == [f" chat={CHAT_GROUP} overflowed=2"]


async def test_presses_are_handled_at_once_beside_a_busy_chat_and_a_full_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox = MemoryInbox()
    answered: list[float] = []

    async def handle(update: Update) -> None:
        if update.callback_query is not None:
            answered.append(trio.current_time())
        else:
            await trio.sleep(100)

    updates = [message(n, CHAT_A + n, "slow") for n in range(1, 4)] + [press(9, CHAT_A)]
    await dispatch_all(updates, handle, inbox, max_concurrent=1)
    assert answered == [0.0]


async def test_one_user_holds_at_most_their_share_of_the_shared_slots(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One account writing in many groups cannot take every handler slot."""
    inbox = MemoryInbox()
    finished: dict[str, float] = {}

    async def handle(update: Update) -> None:
        await trio.sleep(25 if text_of(update).startswith("flood") else 1)
        finished[text_of(update)] = trio.current_time()

    flood = [message(n, -1000 - n, f"flood{n}") for n in range(1, 11)]  # ten groups
    innocent = message(99, CHAT_B, "help", user={**USER, "id": 78})
    await dispatch_all([*flood, innocent], handle, inbox, max_concurrent=4, max_per_user=2)
    assert finished["help"] == 1.0  # two shared slots were still free for everyone else


async def test_throttled_updates_go_to_their_own_handler_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox = MemoryInbox()
    throttled_seen: list[int] = []

    async def handle(update: Update) -> None:
        await trio.sleep(100)

    async def handle_throttled(update: Update) -> None:
        throttled_seen.append(update.update_id)

    updates = [message(n, CHAT_A, f"m{n}") for n in range(1, 5)]
    await dispatch_all(
        updates,
        handle,
        inbox,
        throttled=lambda update: update.update_id > 2,
        handle_throttled=handle_throttled,
    )
    assert throttled_seen == [3, 4]
    assert sorted(inbox.done) == [1, 2, 3, 4]


def test_lane_key_is_the_chat_then_the_user_then_the_update() -> None:
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
    assert is_urgent(press_in_chat)  # never waits in a lane
    assert not is_urgent(message(6, CHAT_A, "hi"))
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


def test_presses_and_pre_checkouts_are_urgent_messages_are_not() -> None:
    user = {"id": 1, "first_name": "A"}
    chat = {"id": 1, "type": "private"}
    press = Update.model_validate(
        {"update_id": 1, "callback_query": {"id": "q", "from": user, "data": "look"}}
    )
    checkout = Update.model_validate(
        {
            "update_id": 2,
            "pre_checkout_query": {
                "id": "p",
                "from": user,
                "currency": "XTR",
                "total_amount": 5,
                "invoice_payload": "x",
            },
        }
    )
    message = Update.model_validate(
        {"update_id": 3, "message": {"message_id": 1, "date": 1, "chat": chat, "text": "hi"}}
    )
    assert is_urgent(press)
    assert is_urgent(checkout)
    assert not is_urgent(message)
    paid = {"currency": "XTR", "total_amount": 5, "invoice_payload": "x"}
    for field, extra in (
        ("successful_payment", {"provider_payment_charge_id": ""}),
        ("refunded_payment", {}),
    ):
        service = {"message_id": 2, "date": 1, "chat": chat, "from": user}
        service[field] = {**paid, "telegram_payment_charge_id": "c", **extra}
        assert is_urgent(Update.model_validate({"update_id": 4, "message": service}))


async def test_an_urgent_update_runs_at_once_though_every_handler_slot_is_busy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox = MemoryInbox()
    finished: list[tuple[str, float]] = []
    checkout = Update.model_validate(
        {
            "update_id": 99,
            "pre_checkout_query": {
                "id": "p",
                "from": USER,
                "currency": "XTR",
                "total_amount": 5,
                "invoice_payload": "x",
            },
        }
    )

    async def handle(update: Update) -> None:
        if update.pre_checkout_query is not None:
            finished.append(("checkout", trio.current_time()))
            raise RuntimeError("a failing urgent handler is logged and parked, never raised")
        await trio.sleep(10)
        finished.append((text_of(update), trio.current_time()))

    busy = [message(n, CHAT_A + n, f"m{n}") for n in range(1, 4)]
    await dispatch_all([*busy, checkout], handle, inbox, max_concurrent=1)
    assert finished[0] == ("checkout", 0.0)
    assert [at for _, at in finished[1:]] == [10.0, 20.0, 30.0]
    assert sorted(inbox.done) == [1, 2, 3]
    assert [update_id for update_id, _ in inbox.parked] == [99]


async def test_an_inbox_error_no_wait_can_mend_is_raised_not_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class BrokenInbox(MemoryInbox):
        def mark_done(self, update_id: int) -> None:
            raise sqlite3.OperationalError("no such table: update_inbox")

    async def handle(update: Update) -> None:
        pass

    with pytest.raises(ExceptionGroup) as caught:
        await dispatch_all([message(1, CHAT_A, "hi")], handle, BrokenInbox())
    assert caught.group_contains(sqlite3.OperationalError, match="no such table")
    assert trio.current_time() == 0  # not waited on for a minute as if it were a lock


def checkout(update_id: int, user: dict[str, Any]) -> Update:
    query = {
        "id": f"pcq{update_id}",
        "from": user,
        "currency": "XTR",
        "total_amount": 50,
        "invoice_payload": "pack:10:50:78",
    }
    return Update.model_validate({"update_id": update_id, "pre_checkout_query": query})


async def test_one_user_pressing_hundreds_of_times_holds_up_no_one_else(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A flood of presses from one account: a few run, the rest are dropped, and the
    dispatcher never stops reading: another user's message and a checkout go at once."""
    inbox = MemoryInbox()
    other = {"id": 78, "is_bot": False, "first_name": "Боб"}
    handled: dict[str, float] = {}
    presses_running = 0
    most_presses = 0

    async def handle(update: Update) -> None:
        nonlocal presses_running, most_presses
        if update.callback_query is not None:
            presses_running += 1
            most_presses = max(most_presses, presses_running)
            await trio.sleep(30)  # a slow press: its toast never gets through
            presses_running -= 1
            return
        handled["checkout" if update.pre_checkout_query else text_of(update)] = trio.current_time()

    flood = [press(n, CHAT_A) for n in range(1, 301)]
    await dispatch_all(
        [*flood, message(301, CHAT_B, "hi", user=other), checkout(302, other)], handle, inbox
    )
    assert handled == {"hi": 0.0, "checkout": 0.0}
    assert most_presses == MAX_URGENT_PER_USER
    assert sorted(inbox.done) == list(range(1, 303))  # the dropped ones too: never replayed
