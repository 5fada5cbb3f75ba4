"""The fault suite, in-process: a Telegram 429 storm and ComfyUI restarting mid-job."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import httpx
import pytest
import trio

from bot.core.texts import t
from tests.fakes.comfy import FakeComfy, PromptScript
from tests.fakes.telegram import FakeTelegram, too_many_requests
from tests.harness import start_bot
from tests.rows import balance

STORM_SHARE = 0.3


@pytest.fixture
def fake_comfy(fake_comfy: FakeComfy) -> FakeComfy:
    fake_comfy.default_script = PromptScript(run_s=2, steps=2)
    return fake_comfy


async def echo(request: httpx.Request) -> httpx.Response:
    """An instant LLM that answers each message with itself, so order can be checked."""
    text = json.loads(request.content)["messages"][-1]["content"]
    return httpx.Response(200, json={"choices": [{"message": {"content": f"re: {text}"}}]})


class Storm:
    """Answers a seeded 30 % of Bot API calls with 429 and ``retry_after``."""

    def __init__(self, *, seed: int) -> None:
        self.rng = random.Random(seed)
        self.refused = 0

    def answer(self, method: str, request: httpx.Request) -> httpx.Response | None:
        if self.rng.random() < STORM_SHARE:
            self.refused += 1
            retry_after = self.rng.choice([1, 2, 3])
            return too_many_requests(retry_after)
        return None


async def test_a_429_storm_delivers_every_reply_and_photo_once_in_order(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    storm = Storm(seed=7)
    fake_telegram.interpose = storm.answer
    bot = await start_bot(
        nursery, tmp_path, fake_telegram, comfy=fake_comfy, llm=echo, free_images=5
    )
    users = [6001, 6002, 6003, 6004, 6005]
    for round_ in range(4):
        for user in users:
            fake_telegram.user_says(f"{user}-{round_}", user_id=user)
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 20, timeout_s=600)
    replies = {u: [s for s in fake_telegram.sent if s.chat_id == u] for u in users}
    for user in users:
        fake_telegram.user_presses(replies[user][0].message_id, "look", user_id=user)
        fake_telegram.user_presses(replies[user][2].message_id, "look", user_id=user)

    def photos() -> list[tuple[int, int | None]]:
        return [(s.chat_id, s.reply_to_message_id) for s in fake_telegram.sent if s.kind == "photo"]

    await fake_telegram.wait_for(lambda: len(photos()) == 10, timeout_s=1200)
    await trio.sleep(120)  # a late duplicate would show up by now
    assert storm.refused > 20
    expected = {(u, replies[u][n].message_id) for u in users for n in (0, 2)}
    assert sorted(photos(), key=str) == sorted(expected, key=str)  # each exactly once
    for user in users:  # every reply once, in the order of the messages
        assert [r.text for r in replies[user]] == [f"re: {user}-{n}" for n in range(4)]
    with bot.store() as store:
        assert store.events.count("image_generated") == 10
        for user in users:
            assert balance(store, user) == 3
    await bot.stop()


async def test_comfyui_restarting_mid_job_resends_it_without_a_hang(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_comfy.default_script = PromptScript(run_s=20, steps=4)
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    fake_telegram.user_presses(fake_telegram.sent[0].message_id, "look")
    await fake_telegram.wait_for(lambda: fake_comfy.started != [])
    await trio.sleep(5)
    fake_comfy.restart()  # sockets closed, queue and history forgotten
    await fake_telegram.wait_for(
        lambda: any(s.kind == "photo" for s in fake_telegram.sent), timeout_s=200
    )
    assert len(fake_comfy.submitted) == 2
    await trio.sleep(1)  # the charge is written once the upload's answer is in
    with bot.store() as store:
        assert store.events.count("image_generated") == 1
    await bot.stop()


async def test_comfyui_restarting_twice_fails_the_job_clearly(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_comfy.default_script = PromptScript(run_s=20, steps=4)
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    reply = fake_telegram.sent[0]
    fake_telegram.user_presses(reply.message_id, "look")
    for _ in range(2):
        await fake_telegram.wait_for(
            lambda: len(fake_comfy.started) > len(fake_comfy.history_deleted)
        )
        await trio.sleep(5)
        fake_comfy.restart()
        fake_comfy.started.clear()
    await fake_telegram.wait_for(
        lambda: fake_telegram.sent[-1].text == t("fail_generation", "ru"), timeout_s=200
    )
    with bot.store() as store:
        failed = store.events.since()[-1]
        assert (failed["event"], failed["reason"]) == ("image_failed", "generation_error")
        assert balance(store, reply.chat_id) == 1
    await bot.stop()


async def test_a_chat_telegram_no_longer_finds_ends_the_update_quietly(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    autojump_clock: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A message from a chat that is gone by the time the bot answers (Telegram: 400 "chat
    not found") is not a fault of the bot: no error, nothing parked, the next chat goes on."""
    caplog.set_level(logging.INFO)
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    gone = {"id": 777, "type": "private", "first_name": "Gone"}
    sender = {"id": 777, "is_bot": False, "first_name": "Gone"}
    fake_telegram.add_raw_update(
        {"message": {"message_id": 1, "date": 0, "chat": gone, "from": sender, "text": "/help"}}
    )
    fake_telegram.user_says("/help")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    await trio.sleep(5)
    await bot.stop()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert "telegram_chat_not_found" in [r.getMessage() for r in caplog.records]
    with bot.store() as store:
        assert list(store.db.query("SELECT update_id FROM parked_updates")) == []
