"""Several ComfyUI servers with the real ``python -m bot`` (real clock, real sockets on
127.0.0.1, each server's websocket opened from its own URL): a server killed mid-job."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS
from store import open_store
from tests.fakes.comfy import FakeComfy, Outcome, PromptScript
from tests.fakes.comfy_loopback import serve_fake_comfy
from tests.fakes.loopback_http import serve_handler
from tests.fakes.telegram import FakeTelegram
from tests.processes import START_TIMEOUT_S, STOP_TIMEOUT_S, bot_environment, running_bot
from tests.rows import balance

pytestmark = pytest.mark.slow

LORAS = tuple(load_personas(SHIPPED_PERSONAS).lora_files())
FAILOVER_TIMEOUT_S = 30.0  # the 5 s grace, a reconnect attempt or two, a 1 s picture


async def _serve(
    comfy: FakeComfy, *, task_status: trio.TaskStatus[tuple[int, trio.CancelScope]]
) -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(comfy.run)
            port: int = await nursery.start(serve_fake_comfy, comfy)
            task_status.started((port, scope))


async def test_a_server_killed_mid_job_the_job_finishes_on_the_other_once(
    tmp_path: Path,
) -> None:
    telegram = FakeTelegram()
    doomed, survivor = FakeComfy(loras=LORAS), FakeComfy(loras=LORAS)
    doomed.default_script = PromptScript(outcome=Outcome.HANG)
    survivor.default_script = PromptScript(run_s=1.0, steps=4)
    async with trio.open_nursery() as nursery:
        telegram_port = await nursery.start(serve_handler, telegram.handler)
        doomed_port, kill_doomed = await nursery.start(_serve, doomed)
        survivor_port, _ = await nursery.start(_serve, survivor)
        env = bot_environment(
            tmp_path,
            TELEGRAM_API_BASE=f"http://127.0.0.1:{telegram_port}",
            COMFYUI_BASE_URL=f"http://127.0.0.1:{doomed_port}#1, http://127.0.0.1:{survivor_port}",
            FREE_IMAGES="2",
        )
        async with running_bot(env) as (bot, output):
            with trio.fail_after(START_TIMEOUT_S):
                while not (doomed.sockets.live_client_ids and survivor.sockets.live_client_ids):  # noqa: ASYNC110
                    await trio.sleep(0.01)
                telegram.user_says("привет")
                await telegram.wait_for(lambda: len(telegram.sent) == 1, timeout_s=START_TIMEOUT_S)
                telegram.user_presses(telegram.sent[0].message_id, "look")
                while not doomed.started:  # noqa: ASYNC110 (the fake has no event for it)
                    await trio.sleep(0.01)
            kill_doomed.cancel()  # its listener, sockets and GPU stop at once
            with trio.fail_after(FAILOVER_TIMEOUT_S):
                await telegram.wait_for(
                    lambda: any(s.kind == "photo" for s in telegram.sent),
                    timeout_s=FAILOVER_TIMEOUT_S,
                )
                while b"image_generated" not in output:  # noqa: ASYNC110 (a pipe)
                    await trio.sleep(0.05)
            bot.send_signal(signal.SIGTERM)
            with trio.fail_after(STOP_TIMEOUT_S):
                await bot.wait()
        nursery.cancel_scope.cancel()
    assert bot.returncode == 0
    assert len([s for s in telegram.sent if s.kind == "photo"]) == 1
    assert [p.prompt_id for p in survivor.submitted] == [p.prompt_id for p in doomed.submitted]
    assert b"comfy_job_moves" in output
    with open_store(tmp_path / "data" / "bot.db") as store:
        assert balance(store, telegram.sent[0].chat_id) == 1
        assert store.events.count("image_generated") == 1
        assert store.events.count("image_failed") == 0
        [row] = store.db.query("SELECT server FROM jobs")
        assert row["server"] == f"127.0.0.1:{survivor_port}"
