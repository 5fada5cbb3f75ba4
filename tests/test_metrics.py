"""Metrics and health: the verdict table, the listener's answers, what the bot counts.

The counters live in ``prometheus_client``'s default registry for the whole test run, so
each test reads them before and after what it does and checks the difference.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from bot.app.handler import command_label
from bot.core.buttons import BuyPack, Cancel, Look
from bot.core.commands import ChatText, Context, Press, StartCmd, UnknownCmd
from bot.core.settings import (
    ListenAddress,
    SettingsError,
    load_settings,
    parse_listen_address,
)
from bot.ops import listener
from bot.ops.health import (
    LOOP_STALL_S,
    POLL_STALE_S,
    Health,
    Heartbeat,
    health_url,
    judge,
)
from bot.ops.listener import ListenerError, make_app, run_listener
from bot.telegram.client import request_outcome
from bot.telegram.errors import (
    TelegramBadRequest,
    TelegramForbidden,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from tests.fakes.comfy import FakeComfy
from tests.fakes.telegram import FakeTelegram
from tests.harness import start_bot
from tests.test_image_flow import photos, press_look, say_and_get_reply, wait_job_settled
from tests.test_payments_flow import PACK_10, PACKS


def value(name: str, **labels: str) -> float:
    """A sample's value now (0 when it was never set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


@contextmanager
def deltas(*samples: tuple[str, dict[str, str]]) -> Iterator[Callable[[int], float]]:
    """``delta(i)``: how much the *i*-th sample grew inside the block."""
    before = [value(name, **labels) for name, labels in samples]
    after: list[float] = []
    yield lambda index: after[index] - before[index]
    after[:] = [value(name, **labels) for name, labels in samples]


# -- the verdict --------------------------------------------------------------------------


STALLED = 130.0 - LOOP_STALL_S - 2
STALE = 130.0 - POLL_STALE_S


@pytest.mark.parametrize(
    ("beat_at", "polled_at", "stopping", "ok", "reason"),
    [
        (None, None, False, False, "starting for 30 s"),
        (129.0, None, False, False, "not polling yet (30 s after start)"),
        (129.0, 100.0, False, True, "ok: polling; Telegram answered 30 s ago"),
        (STALLED, 100.0, False, False, "event loop has not answered for 12 s"),
        (130.0, STALE - 1, False, False, "Telegram has not answered getUpdates for 121 s"),
        (130.0, STALE, False, True, "ok: polling; Telegram answered 120 s ago"),
        (130.0, 129.0, True, False, "stopping"),
    ],
)
def test_the_verdict_from_the_stamps(
    beat_at: float | None, polled_at: float | None, stopping: bool, ok: bool, reason: str
) -> None:
    verdict = judge(
        now=130.0, started_at=100.0, beat_at=beat_at, polled_at=polled_at, stopping=stopping
    )
    assert verdict == Health(ok, reason)


def test_the_heartbeat_stamps_on_its_own_clock() -> None:
    now = [10.0]
    heartbeat = Heartbeat(clock=lambda: now[0])
    assert heartbeat.health() == Health(False, "starting for 0 s")
    heartbeat.beat()
    heartbeat.polled()
    now[0] = 15.0
    assert heartbeat.health() == Health(True, "ok: polling; Telegram answered 5 s ago")
    now[0] = 15.0 + LOOP_STALL_S  # nobody beat meanwhile: the loop is stuck
    assert not heartbeat.health().ok
    assert "event loop" in heartbeat.health().reason


# -- the address --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:9464", ListenAddress("127.0.0.1", 9464)),
        (" 0.0.0.0:9464 ", ListenAddress("0.0.0.0", 9464)),
        ("[::1]:9464", ListenAddress("::1", 9464)),
        ("localhost:0", ListenAddress("localhost", 0)),
    ],
)
def test_listen_addresses_that_parse(text: str, address: ListenAddress) -> None:
    assert parse_listen_address(text) == address


@pytest.mark.parametrize(
    "text", ["9464", "127.0.0.1", ":9464", "127.0.0.1:99999", "a b:1", "::1:9464"]
)
def test_listen_addresses_that_do_not(text: str) -> None:
    with pytest.raises(ValueError, match=r"host:port|above"):
        parse_listen_address(text)


def test_metrics_address_is_off_by_default_and_a_bad_one_is_named() -> None:
    assert load_settings(env_file=None, require_token=False).metrics_address is None
    assert (
        load_settings(env_file=None, require_token=False, metrics_address="").metrics_address
        is None
    )
    with pytest.raises(SettingsError, match=r"^METRICS_ADDRESS"):
        load_settings(env_file=None, require_token=False, metrics_address="9464")
    assert str(ListenAddress("::1", 9464)) == "[::1]:9464"


