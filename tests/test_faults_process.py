"""The fault suite with real processes (real clock, ``fail_after`` guards): SIGKILL in the
middle of a job, and a database another process holds locked at start."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest
import trio

from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS
from store import open_store
from tests.fakes.comfy import FakeComfy, PromptScript
from tests.fakes.loopback_http import serve_handler
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


async def test_sigkill_mid_job_then_restart_gives_one_photo_charged_once(tmp_path: Path) -> None:
    telegram = FakeTelegram()
    comfy = FakeComfy(loras=tuple(load_personas(SHIPPED_PERSONAS).lora_files()))
    comfy.default_script = PromptScript(run_s=2.0, steps=4)
    async with trio.open_nursery() as nursery:
        fakes = await serve_fakes(nursery, telegram, comfy)
        env = bot_environment(tmp_path, **fakes, FREE_IMAGES="2")
        async with running_bot(env) as (first, _):
            with trio.fail_after(START_TIMEOUT_S):
                telegram.user_says("привет")
                await telegram.wait_for(lambda: len(telegram.sent) == 1, timeout_s=START_TIMEOUT_S)
                telegram.user_presses(telegram.sent[0].message_id, "look")
                while not comfy.started:  # noqa: ASYNC110 (the fake has no event for it)
                    await trio.sleep(0.01)
            first.kill()  # SIGKILL: no clean-up of any kind
            await first.wait()
        assert first.returncode == -signal.SIGKILL
        async with running_bot(env) as (second, output):
            with trio.fail_after(START_TIMEOUT_S):
                await telegram.wait_for(
                    lambda: any(s.kind == "photo" for s in telegram.sent),
                    timeout_s=START_TIMEOUT_S,
                )
                while b"image_generated" not in output:  # noqa: ASYNC110 (a pipe)
                    await trio.sleep(0.05)
            second.send_signal(signal.SIGTERM)
            with trio.fail_after(STOP_TIMEOUT_S):
                await second.wait()
        nursery.cancel_scope.cancel()
    assert second.returncode == 0
    assert len([s for s in telegram.sent if s.kind == "photo"]) == 1
    assert len(comfy.submitted) == 1  # found again on ComfyUI, not drawn twice
    with open_store(tmp_path / "data" / "bot.db") as store:
        assert balance(store, telegram.sent[0].chat_id) == 1
        assert store.events.count("image_requested") == 1
        assert store.events.count("image_generated") == 1
        assert store.events.count("image_failed") == 0


async def test_a_database_locked_by_another_process_stops_the_start_clearly(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / "bot.db"
    open_store(path).close()
    holder = sqlite3.connect(path)
    holder.execute("BEGIN IMMEDIATE")  # an operator's sqlite3 shell in a write transaction
    try:
        telegram = FakeTelegram()
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_handler, telegram.handler)
            env = bot_environment(tmp_path, TELEGRAM_API_BASE=f"http://127.0.0.1:{port}")
            async with running_bot(env) as (process, output):
                with trio.fail_after(START_TIMEOUT_S):
                    await process.wait()
            nursery.cancel_scope.cancel()
    finally:
        holder.rollback()
        holder.close()
    lines = output.decode().strip().splitlines()
    assert process.returncode == 2
    assert lines == [
        f"cannot start: database {str(path)!r} is locked by another process; "
        "stop the other bot instance or sqlite3 session and start again"
    ]
