"""Running the real ``python -m bot`` process in tests: environment, output, clean-up."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from tests.fakes.comfy import FakeComfy
from tests.fakes.comfy_loopback import serve_fake_comfy
from tests.fakes.loopback_http import serve_handler
from tests.fakes.telegram import TEST_TOKEN, FakeTelegram

__all__ = [
    "ROOT",
    "START_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "bot_environment",
    "running_bot",
    "serve_fakes",
]

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 15


def bot_environment(tmp_path: Path, **values: str) -> dict[str, str]:
    """The parent's environment minus anything the bot reads, plus *values*."""
    own = {"PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR"}
    env = {k: v for k, v in os.environ.items() if k in own}
    env.update(
        TELEGRAM_BOT_TOKEN=TEST_TOKEN,
        DATABASE_PATH=str(tmp_path / "data" / "bot.db"),
        LOG_LEVEL="DEBUG",
        PYTHONUNBUFFERED="1",
    )
    env.update(values)
    return env


@asynccontextmanager
async def running_bot(
    env: dict[str, str], *, command: Sequence[str] | None = None, cwd: Path = ROOT
) -> AsyncIterator[tuple[trio.Process, bytearray]]:
    """``python -m bot`` (or *command*) with its output collected; killed if left running."""
    output = bytearray()
    process = await trio.lowlevel.open_process(
        list(command) if command is not None else [sys.executable, "-m", "bot"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None

    async def collect() -> None:
        assert process.stdout is not None
        async for chunk in process.stdout:
            output.extend(chunk)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect)
            yield process, output
            with trio.move_on_after(STOP_TIMEOUT_S):
                await process.wait()
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def serve_fakes(
    nursery: trio.Nursery, telegram: FakeTelegram, comfy: FakeComfy
) -> dict[str, str]:
    """Both fakes on 127.0.0.1 in *nursery*; the environment that points the bot at them."""
    telegram_port = await nursery.start(serve_handler, telegram.handler)
    await nursery.start(comfy.run)
    comfy_port = await nursery.start(serve_fake_comfy, comfy)
    return {
        "TELEGRAM_API_BASE": f"http://127.0.0.1:{telegram_port}",
        "COMFYUI_BASE_URL": f"http://127.0.0.1:{comfy_port}",
    }
