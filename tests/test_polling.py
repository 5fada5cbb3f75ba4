"""Long polling against the fake: offsets, restarts, odd updates, conflicts, failures."""

from __future__ import annotations

import json
import logging
import random
import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from pydantic import SecretStr

from bot.core.logs import plain_fields
from bot.telegram.client import DEFAULT_MAX_ATTEMPTS, LONG_POLL_MARGIN_S, TelegramApi
from bot.telegram.dispatcher import run_dispatcher
from bot.telegram.errors import TelegramUnauthorized
from bot.telegram.inbox import Inbox
from bot.telegram.polling import (
    ALLOWED_UPDATES,
    CONFLICT_BACKOFF_INITIAL_S,
    CONFLICT_BACKOFF_MAXIMUM_S,
    ERROR_BACKOFF_INITIAL_S,
    ERROR_BACKOFF_MAXIMUM_S,
    prepare_polling,
    run_polling,
)
from bot.telegram.types import Update
from common.backoff import backoff_delays
from store import Store, open_store
from tests.fakes.telegram import (
    CONFLICT_OTHER_POLL,
    CONFLICT_WEBHOOK,
    DEFAULT_USER_ID,
    FAKE_BASE_URL,
    TEST_TOKEN,
    FakeTelegram,
    MemoryInbox,
)

POLL_SEED = 7
QUIET_S = 500  # virtual seconds of silence that prove nothing more arrives


def conflict_delays() -> list[float]:
    delays = backoff_delays(
        initial_s=CONFLICT_BACKOFF_INITIAL_S,
        maximum_s=CONFLICT_BACKOFF_MAXIMUM_S,
        jitter="equal",
        rng=random.Random(POLL_SEED),
    )
    return [next(delays) for _ in range(3)]


async def start_polling(
    nursery: trio.Nursery, api: TelegramApi, inbox: Inbox
) -> trio.MemoryReceiveChannel[Update]:
    send, receive = trio.open_memory_channel[Update](100)
    poll = partial(run_polling, api, inbox, send, rng=random.Random(POLL_SEED))
    await nursery.start(poll)
    return receive


async def receive_ids(receive: trio.MemoryReceiveChannel[Update], count: int) -> list[int]:
    return [(await receive.receive()).update_id for _ in range(count)]


async def assert_nothing_more(receive: trio.MemoryReceiveChannel[Update]) -> None:
    with trio.move_on_after(QUIET_S) as quiet:
        update = await receive.receive()
        pytest.fail(f"unexpected update {update.update_id}")
    assert quiet.cancelled_caught


def poll_times(fake: FakeTelegram) -> list[float]:
    return [r.at for r in fake.requests if r.method == "getUpdates"]


async def test_offset_advances_and_is_stored_before_the_next_poll(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: trio.testing.MockClock
) -> None:
    ids = [fake_telegram.user_says(text) for text in ("раз", "два", "три")]
    inbox = MemoryInbox()
    async with trio.open_nursery() as nursery:
        receive = await start_polling(nursery, telegram_api, inbox)
        updates = [await receive.receive() for _ in ids]
        await fake_telegram.wait_for(lambda: len(poll_times(fake_telegram)) == 2)
        nursery.cancel_scope.cancel()
    assert [u.update_id for u in updates] == ids
    assert [u.message.text for u in updates if u.message] == ["раз", "два", "три"]
    assert inbox.next_offset() == ids[-1] + 1
    assert [i for i, _ in inbox.pending()] == ids  # received, not yet handled
    first, second = (r.params for r in fake_telegram.requests if r.method == "getUpdates")
    assert (first.get("offset"), second["offset"]) == (None, ids[-1] + 1)
    assert first["timeout"] == 50
    assert first["allowed_updates"] == list(ALLOWED_UPDATES)


