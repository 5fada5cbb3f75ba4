"""Real processes on one database: a second bot is refused while the first keeps working,
``stats`` and ``doctor`` run beside it, and a damaged database file stops the start."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.fakes.loopback_http import serve_handler
from tests.fakes.telegram import FakeTelegram
from tests.processes import ROOT, START_TIMEOUT_S, STOP_TIMEOUT_S, bot_environment, running_bot

pytestmark = pytest.mark.slow


async def run_command(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(START_TIMEOUT_S):
        return await trio.run_process(
            [sys.executable, "-m", "bot", *argv],
            cwd=ROOT,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def test_a_second_bot_on_the_same_database_exits_2_and_the_first_keeps_working(
    tmp_path: Path,
) -> None:
    telegram = FakeTelegram()
    database = tmp_path / "data" / "bot.db"
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_handler, telegram.handler)
        env = bot_environment(tmp_path, TELEGRAM_API_BASE=f"http://127.0.0.1:{port}")
        async with running_bot(env) as (first, _):
            with trio.fail_after(START_TIMEOUT_S):
                telegram.user_says("привет")
                await telegram.wait_for(lambda: len(telegram.sent) == 1, timeout_s=START_TIMEOUT_S)
            async with running_bot(env) as (second, second_output):
                with trio.fail_after(START_TIMEOUT_S):
                    await second.wait()
            stats = await run_command(env, "stats", "--json")
            doctor = await run_command(env, "doctor")
            with trio.fail_after(START_TIMEOUT_S):
                telegram.user_says("ты тут?")
                await telegram.wait_for(lambda: len(telegram.sent) == 2, timeout_s=START_TIMEOUT_S)
            first.send_signal(signal.SIGTERM)
            with trio.fail_after(STOP_TIMEOUT_S):
                await first.wait()
        nursery.cancel_scope.cancel()
    assert second.returncode == 2
    assert second_output.decode().splitlines() == [
        f"cannot start: database {str(database)!r} is in use by another running bot "
        f"(pid {first.pid} holds '{database}.lock'); "
        "stop it first, or give this one its own DATABASE_PATH"
    ]
    assert first.returncode == 0
    assert (stats.returncode, stats.stderr) == (0, b"")
    assert b'"presses": 0' in stats.stdout
    doctor_lines = doctor.stdout.decode().splitlines()
    assert f"✓ instance: a bot is running on it (pid {first.pid})" in doctor_lines
    assert any(line.startswith("✓ database: ") for line in doctor_lines), doctor_lines


async def test_a_damaged_database_file_stops_the_start_with_one_line(tmp_path: Path) -> None:
    database = tmp_path / "data" / "bot.db"
    database.parent.mkdir(parents=True)
    database.write_bytes(b"\x00garbage where the database was\n" * 200)
    env = bot_environment(tmp_path, TELEGRAM_API_BASE="http://127.0.0.1:9")
    async with running_bot(env) as (process, output):
        with trio.fail_after(START_TIMEOUT_S):
            await process.wait()
    assert process.returncode == 2
    assert output.decode().splitlines() == [
        f"cannot start: database {str(database)!r} is damaged or not an SQLite file "
        "(file is not a database); restore it from a backup, or move it away to start "
        "with an empty one"
    ]
