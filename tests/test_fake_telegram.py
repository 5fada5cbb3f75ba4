"""The fake Bot API keeps Telegram's protocol, and the loopback server serves it for real."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from pydantic import SecretStr

from bot.telegram.client import TelegramApi
from bot.telegram.errors import TelegramNetworkError
from bot.telegram.types import CallbackQuery, Update
from tests.fakes.loopback_http import serve_handler
from tests.fakes.telegram import (
    CONFLICT_OTHER_POLL,
    CONFLICT_WEBHOOK,
    DEFAULT_USER_ID,
    FAKE_BASE_URL,
    TEST_TOKEN,
    FakeTelegram,
)

URL = f"{FAKE_BASE_URL}/bot{TEST_TOKEN}"


@pytest.fixture
async def http(fake_telegram: FakeTelegram) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake_telegram.handler)) as client:
        yield client


async def get_updates(http: httpx.AsyncClient, **params: Any) -> httpx.Response:
    return await http.post(f"{URL}/getUpdates", json=params)


async def test_wrong_token_and_unknown_method(http: httpx.AsyncClient) -> None:
    wrong = await http.post(f"{FAKE_BASE_URL}/bot1:wrong/getMe")
    assert (wrong.status_code, wrong.json()) == (
        401,
        {"ok": False, "error_code": 401, "description": "Unauthorized"},
    )
    unknown = await http.post(f"{URL}/sendTelepathy")
    assert (unknown.status_code, unknown.json()["description"]) == (404, "Not Found")


async def test_urlencoded_and_query_string_parameters(
    http: httpx.AsyncClient, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.user_says("привет")
    form = await http.post(f"{URL}/sendMessage", data={"chat_id": DEFAULT_USER_ID, "text": "раз"})
    query = await http.get(f"{URL}/sendMessage", params={"chat_id": DEFAULT_USER_ID, "text": "два"})
    assert form.json()["result"]["message_id"] == 2
    assert query.json()["result"]["text"] == "два"
    assert fake_telegram.texts_to(DEFAULT_USER_ID) == ["раз", "два"]


async def test_unknown_chat_and_empty_text_are_bad_requests(
    http: httpx.AsyncClient, fake_telegram: FakeTelegram
) -> None:
    nobody = await http.post(f"{URL}/sendMessage", json={"chat_id": 42, "text": "hi"})
    assert (nobody.status_code, nobody.json()["description"]) == (
        400,
        "Bad Request: chat not found",
    )
    fake_telegram.user_says("привет")
    empty = await http.post(f"{URL}/sendMessage", json={"chat_id": DEFAULT_USER_ID, "text": " "})
    assert empty.json()["description"] == "Bad Request: message text is empty"
    button = {"text": "x", "callback_data": "я" * 33}  # 66 bytes of UTF-8
    too_long = await http.post(
        f"{URL}/sendMessage",
        json={
            "chat_id": DEFAULT_USER_ID,
            "text": "t",
            "reply_markup": {"inline_keyboard": [[button]]},
        },
    )
    assert too_long.json()["description"] == "Bad Request: BUTTON_DATA_INVALID"


async def test_long_poll_waits_its_timeout_then_answers_empty(
    http: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    start = trio.current_time()
    reply = await get_updates(http, timeout=30)
    assert reply.json() == {"ok": True, "result": []}
    assert trio.current_time() - start == 30.0


async def test_long_poll_answers_as_soon_as_a_user_writes(
    http: httpx.AsyncClient, fake_telegram: FakeTelegram, autojump_clock: trio.testing.MockClock
) -> None:
    start = trio.current_time()
    result: list[dict[str, Any]] = []

    async def poll() -> None:
        result.extend((await get_updates(http, timeout=50)).json()["result"])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.sleep(12)
        update_id = fake_telegram.user_says("привет")
    assert trio.current_time() - start == 12.0
    assert [u["update_id"] for u in result] == [update_id]
    assert result[0]["message"]["text"] == "привет"


async def test_offset_confirms_and_limit_caps(
    http: httpx.AsyncClient, fake_telegram: FakeTelegram
) -> None:
    ids = [fake_telegram.user_says(f"m{n}") for n in range(5)]
    first = (await get_updates(http, limit=2)).json()["result"]
    assert [u["update_id"] for u in first] == ids[:2]
    rest = (await get_updates(http, offset=ids[2], limit=100)).json()["result"]
    assert [u["update_id"] for u in rest] == ids[2:]
    assert [u["update_id"] for u in fake_telegram.pending_updates] == ids[2:]


async def test_allowed_updates_are_recorded_and_filter(
    http: httpx.AsyncClient, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.add_raw_update({"poll": {"id": "p1"}})
    said = fake_telegram.user_says("привет")
    reply = await get_updates(http, allowed_updates=["message", "callback_query"])
    assert [u["update_id"] for u in reply.json()["result"]] == [said]
    assert fake_telegram.allowed_updates == ["message", "callback_query"]


async def test_a_second_poller_terminates_the_first_with_409(
    http: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    replies: list[httpx.Response] = []

    async def poll() -> None:
        replies.append(await get_updates(http, timeout=50))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.sleep(1)
        nursery.start_soon(poll)
    assert [r.status_code for r in replies] == [409, 200]
    assert replies[0].json()["description"] == CONFLICT_OTHER_POLL


async def test_webhook_blocks_polling_until_deleted(
    http: httpx.AsyncClient, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.webhook_url = "https://example.org/hook"
    refused = await get_updates(http)
    assert (refused.status_code, refused.json()["description"]) == (409, CONFLICT_WEBHOOK)
    assert (await http.post(f"{URL}/deleteWebhook")).json() == {"ok": True, "result": True}
    assert (await get_updates(http)).status_code == 200


async def test_blocking_the_bot_gives_403_and_a_my_chat_member_update(
    http: httpx.AsyncClient, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.user_says("привет")
    update_id = fake_telegram.user_blocks_bot(DEFAULT_USER_ID)
    sent = await http.post(f"{URL}/sendMessage", json={"chat_id": DEFAULT_USER_ID, "text": "hi"})
    assert (sent.status_code, sent.json()["description"]) == (
        403,
        "Forbidden: bot was blocked by the user",
    )
    raw = fake_telegram.pending_updates[-1]
    update = Update.model_validate(raw)
    assert update.update_id == update_id
    assert update.my_chat_member is not None
    assert update.my_chat_member.new_chat_member.status == "kicked"


async def test_faults_502_is_an_html_page_and_latency_takes_time(
    http: httpx.AsyncClient, fake_telegram: FakeTelegram, autojump_clock: trio.testing.MockClock
) -> None:
    fake_telegram.fail_next("getMe", 502, "Bad Gateway")
    fake_telegram.latency_s["getMe"] = 2.5
    start = trio.current_time()
    page = await http.post(f"{URL}/getMe")
    assert page.status_code == 502
    assert page.headers["content-type"] == "text/html"
    assert page.text.startswith("<html>")
    assert (await http.post(f"{URL}/getMe")).json()["ok"] is True
    assert trio.current_time() - start == 5.0


async def test_press_on_a_vanished_message_is_an_inaccessible_message(
    http: httpx.AsyncClient, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.user_says("привет")
    query_id = fake_telegram.user_presses(77, "img:77")
    raw = fake_telegram.pending_updates[-1]["callback_query"]
    query = CallbackQuery.model_validate(raw)
    assert query.id == query_id
    assert query.message is not None
    assert query.message.is_accessible is False
    assert query.message.chat.id == DEFAULT_USER_ID


async def test_wait_for_gives_up_after_its_timeout(
    fake_telegram: FakeTelegram, autojump_clock: trio.testing.MockClock
) -> None:
    start = trio.current_time()
    with pytest.raises(trio.TooSlowError):
        await fake_telegram.wait_for(lambda: bool(fake_telegram.sent), timeout_s=3)
    assert trio.current_time() - start == 3.0


# The loopback server: real sockets, real clock.

REAL_TIME_GUARD_S = 10


async def test_loopback_serves_the_fake_to_a_real_client(nursery: trio.Nursery) -> None:
    fake = FakeTelegram()
    connections: list[int] = []

    async def recording(request: httpx.Request) -> httpx.Response:
        connections.append(request.extensions["loopback_connection"])
        return await fake.handler(request)

    with trio.fail_after(REAL_TIME_GUARD_S):
        port = await nursery.start(serve_handler, recording)
        async with httpx.AsyncClient() as http:
            api = TelegramApi(http, SecretStr(fake.token), base_url=f"http://127.0.0.1:{port}")
            me = await api.get_me()
            fake.user_says("привет")
            photo = await api.send_photo(DEFAULT_USER_ID, b"\x89PNG" + bytes(300_000))
            text = await api.send_message(DEFAULT_USER_ID, "ответ")
    assert me.is_bot
    assert photo.photo is not None
    assert fake.sent[0].content == b"\x89PNG" + bytes(300_000)
    assert text.message_id == 3
    assert connections == [1, 1, 1]  # one kept-alive connection


async def test_loopback_reads_chunked_and_sized_bodies(nursery: trio.Nursery) -> None:
    bodies: list[tuple[str | None, bytes]] = []

    def echo(request: httpx.Request) -> httpx.Response:
        bodies.append((request.headers.get("transfer-encoding"), request.content))
        return httpx.Response(200, json={"size": len(request.content)})

    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"alpha-", b"beta-", b"gamma"):
            yield part

    with trio.fail_after(REAL_TIME_GUARD_S):
        port = await nursery.start(serve_handler, echo)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            chunked = await http.post("/upload", content=chunks())
            sized = await http.post("/upload", content=b"0123456789")
    assert json.loads(chunked.content) == {"size": 16}
    assert sized.json() == {"size": 10}
    assert bodies == [("chunked", b"alpha-beta-gamma"), (None, b"0123456789")]


async def test_loopback_drops_the_connection_for_a_network_fault(nursery: trio.Nursery) -> None:
    fake = FakeTelegram()
    fake.network_error_next("getMe")
    with trio.fail_after(REAL_TIME_GUARD_S):
        port = await nursery.start(serve_handler, fake.handler)
        async with httpx.AsyncClient() as http:
            api = TelegramApi(
                http, SecretStr(fake.token), base_url=f"http://127.0.0.1:{port}", max_attempts=1
            )
            with pytest.raises(TelegramNetworkError, match=r"^getMe: RemoteProtocolError"):
                await api.get_me()
            assert (await api.get_me()).is_bot
