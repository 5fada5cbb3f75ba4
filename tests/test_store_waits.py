"""A database locked by another process, or a full disk: waited out, never a crash.

The unit tests drive ``store.patience`` and ``bot.core.limits`` directly; the bot-level tests
hold ``BEGIN IMMEDIATE`` on a second connection while the running bot needs to write.
"""

from __future__ import annotations

import logging
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trio

from bot.app.handler import make_handler, make_throttle
from bot.core.deps import Deps
from bot.core.limits import RateLimit, UserLimits
from bot.core.logs import plain_fields
from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS, load_settings
from bot.core.texts import t
from bot.telegram.client import TelegramApi
from bot.telegram.dispatcher import TryAgainLater
from bot.telegram.types import Update
from store import StoreUnavailable, is_transient, open_store
from store.patience import persist
from tests.fakes.comfy import FakeComfy, Outcome, PromptScript
from tests.fakes.telegram import DEFAULT_USER_ID, TEST_TOKEN, FakeTelegram
from tests.harness import Bot, Clock, start_bot
from tests.rows import balance

USER = DEFAULT_USER_ID
LOCKED = sqlite3.OperationalError("database is locked")


def failing(times: int, error: Exception = LOCKED) -> Callable[[], str]:
    calls = [0]

    def operation() -> str:
        calls[0] += 1
        if calls[0] <= times:
            raise error
        return f"done after {calls[0]} calls"

    return operation


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        ("database is locked", True),
        ("database table is locked", True),
        ("database or disk is full", True),
        ("disk I/O error", True),
        ("no such table: jobs", False),
    ],
)
def test_which_store_errors_are_worth_waiting_out(message: str, transient: bool) -> None:
    assert is_transient(sqlite3.OperationalError(message)) is transient
    assert not is_transient(sqlite3.IntegrityError("UNIQUE constraint failed"))


