"""The real ``python -m bot`` process against the fakes on 127.0.0.1 (real clock).

A message in, a reply with «👁️ Посмотреть» out, a press, a photo, SIGTERM, a clean exit;
then the same process shape for a start-up mistake (exit 2, one line). Every wait has a
``fail_after`` guard so a broken build fails instead of hanging.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS
from bot.core.texts import LOOK_BUTTON
from tests.fakes.comfy import JPEG_MAGIC, PNG_MAGIC, FakeComfy, PromptScript
from tests.fakes.loopback_http import serve_handler
from tests.fakes.telegram import TEST_TOKEN, FakeTelegram
from tests.processes import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    bot_environment,
    running_bot,
    serve_fakes,
)

pytestmark = pytest.mark.slow


async def test_message_reply_press_photo_then_sigterm(tmp_path: Path) -> None:
    telegram = FakeTelegram()
    comfy = FakeComfy(loras=tuple(load_personas(SHIPPED_PERSONAS).lora_files()))
    comfy.default_script = PromptScript(run_s=0.5, steps=2)
    async with trio.open_nursery() as nursery:
        fakes = await serve_fakes(nursery, telegram, comfy)
        env = bot_environment(tmp_path, **fakes)
        async with running_bot(env) as (process, output):
            with trio.fail_after(START_TIMEOUT_S):
                telegram.user_says("привет")
                await telegram.wait_for(lambda: len(telegram.sent) == 1, timeout_s=START_TIMEOUT_S)
                reply = telegram.sent[0]
                assert reply.buttons() == [(LOOK_BUTTON, "look")]
                telegram.user_presses(reply.message_id, "look")
                await telegram.wait_for(lambda: any(s.kind == "photo" for s in telegram.sent))
            photo = next(s for s in telegram.sent if s.kind == "photo")
            assert photo.reply_to_message_id == reply.message_id
            assert photo.content is not None
            assert photo.content.startswith(b"\x89PNG")
            with trio.fail_after(STOP_TIMEOUT_S):
                while b"image_generated" not in output:  # noqa: ASYNC110 (a pipe, no event)
                    await trio.sleep(0.05)
                process.send_signal(signal.SIGTERM)
                await process.wait()
        nursery.cancel_scope.cancel()
    text = output.decode()
    assert process.returncode == 0, text
    assert "bot_stopped" in text
    assert TEST_TOKEN not in text
    assert TEST_TOKEN.split(":")[1] not in text


async def test_a_bad_setting_stops_the_start_with_one_line_and_exit_2(tmp_path: Path) -> None:
    env = bot_environment(tmp_path, COMFYUI_CONCURRENCY="lots")
    async with running_bot(env) as (process, output):
        with trio.fail_after(START_TIMEOUT_S):
            await process.wait()
    lines = output.decode().strip().splitlines()
    assert process.returncode == 2
    assert len(lines) == 1
    assert lines[0].startswith("configuration error: COMFYUI_CONCURRENCY")


async def test_a_token_telegram_refuses_stops_the_start_with_one_line(tmp_path: Path) -> None:
    telegram = FakeTelegram(token="654321:a-different-token-altogether")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_handler, telegram.handler)
        env = bot_environment(tmp_path, TELEGRAM_API_BASE=f"http://127.0.0.1:{port}")
        async with running_bot(env) as (process, output):
            with trio.fail_after(START_TIMEOUT_S):
                await process.wait()
        nursery.cancel_scope.cancel()
    lines = output.decode().strip().splitlines()
    assert process.returncode == 2
    assert lines[-1] == (
        "cannot start: Telegram refused TELEGRAM_BOT_TOKEN (401 Unauthorized); "
        "copy it again from @BotFather"
    )
    assert TEST_TOKEN not in output.decode()


async def test_previews_over_a_real_websocket_then_the_picture_in_their_place(
    tmp_path: Path,
) -> None:
    """The frames travel as real binary websocket frames on 127.0.0.1: the process asks
    for metadata, and the user sees the forming picture, then the picture, in one message."""
    telegram = FakeTelegram()
    comfy = FakeComfy(loras=tuple(load_personas(SHIPPED_PERSONAS).lora_files()))
    comfy.preview_method = "latent2rgb"
    comfy.default_script = PromptScript(run_s=6.0, steps=6)
    async with trio.open_nursery() as nursery:
        fakes = await serve_fakes(nursery, telegram, comfy)
        env = bot_environment(tmp_path, **fakes)
        async with running_bot(env) as (process, output):
            with trio.fail_after(START_TIMEOUT_S + 30):
                telegram.user_says("привет")
                await telegram.wait_for(lambda: len(telegram.sent) == 1, timeout_s=START_TIMEOUT_S)
                reply = telegram.sent[0]
                telegram.user_presses(reply.message_id, "look")
                await telegram.wait_for(
                    lambda: any((s.content or b"").startswith(PNG_MAGIC) for s in telegram.sent),
                    timeout_s=30,
                )
            with trio.fail_after(STOP_TIMEOUT_S):
                process.send_signal(signal.SIGTERM)
                await process.wait()
        nursery.cancel_scope.cancel()
    assert process.returncode == 0, output.decode()
    previews = [e for e in telegram.media_edits if (e.content or b"").startswith(JPEG_MAGIC)]
    assert previews, output.decode()
    assert all(p.caption and p.caption.startswith("🎨") for p in previews)
    final = telegram.media_edits[-1]
    assert (final.content or b"").startswith(PNG_MAGIC)
    assert {e.message_id for e in telegram.media_edits} == {final.message_id}
    assert comfy.previews_sent == 6