def test_the_health_command_asks_loopback_for_a_wildcard_bind() -> None:
    assert health_url(ListenAddress("0.0.0.0", 9464)) == "http://127.0.0.1:9464/healthz"
    assert health_url(ListenAddress("::", 9464)) == "http://[::1]:9464/healthz"
    assert health_url(ListenAddress("10.0.0.5", 80)) == "http://10.0.0.5:80/healthz"


# -- the listener's answers -----------------------------------------------------------------


def call(app: Any, path: str) -> tuple[str, dict[str, str], str]:
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
        got["status"], got["headers"] = status, dict(headers)

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "9464",
        "wsgi.input": io.BytesIO(),
        "wsgi.url_scheme": "http",
    }
    body = b"".join(app(environ, start_response))
    return got["status"], got["headers"], body.decode()


def test_healthz_answers_200_or_503_with_one_line() -> None:
    now = [0.0]
    heartbeat = Heartbeat(clock=lambda: now[0])
    app = make_app(heartbeat)
    status, headers, body = call(app, "/healthz")
    assert (status, body) == ("503 Service Unavailable", "starting for 0 s\n")
    assert headers["Cache-Control"] == "no-store"
    heartbeat.beat()
    heartbeat.polled()
    assert call(app, "/healthz")[:3:2] == ("200 OK", "ok: polling; Telegram answered 0 s ago\n")
    assert call(app, "/nope")[0] == "404 Not Found"


def test_metrics_are_the_prometheus_text_format_with_every_family_of_the_catalogue() -> None:
    status, headers, body = call(make_app(Heartbeat()), "/metrics")
    assert status == "200 OK"
    assert headers["Content-Type"].startswith("text/plain; version=")
    families = {family.name: family for family in text_string_to_metric_families(body)}
    assert families["persona_bot_events"].type == "counter"
    assert families["persona_bot_picture_seconds"].type == "histogram"
    assert families["persona_bot_queue_jobs"].type == "gauge"
    assert "process_resident_memory_bytes" in families  # the library's process collector
    ours = [name for name in families if name.startswith("persona_bot_")]
    assert len(ours) >= 20
    for name in ours:  # Prometheus's naming advice: base units, no unit-less durations
        assert not name.endswith(("_ms", "_milliseconds", "_minutes"))


async def test_the_listener_serves_from_its_thread_and_closes_the_port_when_cancelled() -> None:
    heartbeat = Heartbeat()
    heartbeat.beat()
    heartbeat.polled()
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(run_listener, ListenAddress("127.0.0.1", 0), heartbeat)
        assert bound.port != 0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bound.port}") as http:
            health = await http.get("/healthz")
            metrics = await http.get("/metrics")
        assert (health.status_code, health.text) == (
            200,
            "ok: polling; Telegram answered 0 s ago\n",
        )
        assert "persona_bot_events_total" in metrics.text
        nursery.cancel_scope.cancel()
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", bound.port), timeout=1),
    ):
        pass


async def test_a_port_in_use_is_one_line_naming_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenerError, match=f"^METRICS_ADDRESS 127.0.0.1:{port}: cannot"):
            await run_listener(ListenAddress("127.0.0.1", port), Heartbeat())


async def test_a_stuck_loop_is_reported_by_the_listener_thread() -> None:
    heartbeat = Heartbeat()
    heartbeat.polled()
    heartbeat.beat_at = heartbeat.clock() - LOOP_STALL_S - 1  # as if the loop stopped
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(run_listener, ListenAddress("127.0.0.1", 0), heartbeat)
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"http://127.0.0.1:{bound.port}/healthz")
        nursery.cancel_scope.cancel()
    assert answer.status_code == 503
    assert answer.text.startswith("event loop has not answered for 11 s")


# -- labels -------------------------------------------------------------------------------


def test_command_labels_are_the_kind_never_an_argument() -> None:
    ctx = Context(
        chat_id=1, chat_type="private", user_id=1, first_name="A", language_code="ru", update_id=9
    )
    assert command_label(ChatText(ctx, message_id=5, text="hello there")) == "chat_text"
    assert command_label(StartCmd(ctx, payload="vera")) == "start"
    assert command_label(UnknownCmd(ctx)) == "unknown"
    assert command_label(Press(ctx, "q1", 7, Look())) == "press_look"
    assert command_label(Press(ctx, "q1", 7, Cancel("job-1"))) == "press_cancel"
    assert command_label(Press(ctx, "q1", 7, BuyPack(10))) == "press_buy_pack"


