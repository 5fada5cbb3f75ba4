"""A crash between every two steps of a job, then a restart: charged at most once, told.

The crash is a SIGKILL as the process sees it: the bot's tasks stop at the request in
flight and every connection of that process dies with them (its requests fail, shielded
clean-ups included), so nothing runs that a killed process could not run. SQLite's own
atomicity covers a kill inside a write.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trio

from bot.core.texts import t
from tests.fakes.comfy import FakeComfy, PromptScript
from tests.fakes.telegram import DEFAULT_USER_ID, FakeTelegram, SentRecord
from tests.harness import start_bot
from tests.rows import balance

USER = DEFAULT_USER_ID


@pytest.fixture
def fake_comfy(fake_comfy: FakeComfy) -> FakeComfy:
    """Pictures that take 10 s, so a crash can land while one is being drawn."""
    fake_comfy.default_script = PromptScript(run_s=10, steps=5)
    return fake_comfy


def uploads(tg: FakeTelegram) -> list[SentRecord]:
    return [s for s in tg.sent if s.kind in ("photo", "document") and s.content]


def is_call(method: str, path: str) -> Callable[[httpx.Request], bool]:
    return lambda request: request.method == method and request.url.path.endswith(path)


CRASH_POINTS = {
    # name: (when, after, submissions to ComfyUI expected in the end)
    "queued-before-submit": (is_call("POST", "/answerCallbackQuery"), True, 1),
    "submit-request-lost": (is_call("POST", "/prompt"), False, 1),
    "submitted-answer-lost": (is_call("POST", "/prompt"), True, 1),
    "finished-before-download": (is_call("GET", "/view"), False, 1),
    "downloaded-before-send": (is_call("POST", "/editMessageMedia"), False, 1),
    "sent-before-commit": (is_call("POST", "/editMessageMedia"), True, 1),
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
async def test_a_crash_between_two_steps_then_a_restart(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
    point: str,
) -> None:
    when, after, submissions = CRASH_POINTS[point]
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    reply = fake_telegram.sent[0]
    bot.crash_at(when, after=after)
    fake_telegram.user_presses(reply.message_id, "look")
    with trio.fail_after(300):
        await bot.done.wait()  # killed at the crash point
    with bot.store() as store:
        assert len(store.jobs.unfinished()) == 1

    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    await fake_telegram.wait_for(lambda: len(uploads(fake_telegram)) >= 1, timeout_s=300)
    await trio.sleep(60)  # anything left to happen, happens
    with bot.store() as store:
        assert store.jobs.unfinished() == []
        assert balance(store, USER) == 0
        assert store.events.count("image_requested") == 1
        assert store.events.count("image_generated") == 1
        assert store.events.count("image_failed") == 0
    pictures = uploads(fake_telegram)
    assert all(p.reply_to_message_id == reply.message_id for p in pictures)
    # Only a kill after Telegram took the photo but before the charge was written can
    # show it twice; the user is still charged once.
    assert len(pictures) == (2 if point == "sent-before-commit" else 1)
    assert len(fake_comfy.submitted) == submissions
    await bot.stop()


async def test_a_job_whose_comfyui_forgot_it_is_submitted_again_after_restart(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    bot.crash_at(is_call("POST", "/prompt"), after=True)
    fake_telegram.user_presses(fake_telegram.sent[0].message_id, "look")
    await bot.done.wait()
    fake_comfy.restart()  # the GPU host rebooted too: queue and history gone
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    await fake_telegram.wait_for(lambda: len(uploads(fake_telegram)) == 1, timeout_s=300)
    assert len(fake_comfy.submitted) == 2
    assert fake_comfy.submitted[0].prompt_id == fake_comfy.submitted[1].prompt_id
    await bot.stop()


async def test_unfinished_jobs_without_comfyui_configured_are_closed_clearly(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    reply = fake_telegram.sent[0]
    bot.crash_at(is_call("POST", "/prompt"))
    fake_telegram.user_presses(reply.message_id, "look")
    await bot.done.wait()
    bot = await start_bot(nursery, tmp_path, fake_telegram, free_images=1)  # no ComfyUI now
    await fake_telegram.wait_for(lambda: fake_telegram.sent[-1].text == t("fail_generation", "ru"))
    assert fake_telegram.sent[-1].reply_to_message_id == reply.message_id
    with bot.store() as store:
        assert balance(store, USER) == 1
        assert store.events.count("image_failed") == 1
    await bot.stop()


async def test_a_graceful_stop_mid_job_resumes_it_at_the_next_start(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_comfy.default_script = PromptScript(run_s=60, steps=6)
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    fake_telegram.user_presses(fake_telegram.sent[0].message_id, "look")
    await fake_telegram.wait_for(lambda: fake_comfy.started != [])
    start = trio.current_time()
    await bot.stop()
    assert trio.current_time() - start <= 6  # SIGTERM ends the process within seconds
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    await fake_telegram.wait_for(lambda: len(uploads(fake_telegram)) == 1, timeout_s=300)
    await trio.sleep(1)  # the charge is written once the upload's answer is in
    with bot.store() as store:
        assert balance(store, USER) == 0
        assert store.events.count("image_generated") == 1
    await bot.stop()


async def test_a_picture_that_landed_in_its_status_message_survives_the_next_start(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    """The start deletes status messages left by ended jobs: the one that became the
    picture is not one of them (its id was let go before the upload)."""
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    fake_telegram.user_presses(fake_telegram.sent[0].message_id, "look")
    await fake_telegram.wait_for(lambda: len(uploads(fake_telegram)) == 1)
    await trio.sleep(1)
    with bot.store() as store:
        assert [r["status_message_id"] for r in store.db.query("SELECT * FROM jobs")] == [None]
    await bot.stop()
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    await trio.sleep(5)
    [picture] = uploads(fake_telegram)
    assert (picture.chat_id, picture.message_id) not in fake_telegram.deleted
    await bot.stop()
