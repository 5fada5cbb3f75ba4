"""The real process against a database another process holds locked while it works.

``BEGIN IMMEDIATE`` from a second connection, held while the bot waits for a slow LLM, so
that the handler's writes and its "update done" meet the lock: the process must keep
running (it used to exit 1 on "database is locked"), answer other chats meanwhile, and
finish the locked user's update once the lock is gone.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
import trio

from store import open_store
from tests.fakes.comfy import FakeComfy
from tests.fakes.loopback_http import serve_handler
from tests.fakes.telegram import FakeTelegram
from tests.processes import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    bot_environment,
    running_bot,
    serve_fakes,
)

pytestmark = pytest.mark.slow

SLOW_LLM_S = 3.0
LOCK_HELD_S = 6.0


async def llm(request: httpx.Request) -> httpx.Response:
    body = request.read().decode()
    if "slow" in body:
        await trio.sleep(SLOW_LLM_S)
    return httpx.Response(200, json={"choices": [{"message": {"content": "ответ"}}]})


async def test_a_lock_held_by_another_process_mid_handler_is_waited_out(tmp_path: Path) -> None:
    telegram = FakeTelegram()
    comfy = FakeComfy()
    async with trio.open_nursery() as nursery:
        fakes = await serve_fakes(nursery, telegram, comfy)
        llm_port = await nursery.start(serve_handler, llm)
        env = bot_environment(
            tmp_path,
            **{**fakes, "COMFYUI_BASE_URL": ""},
            LLM_BASE_URL=f"http://127.0.0.1:{llm_port}/v1",
        )
        database = Path(env["DATABASE_PATH"])
        async with running_bot(env) as (bot, output):
            with trio.fail_after(START_TIMEOUT_S):
                telegram.user_says("warm up")
                await telegram.wait_for(lambda: len(telegram.sent) == 1, timeout_s=START_TIMEOUT_S)
            telegram.user_says("slow question", user_id=1001)
            await trio.sleep(1)  # its handler now waits for the LLM
            lock = sqlite3.connect(database, timeout=5, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            await trio.sleep(LOCK_HELD_S)  # the LLM answered; the handler's writes wait
            assert bot.returncode is None, output.decode(errors="replace")[-2000:]
            lock.rollback()
            lock.close()
            with trio.fail_after(30):
                await telegram.wait_for(lambda: telegram.texts_to(1001) == ["ответ"], timeout_s=30)
                while True:
                    with open_store(database) as store:
                        if not store.updates.pending():
                            break
                    await trio.sleep(0.1)
            with open_store(database) as store:
                assert store.updates.parked() == []
            assert b"store_write_waiting" in output or b"telegram_inbox_waiting" in output
            bot.terminate()
            with trio.fail_after(STOP_TIMEOUT_S):
                await bot.wait()
        nursery.cancel_scope.cancel()
    assert bot.returncode == 0
