"""``/metrics`` and ``/healthz`` of the real ``python -m bot`` process, asked with curl.

The bot runs against the fakes on 127.0.0.1 with ``METRICS_ADDRESS=127.0.0.1:0`` (it
names the port it got in its ``metrics_listening`` line); curl asks as a scraper and a
container health check would, and ``python -m bot health`` as the image's HEALTHCHECK
does. The scrape is read with ``prometheus_client``'s own text-format parser.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bot import __version__
from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS
from tests.fakes.comfy import FakeComfy, PromptScript
from tests.fakes.telegram import FakeTelegram
from tests.processes import (
    ROOT,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    bot_environment,
    running_bot,
    serve_fakes,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl"),
]

LISTENING = re.compile(rb"metrics_listening address=127\.0\.0\.1:(\d+)")


async def listening_port(output: bytearray) -> int:
    with trio.fail_after(START_TIMEOUT_S):
        while (match := LISTENING.search(output)) is None:  # noqa: ASYNC110 (a pipe)
            await trio.sleep(0.05)
    return int(match.group(1))


async def curl(url: str) -> tuple[int, str]:
    """curl's view: the status code and the body."""
    done = await trio.run_process(
        ["curl", "--silent", "--max-time", "5", "--write-out", "\n%{http_code}", url],
        capture_stdout=True,
        check=False,
    )
    body, _, code = done.stdout.decode().rpartition("\n")
    return int(code), body


async def health_command(env: dict[str, str]) -> tuple[int, str]:
    done = await trio.run_process(
        [sys.executable, "-m", "bot", "health"],
        cwd=ROOT,
        env=env,
        capture_stdout=True,
        stderr=subprocess.STDOUT,
        check=False,
    )
    return done.returncode, done.stdout.decode()


def samples(text: str) -> dict[str, list[Sample]]:
    """The scrape by family name (counters without _total, as the parser names them)."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def one(found: dict[str, list[Sample]], family: str, sample: str, **labels: str) -> float:
    [value] = [
        s.value for s in found[family] if s.name == sample and labels.items() <= s.labels.items()
    ]
    return value


async def test_scrape_and_health_of_a_bot_that_drew_a_picture(tmp_path: Path) -> None:
    telegram = FakeTelegram()
    comfy = FakeComfy(loras=tuple(load_personas(SHIPPED_PERSONAS).lora_files()))
    comfy.default_script = PromptScript(run_s=0.3, steps=2)
    async with trio.open_nursery() as nursery:
        fakes = await serve_fakes(nursery, telegram, comfy)
        env = bot_environment(tmp_path, METRICS_ADDRESS="127.0.0.1:0", **fakes)
        async with running_bot(env) as (process, output):
            port = await listening_port(output)
            base = f"http://127.0.0.1:{port}"
            with trio.fail_after(START_TIMEOUT_S):
                while (await curl(f"{base}/healthz"))[0] != 200:  # noqa: ASYNC110 (HTTP)
                    await trio.sleep(0.1)
                telegram.user_says("привет")
                await telegram.wait_for(lambda: len(telegram.sent) == 1, timeout_s=START_TIMEOUT_S)
                telegram.user_presses(telegram.sent[0].message_id, "look")
                await telegram.wait_for(lambda: any(s.kind == "photo" for s in telegram.sent))
                while b"image_generated" not in output:  # noqa: ASYNC110 (a pipe)
                    await trio.sleep(0.05)
                await trio.sleep(1.5)  # a heartbeat samples the gauges after the job
            health = await curl(f"{base}/healthz")
            code, text = await curl(f"{base}/metrics")
            missing = await curl(f"{base}/other")
            command = await health_command(env | {"METRICS_ADDRESS": f"127.0.0.1:{port}"})
            with trio.fail_after(STOP_TIMEOUT_S):
                process.send_signal(signal.SIGTERM)
                await process.wait()
        nursery.cancel_scope.cancel()
    assert process.returncode == 0, output.decode()
    assert health[0] == 200
    assert health[1].startswith("ok: polling; Telegram answered")
    assert command[0] == 0, command[1]
    assert command[1].startswith("ok: polling; Telegram answered")
    assert missing[0] == 404
    assert code == 200
    found = samples(text)
    server = fakes["COMFYUI_BASE_URL"].removeprefix("http://")
    generated = {"event": "image_generated", "reason": ""}
    assert one(found, "persona_bot_events", "persona_bot_events_total", **generated) == 1
    assert one(found, "persona_bot_picture_seconds", "persona_bot_picture_seconds_count") == 1
    assert one(found, "persona_bot_comfy_server_up", "persona_bot_comfy_server_up") == 1
    assert one(found, "persona_bot_comfy_slots", "persona_bot_comfy_slots", server=server) == 2
    assert one(found, "persona_bot_comfy_slots_busy", "persona_bot_comfy_slots_busy") == 0
    assert one(found, "persona_bot_queue_jobs", "persona_bot_queue_jobs") == 0
    sends = {"method": "editMessageMedia", "outcome": "ok"}  # the picture, in place
    requests = "persona_bot_telegram_requests"
    assert one(found, requests, requests + "_total", **sends) == 1
    assert one(found, "persona_bot_build_info", "persona_bot_build_info", version=__version__) == 1
    assert one(found, "persona_bot_telegram_last_poll_timestamp_seconds",
               "persona_bot_telegram_last_poll_timestamp_seconds") > 1.7e9  # fmt: skip
    assert one(found, "process_resident_memory_bytes", "process_resident_memory_bytes") > 0


async def test_health_is_503_with_the_reason_while_telegram_cannot_be_reached(
    tmp_path: Path,
) -> None:
    with trio.socket.socket() as closed:  # a port nobody listens on
        await closed.bind(("127.0.0.1", 0))
        unreachable = closed.getsockname()[1]
    env = bot_environment(
        tmp_path,
        METRICS_ADDRESS="127.0.0.1:0",
        TELEGRAM_API_BASE=f"http://127.0.0.1:{unreachable}",
    )
    async with running_bot(env) as (process, output):
        port = await listening_port(output)
        health = await curl(f"http://127.0.0.1:{port}/healthz")
        command = await health_command(env | {"METRICS_ADDRESS": f"127.0.0.1:{port}"})
        with trio.fail_after(STOP_TIMEOUT_S):
            process.send_signal(signal.SIGTERM)
            await process.wait()
    assert process.returncode == 0, output.decode()
    assert health[0] == 503
    assert health[1].startswith("starting for ")
    assert command[0] == 1
    assert command[1].startswith("unhealthy: starting for ")


async def test_the_health_command_without_a_listener_asks_who_holds_the_database(
    tmp_path: Path,
) -> None:
    env = bot_environment(tmp_path)
    code, line = await health_command(env)
    assert code == 1
    assert line.startswith("unhealthy: no bot holds ")
    assert await health_command(env | {"METRICS_ADDRESS": "127.0.0.1:1"}) == (
        1,
        "unhealthy: no answer from http://127.0.0.1:1/healthz ([Errno 111] Connection refused)\n",
    )
