"""Start-up with Telegram out of reach: what the operator reads, and how a stop ends it."""

from __future__ import annotations

import itertools
import logging
import random
from pathlib import Path

import httpx
import pytest
import trio

from bot import app
from bot.app.startup import STARTUP_BACKOFF_MAX_S, route_to
from bot.core.logs import plain_fields
from bot.core.settings import Settings, load_settings
from common.backoff import backoff_delays
from tests.fakes.telegram import FAKE_BASE_URL, TEST_TOKEN, FakeTelegram
from tests.harness import start_bot

HOST = httpx.URL(FAKE_BASE_URL).host


def test_the_route_names_the_host_and_a_proxy_without_its_password() -> None:
    assert route_to("https://api.telegram.org", {}) == "api.telegram.org"
    assert route_to("http://127.0.0.1:8081/", {}) == "127.0.0.1:8081"
    proxies = {"https": "http://user:pa55word@proxy.lan:3128"}
    assert route_to("https://api.telegram.org", proxies) == (
        "api.telegram.org via proxy proxy.lan:3128"
    )
    assert route_to("https://api.telegram.org", {"all": "socks5://10.0.0.1:1080"}) == (
        "api.telegram.org via proxy 10.0.0.1:1080"
    )
    assert route_to("http://api.local:8081", proxies) == "api.local:8081"  # https only


@pytest.mark.parametrize("no_proxy", ["*", "api.telegram.org", ".telegram.org", "x, telegram.org"])
def test_no_proxy_keeps_the_route_direct(no_proxy: str) -> None:
    proxies = {"https": "http://proxy.lan:3128", "no": no_proxy}
    assert route_to("https://api.telegram.org", proxies) == "api.telegram.org"


def settings_for(tmp_path: Path) -> Settings:
    return load_settings(
        env_file=None,
        telegram_bot_token=TEST_TOKEN,
        telegram_api_base=FAKE_BASE_URL,
        database_path=tmp_path / "data" / "bot.db",
        comfyui_base_url="",
    )


def start_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    names = ("bot.app.process", "bot.app.startup")
    return [line(r) for r in caplog.records if r.name in names]


def waiting_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [line(r) for r in caplog.records if r.levelno >= logging.WARNING]


def line(record: logging.LogRecord) -> str:
    """The record as a plain log line shows it, after its time, level and logger."""
    return record.getMessage() + plain_fields(record)


async def test_unreachable_telegram_one_line_per_cycle_after_the_mode_line_and_a_stop_ends_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    caplog.set_level(logging.INFO)
    lines_before_first_call: list[list[str]] = []
    calls: list[float] = []

    async def unreachable(request: httpx.Request) -> httpx.Response:
        if not lines_before_first_call:
            lines_before_first_call.append(start_lines(caplog))
        calls.append(trio.current_time())
        raise httpx.ConnectError("[Errno 101] Network is unreachable", request=request)

    stopper = app.Stopper()
    finished = trio.Event()

    async def run() -> None:
        await app.run(
            settings_for(tmp_path),
            telegram_transport=httpx.MockTransport(unreachable),
            rng=random.Random(7),
            stopper=stopper,
            handle_signals=False,
        )
        finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.sleep(600)
        stop_at = trio.current_time()
        waiting_so_far = len(waiting_lines(caplog))
        stopper.stop()
        await finished.wait()
        assert trio.current_time() == stop_at  # nothing waited: no update was in hand
    assert lines_before_first_call == [
        [f'bot_starting replies="offline lines" images=off telegram={HOST}']
    ]
    waits = waiting_lines(caplog)
    assert len(waits) == len(calls) == waiting_so_far  # one line per try, none after the stop
    expected = backoff_delays(initial_s=2.0, maximum_s=STARTUP_BACKOFF_MAX_S, rng=random.Random(7))
    assert waits[0] == (
        f"telegram_start_waiting step=getMe route={HOST} delay_s={next(expected):.1f}"
        ' error="getMe: ConnectError: [Errno 101] Network is unreachable"'
        ' hint="Telegram not reachable; if this host needs a proxy, set HTTPS_PROXY"'
    )
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert max(gaps) <= STARTUP_BACKOFF_MAX_S  # the waits grow, then stay bounded
    assert len(calls) > 10
    assert start_lines(caplog)[-1] == "bot_stopped"


async def test_the_webhook_check_waits_an_outage_out_and_the_bot_then_answers(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: object,
) -> None:
    caplog.set_level(logging.INFO)
    fake_telegram.network_error_next("getWebhookInfo", times=8)  # past any retry budget
    fake_telegram.fail_next("getWebhookInfo", 429, "Too Many Requests", retry_after=40)
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    waits = [line for line in waiting_lines(caplog) if "step=getWebhookInfo" in line]
    assert len(waits) == 9
    assert 'hint="Telegram asks to wait"' in waits[-1]
    assert "delay_s=40.0" in waits[-1]
    assert not [line for line in waiting_lines(caplog) if line.startswith("telegram_retry")]
    assert "bot_online username=persona_test_bot" in start_lines(caplog)
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    await bot.stop()


async def test_a_stop_while_the_webhook_check_waits_ends_at_once(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: object,
) -> None:
    fake_telegram.network_error_next("getWebhookInfo", times=1000)
    stopper = app.Stopper()
    finished = trio.Event()

    async def run() -> None:
        await app.run(
            settings_for(tmp_path),
            telegram_transport=httpx.MockTransport(fake_telegram.handler),
            rng=random.Random(7),
            stopper=stopper,
            handle_signals=False,
        )
        finished.set()

    nursery.start_soon(run)
    await trio.sleep(300)
    stop_at = trio.current_time()
    stopper.stop()
    await finished.wait()
    assert trio.current_time() == stop_at