def test_request_outcomes_are_a_closed_set() -> None:
    assert (
        request_outcome(TelegramRetryAfter("sendMessage", "429", retry_after=3)) == "rate_limited"
    )
    assert request_outcome(TelegramNetworkError("sendMessage", "ConnectError")) == "network"
    assert request_outcome(TelegramServerError("sendMessage", "502")) == "server_error"
    assert request_outcome(TelegramBadRequest("sendMessage", "chat not found")) == "refused"
    assert request_outcome(TelegramForbidden("sendMessage", "blocked")) == "refused"


# -- what the bot counts -----------------------------------------------------------------------


async def test_a_picture_is_counted_from_the_press_to_the_photo(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    server = "comfy.test:8188"
    with deltas(
        ("persona_bot_events_total", {"event": "image_requested", "reason": ""}),
        ("persona_bot_events_total", {"event": "image_generated", "reason": ""}),
        ("persona_bot_picture_seconds_count", {}),
        ("persona_bot_queue_wait_seconds_count", {}),
        ("persona_bot_comfy_slot_wait_seconds_count", {}),
        ("persona_bot_comfy_prompt_seconds_count", {"server": server}),
        ("persona_bot_telegram_requests_total", {"method": "editMessageMedia", "outcome": "ok"}),
        (
            "persona_bot_telegram_requests_total",
            {"method": "editMessageMedia", "outcome": "rate_limited"},
        ),
        ("persona_bot_updates_total", {"command": "press_look"}),
        ("persona_bot_updates_total", {"command": "chat_text"}),
        ("persona_bot_send_budget_wait_seconds_count", {}),
    ) as delta:
        bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
        fake_telegram.fail_next(
            "editMessageMedia", 429, "Too Many Requests: retry after 2", retry_after=2
        )
        reply = await say_and_get_reply(fake_telegram)
        await press_look(fake_telegram, reply)
        await fake_telegram.wait_for(lambda: len(photos(fake_telegram)) == 1)
        await wait_job_settled(bot)
        await bot.stop()
    assert [delta(i) for i in range(11)] == [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, delta(10)]
    assert delta(10) >= 3  # the reply, the status message, the picture (twice), ...


async def test_a_failed_picture_is_counted_with_its_reason(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    with deltas(
        ("persona_bot_events_total", {"event": "image_failed", "reason": "no_quota"})
    ) as delta:
        bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=0)
        reply = await say_and_get_reply(fake_telegram)
        await press_look(fake_telegram, reply)
        await trio.sleep(1)
        await bot.stop()
    assert delta(0) == 1


async def test_stars_are_counted_once_per_charge_and_refunds_apart(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg = fake_telegram
    with deltas(
        ("persona_bot_stars_total", {"kind": "pack"}),
        ("persona_bot_events_total", {"event": "payment_succeeded", "reason": ""}),
        ("persona_bot_stars_refunded_total", {}),
    ) as delta:
        bot = await start_bot(nursery, tmp_path, tg, free_images=0, stars_packs=PACKS)
        charge = tg.payment_succeeds(PACK_10, 50)
        await tg.wait_for(lambda: len(tg.sent) == 1)
        tg.payment_succeeds(PACK_10, 50, charge_id=charge)  # delivered again: not counted
        await trio.sleep(5)
        tg.payment_refunded(charge)
        await tg.wait_for(lambda: len(tg.sent) == 2)
        tg.payment_refunded(charge)  # again: not counted
        await trio.sleep(5)
        await bot.stop()
    assert (delta(0), delta(1), delta(2)) == (50, 1, 50)


async def test_a_client_that_sends_nothing_is_cut_off_and_the_next_is_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One serving thread: a stalled client holds it at most CLIENT_TIMEOUT_S (shortened
    here), then a health check gets its answer."""
    monkeypatch.setattr(listener._Handler, "timeout", 0.3)
    heartbeat = Heartbeat()
    heartbeat.beat()
    heartbeat.polled()
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(run_listener, ListenAddress("127.0.0.1", 0), heartbeat)
        with socket.create_connection(("127.0.0.1", bound.port)):  # connects, says nothing
            with trio.fail_after(10):
                async with httpx.AsyncClient() as http:
                    answer = await http.get(f"http://127.0.0.1:{bound.port}/healthz")
        nursery.cancel_scope.cancel()
    assert answer.status_code == 200
