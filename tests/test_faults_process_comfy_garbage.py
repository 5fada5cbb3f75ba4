"""The real ``python -m bot`` process against a ComfyUI on 127.0.0.1 whose proxy garbles
answers: a broken gzip ``/object_info``, an HTML page for ``/history`` and for ``/view``.
The process keeps running and answering the chat, and charges nothing (real clock,
``fail_after`` guards)."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
import trio

from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS
from bot.core.texts import LOOK_BUTTON as LOOK
from bot.core.texts import t
from store import open_store
from tests.fakes.comfy import FakeComfy, PromptScript
from tests.fakes.telegram import FakeTelegram
from tests.processes import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    bot_environment,
    running_bot,
    serve_fakes,
)
from tests.rows import balance

pytestmark = pytest.mark.slow

BAD_GATEWAY = b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head></html>"
TIMEOUT_S = 6  # COMFYUI_TIMEOUT_SECONDS: the prompt /history cannot confirm ends by it


class GarbledComfy(FakeComfy):
    """The fake ComfyUI behind a proxy that garbles three routes; the rest passes."""

    async def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/object_info/"):
            response = httpx.Response(200, content=b"\x1f\x8b\x08 not gzip")
            # Set after the body is stored, so it goes out as is and fails on the bot's side.
            response.headers["content-encoding"] = "gzip"
            return response
        if path.startswith("/history/") or path == "/view":
            return httpx.Response(200, content=BAD_GATEWAY, headers={"content-type": "text/html"})
        return await super().handler(request)


async def wait_output(output: bytearray, marker: bytes) -> None:
    while marker not in output:  # noqa: ASYNC110 (a pipe has no event to wait on)
        await trio.sleep(0.05)


async def test_a_garbling_proxy_before_comfyui_never_stops_the_process(tmp_path: Path) -> None:
    telegram = FakeTelegram()
    comfy = GarbledComfy(loras=tuple(load_personas(SHIPPED_PERSONAS).lora_files()))
    comfy.default_script = PromptScript(run_s=0.5, steps=2)
    async with trio.open_nursery() as nursery:
        fakes = await serve_fakes(nursery, telegram, comfy)
        env = bot_environment(
            tmp_path, **fakes, FREE_IMAGES="2", COMFYUI_TIMEOUT_SECONDS=str(TIMEOUT_S)
        )
        async with running_bot(env) as (process, output):
            with trio.fail_after(START_TIMEOUT_S):
                await wait_output(output, b"comfy_preflight_models_not_listed")
                # /view answers a page: the user is told, nothing is sent or charged
                telegram.user_says("привет")
                await telegram.wait_for(lambda: len(telegram.sent) == 1, timeout_s=START_TIMEOUT_S)
                telegram.user_presses(telegram.sent[0].message_id, "look")
                await wait_output(output, b"answered text/html, 72 bytes")
                # the socket drops mid-run; /history answers a page: the reconciler
                # logs it and goes on, and the job ends at its time budget
                comfy.default_script = PromptScript(run_s=60, steps=60)
                telegram.user_says("ещё")
                await telegram.wait_for(
                    lambda: len([s for s in telegram.sent if s.text and "🎨" not in s.text]) >= 3,
                    timeout_s=START_TIMEOUT_S,
                )
                second = [s for s in telegram.sent if (LOOK, "look") in s.buttons()][-1]
                telegram.user_presses(second.message_id, "look")
                while len(comfy.started) < 2:  # noqa: ASYNC110 (the fake has no event for it)
                    await trio.sleep(0.01)
                comfy.drop_websockets()
                await wait_output(
                    output, b'comfy_reconcile_failed error="GET /history answered text/html'
                )
                await wait_output(output, b"GenerationTimedOut")
                # still answering
                count = len(telegram.sent)
                telegram.user_says("ты тут?")
                await telegram.wait_for(lambda: len(telegram.sent) > count, timeout_s=10)
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(STOP_TIMEOUT_S):
                await process.wait()
        nursery.cancel_scope.cancel()
    assert process.returncode == 0
    assert b"Traceback" not in output
    assert [s for s in telegram.sent if s.kind in ("photo", "document")] == []
    failures = [s for s in telegram.sent if s.text == t("fail_generation", "ru")]
    assert len(failures) == 2
    with open_store(tmp_path / "data" / "bot.db") as store:
        assert balance(store, telegram.sent[0].chat_id) == 2
        assert store.events.count("image_failed") == 2
        assert store.events.count("image_generated") == 0
