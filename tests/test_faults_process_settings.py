"""Settings mistakes as an operator meets them: the real process, a typo in .env or the
environment, the line it prints."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
import trio

from tests.fakes.loopback_http import serve_handler
from tests.fakes.telegram import FakeTelegram
from tests.processes import ROOT, START_TIMEOUT_S, STOP_TIMEOUT_S, bot_environment, running_bot

pytestmark = pytest.mark.slow

# From another folder, ``python -m bot`` must still find the clone's package.
COMMAND = [sys.executable, "-m", "bot"]


async def test_a_typo_in_env_stops_the_start_naming_the_closest_setting(tmp_path: Path) -> None:
    await trio.Path(tmp_path / ".env").write_text("COMFYUI_CONCURENCY=3\n")
    env = bot_environment(tmp_path, PYTHONPATH=str(ROOT))
    async with running_bot(env, command=COMMAND, cwd=tmp_path) as (process, output):
        with trio.fail_after(START_TIMEOUT_S):
            await process.wait()
    assert process.returncode == 2
    assert output.decode().splitlines() == [
        "configuration error: COMFYUI_CONCURENCY in .env is not a setting; "
        "did you mean COMFYUI_CONCURRENCY?"
    ]


async def test_a_typo_in_the_environment_is_a_warning_and_the_bot_runs(tmp_path: Path) -> None:
    telegram = FakeTelegram()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_handler, telegram.handler)
        env = bot_environment(
            tmp_path,
            PYTHONPATH=str(ROOT),
            TELEGRAM_API_BASE=f"http://127.0.0.1:{port}",
            LLM_MODLE="llama3",
        )
        async with running_bot(env, command=COMMAND, cwd=tmp_path) as (process, output):
            with trio.fail_after(START_TIMEOUT_S):
                telegram.user_says("привет")
                await telegram.wait_for(lambda: len(telegram.sent) == 1, timeout_s=START_TIMEOUT_S)
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(STOP_TIMEOUT_S):
                await process.wait()
        nursery.cancel_scope.cancel()
    text = output.decode()
    assert process.returncode == 0, text
    warnings = [line for line in text.splitlines() if "LLM_MODLE" in line]
    assert len(warnings) == 1
    assert warnings[0].endswith(
        'WARNING bot: settings_name_unknown detail="LLM_MODLE in the environment is not a'
        ' setting; did you mean LLM_MODEL?"'
    )