async def test_persist_waits_out_a_lock_without_blocking_others(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="store.patience")
    ticks: list[float] = []

    async def other_task() -> None:
        for _ in range(5):
            ticks.append(trio.current_time())
            await trio.sleep(0.1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        result = await persist("a write", failing(4), rng=random.Random(3))
    assert result == "done after 5 calls"
    assert len(ticks) == 5  # the other task ran while the write waited
    assert 0 < trio.current_time() < 2
    lines = [r.getMessage() + plain_fields(r) for r in caplog.records if r.name == "store.patience"]
    assert lines[0].startswith('store_write_waiting what="a write" waited_s=0.0')
    assert lines[-1].startswith('store_write_done what="a write"')


async def test_persist_gives_up_after_its_patience(autojump_clock: trio.abc.Clock) -> None:
    with pytest.raises(StoreUnavailable, match="a write: database is locked"):
        await persist("a write", failing(10_000), rng=random.Random(3), patience_s=30)
    assert 30 <= trio.current_time() < 31


async def test_persist_does_not_wait_for_a_bug(autojump_clock: trio.abc.Clock) -> None:
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await persist(
            "a write", failing(1, sqlite3.OperationalError("no such table: x")), rng=random.Random()
        )
    assert trio.current_time() == 0


def test_a_rate_limit_allows_a_burst_then_the_steady_rate() -> None:
    limit = RateLimit(per_minute=3)
    assert [limit.take(1, 0.0) for _ in range(4)] == [True, True, True, False]
    assert limit.take(2, 0.0)  # another user has their own bucket
    assert not limit.take(1, 19.0)
    assert limit.take(1, 20.0)  # one token back every 20 s
    assert RateLimit(per_minute=0).take(1, 0.0)  # 0: no limit


def test_full_buckets_are_forgotten() -> None:
    limit = RateLimit(per_minute=5)
    for user in range(2000):
        limit.take(user, 0.0)
    limit.take(1, 3600.0)  # an hour later every bucket is full again
    for _ in range(1024):
        limit.take(1, 3600.0)
    assert len(limit) <= 2


def test_a_throttled_user_is_told_once_a_minute() -> None:
    limits = UserLimits.per_minute(messages=1, llm_replies=1)
    assert limits.should_tell(7, 0.0)
    assert not limits.should_tell(7, 59.0)
    assert limits.should_tell(7, 60.0)


# The running bot, with another process holding the database


def hold_write_lock(bot: Bot) -> sqlite3.Connection:
    conn = sqlite3.connect(bot.settings.database_path, timeout=0, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


async def test_a_lock_held_while_a_handler_waits_for_the_llm_is_waited_out(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async def slow_llm(request: httpx.Request) -> httpx.Response:
        await trio.sleep(10)
        return httpx.Response(200, json={"choices": [{"message": {"content": "ответ"}}]})

    bot = await start_bot(nursery, tmp_path, fake_telegram, llm=slow_llm)
    update_id = fake_telegram.user_says("привет")
    await trio.sleep(1)  # the handler awaits the LLM
    lock = hold_write_lock(bot)
    await trio.sleep(20)  # the answer came; its writes wait for the lock
    lock.rollback()
    lock.close()
    await fake_telegram.wait_for(lambda: fake_telegram.texts_to(USER) == ["ответ"])
    await trio.sleep(5)
    with bot.store() as store:
        assert store.updates.pending() == []  # handled, marked done, not lost
        assert store.updates.parked() == []
        turns = store.conversation.last(user_id=USER, persona_key="alice", limit=5)
    assert [turn.text for turn in turns] == ["привет", "ответ"]
    assert update_id not in {u["update_id"] for u in fake_telegram.pending_updates}
    await bot.stop()


async def test_a_release_while_the_database_is_locked_is_waited_out(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_comfy.default_script = PromptScript(run_s=5, outcome=Outcome.ERROR)
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    fake_telegram.user_presses(fake_telegram.sent[0].message_id, "look")
    await trio.sleep(2)  # drawing; it fails at 5 s, while the lock is held
    lock = hold_write_lock(bot)
    await trio.sleep(60)
    [(active,)] = lock.execute("SELECT count(*) FROM jobs WHERE state != 'failed'").fetchall()
    assert active == 1  # not released yet: the lock holds it
    lock.rollback()
    lock.close()
    await fake_telegram.wait_for(lambda: t("fail_generation", "ru") in fake_telegram.texts_to(USER))
    with bot.store() as store:
        assert store.jobs.unfinished() == []
        assert balance(store, USER) == 1
        assert store.events.count("image_failed") == 1
    assert any(
        'store_write_waiting what="release job' in r.getMessage() + plain_fields(r)
        for r in caplog.records
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await bot.stop()


async def test_a_press_that_meets_a_locked_store_is_told_to_try_again_and_retried(
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    telegram_api: TelegramApi,
    autojump_clock: object,
) -> None:
    database = tmp_path / "bot.db"
    with open_store(database) as store:
        deps = Deps(
            api=telegram_api,
            store=store,
            personas=load_personas(SHIPPED_PERSONAS),
            settings=load_settings(env_file=None, telegram_bot_token=TEST_TOKEN),
            llm=None,
            rng=random.Random(1),
            now=Clock(),
        )
        fake_telegram.user_says("привет")
        reply = await deps.api.send_message(USER, "a persona's reply")
        store.sent.add(
            chat_id=USER,
            message_id=reply.message_id,
            user_id=USER,
            persona_key="alice",
            text="a persona's reply",
            now=deps.now(),
        )
        query = fake_telegram.user_presses(reply.message_id, "look")
        [raw] = [u for u in fake_telegram.pending_updates if "callback_query" in u]
        press = Update.model_validate(raw)
        lock = sqlite3.connect(database, timeout=0, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        with pytest.raises(TryAgainLater, match="database is locked"):
            await make_handler(deps)(press)
        assert fake_telegram.callback_answers[query].text == t("try_later", "ru")
        assert trio.current_time() >= 30  # the handler's patience, spent without blocking
        lock.rollback()
        lock.close()


async def test_a_full_lane_may_throttle_any_update_of_its_chat(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    """A chat's full lane hands every further update of that chat to the throttled
    handler, not only messages over a user's rate: one with no sender, an edit, a member
    change. Each is dropped quietly, never an error that parks it."""
    with open_store(tmp_path / "bot.db") as store:
        deps = Deps(
            api=telegram_api,
            store=store,
            personas=load_personas(SHIPPED_PERSONAS),
            settings=load_settings(env_file=None, telegram_bot_token=TEST_TOKEN),
            llm=None,
            rng=random.Random(1),
            now=Clock(),
        )
        _, handle_throttled = make_throttle(deps)
        chat = {"id": -1_005_000_009, "type": "supergroup", "title": "g"}
        member = {"id": 77, "is_bot": False, "first_name": "Аня"}
        raws = [
            {"message": {"message_id": 1, "date": 1, "chat": chat, "text": "anonymous"}},
            {"edited_message": {"message_id": 2, "date": 1, "edit_date": 2, "chat": chat,
                                "from": member, "text": "edited"}},
            {"my_chat_member": {"chat": chat, "from": member, "date": 1,
                                "old_chat_member": {"status": "member", "user": member},
                                "new_chat_member": {"status": "left", "user": member}}},
            {"message": {"message_id": 3, "date": 1, "chat": chat, "from": member, "text": "hi"}},
        ]  # fmt: skip
        for n, raw in enumerate(raws, start=1):
            await handle_throttled(Update.model_validate({"update_id": n, **raw}))
        assert fake_telegram.sent == []  # in a group nobody is told