async def test_long_poll_read_timeout_outlasts_the_poll(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: trio.testing.MockClock
) -> None:
    send, _receive = trio.open_memory_channel[Update](1)
    poll = partial(run_polling, telegram_api, MemoryInbox(), send, poll_timeout_s=25)
    with trio.move_on_after(60):
        await poll()
    polls = [r for r in fake_telegram.requests if r.method == "getUpdates"]
    assert [r.at for r in polls] == [0.0, 25.0, 50.0]
    assert {r.read_timeout for r in polls} == {25 + LONG_POLL_MARGIN_S}


async def test_closes_its_output_when_cancelled(
    telegram_api: TelegramApi, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        receive = await start_polling(nursery, telegram_api, MemoryInbox())
        nursery.cancel_scope.cancel()
    with pytest.raises(trio.EndOfChannel):
        await receive.receive()


async def restart_neither_loses_nor_repeats(
    api: TelegramApi, fake: FakeTelegram, open_inbox: Callable[[], Inbox]
) -> None:
    ids = [fake.user_says(text) for text in ("раз", "два", "три")]
    inbox = open_inbox()
    async with trio.open_nursery() as nursery:
        receive = await start_polling(nursery, api, inbox)
        assert await receive_ids(receive, 3) == ids
        inbox.mark_done(ids[0])
        inbox.mark_done(ids[1])  # the third was in a handler when the process stopped
        nursery.cancel_scope.cancel()
    later = fake.user_says("четыре")
    inbox = open_inbox()  # the restarted process
    async with trio.open_nursery() as nursery:
        receive = await start_polling(nursery, api, inbox)
        assert await receive_ids(receive, 2) == [ids[2], later]
        await assert_nothing_more(receive)
        nursery.cancel_scope.cancel()
    assert inbox.next_offset() == later + 1


async def test_restart_with_the_same_inbox_neither_loses_nor_repeats(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: trio.testing.MockClock
) -> None:
    inbox = MemoryInbox()
    await restart_neither_loses_nor_repeats(telegram_api, fake_telegram, lambda: inbox)


async def test_restart_with_the_sqlite_store_neither_loses_nor_repeats(
    telegram_api: TelegramApi,
    fake_telegram: FakeTelegram,
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
) -> None:
    opened: list[Store] = []

    def open_inbox() -> Inbox:
        for store in opened:
            store.close()
        opened.append(open_store(tmp_path / "bot.db"))
        return opened[-1].updates

    try:
        await restart_neither_loses_nor_repeats(telegram_api, fake_telegram, open_inbox)
    finally:
        opened[-1].close()


async def test_a_malformed_update_is_logged_and_skipped_not_the_batch(
    telegram_api: TelegramApi,
    fake_telegram: FakeTelegram,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = fake_telegram.user_says("до")
    bad = fake_telegram.add_raw_update(
        {"message": {"message_id": 9, "date": 1, "chat": {"id": "not-a-number", "type": "x"}}}
    )
    after = fake_telegram.user_says("после")
    inbox = MemoryInbox()
    async with trio.open_nursery() as nursery:
        receive = await start_polling(nursery, telegram_api, inbox)
        assert await receive_ids(receive, 2) == [before, after]
        nursery.cancel_scope.cancel()
    assert inbox.next_offset() == after + 1
    assert [i for i, _ in inbox.pending()] == [before, after]
    assert inbox.done == [bad]
    skipped = [
        r.getMessage() + plain_fields(r)
        for r in caplog.records
        if "telegram_update_skipped" in r.getMessage()
    ]
    assert skipped == [
        f'telegram_update_skipped update_id={bad} reason="1 validation errors, '
        "first: message.chat.id: Input should be a valid integer, "
        'unable to parse string as an integer"'
    ]


async def test_prepare_polling_deletes_a_webhook_with_one_log_line(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    fake_telegram.webhook_url = "https://old-host.example/hook"
    await prepare_polling(telegram_api)
    assert fake_telegram.webhook_url == ""
    assert fake_telegram.calls == ["getWebhookInfo", "deleteWebhook"]
    lines = [r for r in caplog.records if r.name == "bot.telegram.polling"]
    assert len(lines) == 1
    assert lines[0].getMessage() == "telegram_webhook_deleted"
    assert plain_fields(lines[0]).startswith(' pending=0 hint="a webhook was set;')
    await prepare_polling(telegram_api)
    assert fake_telegram.calls == ["getWebhookInfo", "deleteWebhook", "getWebhookInfo"]


async def test_webhook_conflict_is_explained_once_and_backed_off(
    telegram_api: TelegramApi,
    fake_telegram: FakeTelegram,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_telegram.webhook_url = "https://old-host.example/hook"
    said = fake_telegram.user_says("привет")
    d1, d2, d3 = conflict_delays()
    async with trio.open_nursery() as nursery:
        receive = await start_polling(nursery, telegram_api, MemoryInbox())
        await trio.sleep(d1 + d2 + d3 / 2)  # three refused polls
        await prepare_polling(telegram_api)
        assert await receive_ids(receive, 1) == [said]
        nursery.cancel_scope.cancel()
    # refused at 0, d1, d1+d2; answered at d1+d2+d3, after prepare_polling removed the hook
    assert poll_times(fake_telegram)[:4] == pytest.approx([0.0, d1, d1 + d2, d1 + d2 + d3])
    assert 5.0 <= d1 <= 10.0
    conflicts = [r for r in caplog.records if r.getMessage() == "telegram_poll_conflict"]
    assert len(conflicts) == 1
    assert "another instance polls with this token, or a webhook is set" in plain_fields(
        conflicts[0]
    )
    assert json.dumps(CONFLICT_WEBHOOK) in plain_fields(conflicts[0])


async def test_a_second_poller_is_explained_once_and_backed_off(
    telegram_api: TelegramApi,
    fake_telegram: FakeTelegram,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    d1, _, _ = conflict_delays()
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(fake_telegram.handler)) as rogue,
        trio.open_nursery() as nursery,
    ):
        receive = await start_polling(nursery, telegram_api, MemoryInbox())
        await trio.sleep(3)
        await rogue.post(f"{FAKE_BASE_URL}/bot{TEST_TOKEN}/getUpdates", json={"timeout": 0})
        said = fake_telegram.user_says("привет")
        assert await receive_ids(receive, 1) == [said]
        nursery.cancel_scope.cancel()
    ours = [
        r.at
        for r in fake_telegram.requests
        if r.method == "getUpdates" and r.params.get("timeout") == 50
    ]
    assert ours[:2] == pytest.approx([0.0, 3.0 + d1])  # terminated at 3, back after d1
    conflicts = [r for r in caplog.records if r.getMessage() == "telegram_poll_conflict"]
    assert len(conflicts) == 1
    assert plain_fields(conflicts[0]).startswith(f" error={json.dumps(CONFLICT_OTHER_POLL)}")


async def test_a_wrong_token_stops_polling_with_one_line(
    fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake_telegram.handler)) as http:
        api = TelegramApi(http, SecretStr("1:wrong"), base_url=FAKE_BASE_URL)
        send, _receive = trio.open_memory_channel[Update](1)
        with pytest.raises(TelegramUnauthorized):
            await run_polling(api, MemoryInbox(), send)
    stopped = [r for r in caplog.records if r.name == "bot.telegram.polling"]
    assert [(r.levelno, r.getMessage() + plain_fields(r)) for r in stopped] == [
        (
            logging.ERROR,
            'telegram_polling_stopped error="getUpdates: Unauthorized;'
            ' check TELEGRAM_BOT_TOKEN (error 401)"',
        )
    ]
    assert fake_telegram.calls == ["getUpdates"]


async def test_transient_failures_never_end_polling(
    telegram_api: TelegramApi,
    fake_telegram: FakeTelegram,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_telegram.fail_next("getUpdates", 500, "Internal Server Error", times=DEFAULT_MAX_ATTEMPTS)
    fake_telegram.network_error_next("getUpdates", times=DEFAULT_MAX_ATTEMPTS)
    said = fake_telegram.user_says("привет")
    async with trio.open_nursery() as nursery:
        receive = await start_polling(nursery, telegram_api, MemoryInbox())
        assert await receive_ids(receive, 1) == [said]
        nursery.cancel_scope.cancel()
    failed = [
        r.getMessage() + plain_fields(r)
        for r in caplog.records
        if "telegram_poll_failed" in r.getMessage()
    ]
    assert len(failed) == 2
    assert "getUpdates: ConnectError: [Errno 111] Connection refused" in failed[0]
    assert "getUpdates: Internal Server Error (error 500)" in failed[1]
    outer = backoff_delays(
        initial_s=ERROR_BACKOFF_INITIAL_S,
        maximum_s=ERROR_BACKOFF_MAXIMUM_S,
        rng=random.Random(POLL_SEED),
    )
    assert f"delay_s={round(next(outer), 3)}" in failed[0]
    assert f"delay_s={round(next(outer), 3)}" in failed[1]
    # ten refused, one answered with the update, one long poll in flight when cancelled
    assert fake_telegram.calls.count("getUpdates") == 2 * DEFAULT_MAX_ATTEMPTS + 2


async def test_poller_and_dispatcher_answer_a_user(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: trio.testing.MockClock
) -> None:
    inbox = MemoryInbox()

    async def echo(update: Update) -> None:
        assert update.message is not None
        assert update.message.text is not None
        chat_id = update.message.chat.id
        await telegram_api.send_message(
            chat_id, update.message.text.upper(), reply_to_message_id=update.message.message_id
        )

    async with trio.open_nursery() as nursery:
        send, receive = trio.open_memory_channel[Update](0)
        await nursery.start(run_dispatcher, receive, echo, inbox)
        await nursery.start(partial(run_polling, telegram_api, inbox, send))
        fake_telegram.user_says("привет")
        await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
        nursery.cancel_scope.cancel()
    assert fake_telegram.texts_to(DEFAULT_USER_ID) == ["ПРИВЕТ"]
    assert fake_telegram.sent[0].reply_to_message_id == 1
    assert inbox.pending() == []


class LockedInbox(MemoryInbox):
    """An inbox whose database another process holds locked for the first *times* writes."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.refusals = times

    def save_batch(self, updates: Sequence[tuple[int, str]], *, next_offset: int) -> None:
        if self.refusals > 0:
            self.refusals -= 1
            raise sqlite3.OperationalError("database is locked")
        super().save_batch(updates, next_offset=next_offset)


async def test_a_locked_database_delays_a_batch_without_confirming_or_losing_it(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: trio.testing.MockClock
) -> None:
    update_id = fake_telegram.user_says("привет")
    inbox = LockedInbox(times=3)
    async with trio.open_nursery() as nursery:
        receive = await start_polling(nursery, telegram_api, inbox)
        update = await receive.receive()
        stored_at = trio.current_time()
        await fake_telegram.wait_for(lambda: len(poll_times(fake_telegram)) == 2)
        nursery.cancel_scope.cancel()
    assert update.update_id == update_id
    assert inbox.refusals == 0
    assert stored_at > 0  # it waited for the lock
    first, second = (r for r in fake_telegram.requests if r.method == "getUpdates")
    assert first.params.get("offset") is None
    assert second.at == stored_at  # nothing confirmed it to Telegram while locked
    assert second.params["offset"] == update_id + 1


class BrokenInbox(MemoryInbox):
    """An inbox whose table is gone: no wait can mend that."""

    def save_batch(self, updates: Sequence[tuple[int, str]], *, next_offset: int) -> None:
        raise sqlite3.OperationalError("no such table: update_inbox")


async def test_a_store_error_no_wait_can_mend_stops_polling_instead_of_retrying_forever(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: trio.testing.MockClock
) -> None:
    fake_telegram.user_says("привет")
    send, _receive = trio.open_memory_channel[Update](10)
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await run_polling(telegram_api, BrokenInbox(), send)
    assert trio.current_time() == 0  # raised at once, no backoff
    assert len(poll_times(fake_telegram)) == 1  # and nothing confirmed to Telegram
