"""The bot as a real process: started like the end-to-end test, always stopped.

``running_bot`` starts ``python -m bot`` (or the polling baseline) from the repository
root with an environment built from scratch, collects its output, waits until it polls
Telegram and follows ComfyUI's websocket, and on exit asks it to stop (SIGTERM) and
kills it if it does not. ``peak_rss_mb`` reads the kernel's high-water mark of its
resident memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from benchmarks.fakes import Stack
from tests.fakes.telegram import TEST_TOKEN

__all__ = [
    "BASELINE_COMMAND",
    "BOT_COMMAND",
    "WIDE_SEND_BUDGET",
    "BotProcess",
    "BotStartFailed",
    "bot_environment",
    "read_status_kb",
    "running_bot",
]

ROOT: Final = Path(__file__).resolve().parent.parent
BOT_COMMAND: Final = ("-m", "bot")
BASELINE_COMMAND: Final = ("-m", "benchmarks.baseline_bot")
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 15.0
# Tens of replies a second are beyond Telegram's free send budget (docs/telegram.md, T7):
# at the default 25 a second they would wait seconds for their turn (a chat p50 of 3.3 s
# measured). Benchmarks about the bot's own work run as a bot with paid broadcasts would.
WIDE_SEND_BUDGET: Final = "1000"
_KEPT_VARIABLES: Final = frozenset({"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"})


class BotStartFailed(Exception):
    """The bot process exited or did not get ready; the message ends with its output."""


@dataclass(slots=True)
class BotProcess:
    process: trio.Process
    output: bytearray
    database: Path

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.output.decode(errors="replace").splitlines()[-lines:])

    def problems(self) -> int:
        """Log lines at WARNING or ERROR (plain log format), plus 1 for a non-zero exit."""
        text = self.output.decode(errors="replace")
        lines = sum(" WARNING " in line or " ERROR " in line for line in text.splitlines())
        return lines + (1 if self.process.returncode not in (0, None) else 0)


def bot_environment(
    stack: Stack, data_dir: Path, *, llm: bool = False, **values: str
) -> dict[str, str]:
    """Only what the bot needs: the fakes' URLs, a fresh database, then *values*."""
    env = {k: v for k, v in os.environ.items() if k in _KEPT_VARIABLES}
    env.update(
        TELEGRAM_BOT_TOKEN=TEST_TOKEN,
        TELEGRAM_API_BASE=f"http://127.0.0.1:{stack.ports.telegram}",
        COMFYUI_BASE_URL=f"http://127.0.0.1:{stack.ports.comfy}",
        DATABASE_PATH=str(data_dir / "bot.db"),
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    if llm:
        env.update(LLM_BASE_URL=f"http://127.0.0.1:{stack.ports.llm}/v1", LLM_API_KEY="bench")
    env.update(values)
    return env


@asynccontextmanager
async def running_bot(
    stack: Stack, env: dict[str, str], *, command: Sequence[str] = BOT_COMMAND
) -> AsyncIterator[BotProcess]:
    """The bot, ready (polling Telegram, following ComfyUI); stopped and reaped on exit.

    Raises:
        BotStartFailed: it exited, or was not ready within ``START_TIMEOUT_S``.
    """
    process = await trio.lowlevel.open_process(
        [sys.executable, *command],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    bot = BotProcess(process, bytearray(), Path(env["DATABASE_PATH"]))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_collect, bot)
            # The baseline polls /history and opens no websocket.
            await _wait_ready(stack, bot, websocket=tuple(command) == BOT_COMMAND)
            yield bot
            await _stop(bot)
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


async def _collect(bot: BotProcess) -> None:
    stdout = bot.process.stdout
    assert stdout is not None
    async for chunk in stdout:
        bot.output.extend(chunk)


async def _wait_ready(stack: Stack, bot: BotProcess, *, websocket: bool) -> None:
    async def exited() -> None:
        await bot.process.wait()
        raise BotStartFailed(f"the bot exited with {bot.process.returncode}:\n{bot.tail()}")

    with trio.move_on_after(START_TIMEOUT_S) as waiting:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(exited)
            await stack.telegram.polled.wait()
            while websocket and not stack.comfy.sockets.live_client_ids:  # noqa: ASYNC110
                await trio.sleep(0.01)  # (no event for it)
            nursery.cancel_scope.cancel()
    if waiting.cancelled_caught:
        raise BotStartFailed(f"the bot was not ready within {START_TIMEOUT_S:g} s:\n{bot.tail()}")


async def _stop(bot: BotProcess) -> None:
    bot.process.send_signal(signal.SIGTERM)
    with trio.move_on_after(STOP_TIMEOUT_S):
        await bot.process.wait()


def read_status_kb(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field (``VmHWM``, ``VmRSS``) in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(f"/proc/{pid}/status has no {field!r} line")
