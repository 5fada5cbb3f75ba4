"""The status board behind the send budget: a dropped edit is tried again, a delete never
dropped."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
from prometheus_client import REGISTRY
from pydantic import SecretStr

from bot.core.texts import t
from bot.pictures.status import PREVIEW_INTERVAL_S, Drawing, Queued, StatusBoard
from bot.telegram.client import TelegramApi
from bot.telegram.send_budget import SendRules
from bot.telegram.throttle import SendThrottle
from comfy import Preview, ProgressStage, PromptProgress
from store import open_store
from tests.fakes.telegram import FAKE_BASE_URL, FakeTelegram
from tests.fakes.telegram_fixtures import API_SEED

USER = 5_000_000_777
JOB = "j" * 32


@pytest.fixture
def throttle() -> SendThrottle:
    return SendThrottle(SendRules())


@pytest.fixture
async def throttled_api(
    fake_telegram: FakeTelegram, throttle: SendThrottle
) -> AsyncIterator[TelegramApi]:
    transport = httpx.MockTransport(fake_telegram.handler)
    async with httpx.AsyncClient(transport=transport) as http:
        yield TelegramApi(
            http,
            SecretStr(fake_telegram.token),
            base_url=FAKE_BASE_URL,
            rng=random.Random(API_SEED),
            throttle=throttle,
        )


async def test_an_edit_held_by_a_429_is_dropped_then_sent_with_the_latest_text(
    throttled_api: TelegramApi,
    throttle: SendThrottle,
    fake_telegram: FakeTelegram,
    nursery: trio.Nursery,
    autojump_clock: object,
) -> None:
    fake_telegram.user_says("hi", user_id=USER)
    with open_store(":memory:") as store:
        board = StatusBoard(throttled_api, store.jobs, min_interval_s=3.0)
        await nursery.start(board.run)
        board.open(JOB, chat_id=USER, reply_to=1, lang="ru", status=Queued(2))
        await fake_telegram.wait_for(
            lambda: any("🎨" in (s.text or "") for s in fake_telegram.sent)
        )
        start = trio.current_time()
        throttle.rate_limited(10.0)  # another call got a 429: nothing goes for 10 s
        board.show(JOB, Queued(1))
        await trio.sleep(5.0)
        board.show(JOB, Drawing(50))
        await fake_telegram.wait_for(lambda: fake_telegram.edits != [], timeout_s=30)
        [edit] = fake_telegram.edits  # the stale ones were dropped, never sent
        assert edit.text == t("status_running", "ru", percent=50)
        assert edit.at == start + 10.0
        board.close(JOB)
        await fake_telegram.wait_for(lambda: fake_telegram.deleted != [])
        assert len(fake_telegram.deleted) == 1


async def test_a_delete_waits_out_a_429_instead_of_being_dropped(
    throttled_api: TelegramApi,
    throttle: SendThrottle,
    fake_telegram: FakeTelegram,
    nursery: trio.Nursery,
    autojump_clock: object,
) -> None:
    fake_telegram.user_says("hi", user_id=USER)
    with open_store(":memory:") as store:
        board = StatusBoard(throttled_api, store.jobs, min_interval_s=3.0)
        await nursery.start(board.run)
        board.open(JOB, chat_id=USER, reply_to=1, lang="ru", status=Queued(1))
        await fake_telegram.wait_for(
            lambda: any("🎨" in (s.text or "") for s in fake_telegram.sent)
        )
        start = trio.current_time()
        throttle.rate_limited(20.0)
        board.close(JOB)
        await fake_telegram.wait_for(lambda: fake_telegram.deleted != [], timeout_s=60)
        assert trio.current_time() == start + 20.0


async def test_the_picture_withdraws_a_preview_still_waiting_for_its_turn(
    throttled_api: TelegramApi,
    throttle: SendThrottle,
    fake_telegram: FakeTelegram,
    nursery: trio.Nursery,
    autojump_clock: object,
) -> None:
    """A preview held by the budget has not left: the picture need not wait for it, and
    it never reaches Telegram after the picture took the message."""
    fake_telegram.user_says("hi", user_id=USER)
    withdrawn = REGISTRY.get_sample_value("persona_bot_previews_total", {"outcome": "withdrawn"})
    with open_store(":memory:") as store:
        board = StatusBoard(throttled_api, store.jobs, min_interval_s=3.0)
        await nursery.start(board.run)
        board.open(JOB, chat_id=USER, reply_to=1, lang="ru", status=Drawing(10))
        await fake_telegram.wait_for(lambda: fake_telegram.sent != [])
        throttle.rate_limited(20.0)  # a 429 elsewhere: nothing goes for 20 s
        picture = Preview(b"\xff\xd8\xff\xe0forming", "image/jpeg")
        board.show_progress(JOB, PromptProgress(ProgressStage.RUNNING, 3, 10, preview=picture))
        await trio.sleep(PREVIEW_INTERVAL_S + 1.0)  # the preview waits for its turn
        before = trio.current_time()
        message_id = await board.hand_over(JOB)
        assert message_id == fake_telegram.sent[-1].message_id
        assert trio.current_time() == before  # withdrawn, not waited for
        await trio.sleep(60)
    assert fake_telegram.media_edits == []
    assert "editMessageMedia" not in fake_telegram.calls
    now = REGISTRY.get_sample_value("persona_bot_previews_total", {"outcome": "withdrawn"})
    assert (now or 0.0) - (withdrawn or 0.0) == 1
