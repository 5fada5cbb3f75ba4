"""TelegramApi against the fake Bot API: typed round trips, error mapping, retries, no token."""

from __future__ import annotations

import json
import logging
import random
import traceback

import httpx
import pytest
import trio
from pydantic import SecretStr

from bot.core.logs import plain_fields
from bot.telegram.client import DEFAULT_MAX_ATTEMPTS, TelegramApi
from bot.telegram.errors import (
    TelegramBadRequest,
    TelegramConflict,
    TelegramError,
    TelegramForbidden,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorized,
    parse_response,
)
from bot.telegram.types import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup
from common.backoff import backoff_delays
from tests.fakes.telegram import (
    BOT_USER_ID,
    DEFAULT_USER_ID,
    FAKE_BASE_URL,
    FakeTelegram,
    UploadedFile,
)
from tests.fakes.telegram_fixtures import API_SEED

CHAT = DEFAULT_USER_ID
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4 + b"\r\n--not-a-boundary\r\n"
LOOK = InlineKeyboardMarkup(
    inline_keyboard=[[InlineKeyboardButton(text="👁️ Посмотреть", callback_data="img:1")]]
)


def envelope(body: object) -> bytes:
    return json.dumps(body).encode()


# The envelope, sync.


def test_ok_envelope_gives_the_result() -> None:
    assert parse_response("getMe", 200, envelope({"ok": True, "result": {"id": 1}})) == {"id": 1}


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        (400, TelegramBadRequest),
        (401, TelegramUnauthorized),
        (403, TelegramForbidden),
        (404, TelegramError),
        (409, TelegramConflict),
        (429, TelegramRetryAfter),
        (500, TelegramServerError),
        (502, TelegramServerError),
    ],
)
def test_error_code_picks_the_error_type(code: int, error_type: type[TelegramError]) -> None:
    body = envelope({"ok": False, "error_code": code, "description": "Something: went wrong"})
    with pytest.raises(error_type) as caught:
        parse_response("sendMessage", code, body)
    assert type(caught.value) is error_type
    assert caught.value.method == "sendMessage"
    assert caught.value.error_code == code
    assert caught.value.description == "Something: went wrong"


def test_429_carries_retry_after_from_parameters() -> None:
    body = envelope(
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 7",
            "parameters": {"retry_after": 7},
        }
    )
    with pytest.raises(TelegramRetryAfter) as caught:
        parse_response("sendMessage", 429, body)
    assert caught.value.retry_after == 7
    assert str(caught.value) == (
        "sendMessage: Too Many Requests: retry after 7; retry after 7 s (error 429)"
    )


def test_group_migration_carries_the_new_chat_id() -> None:
    body = envelope(
        {
            "ok": False,
            "error_code": 400,
            "description": "Bad Request: group chat was upgraded to a supergroup chat",
            "parameters": {"migrate_to_chat_id": -1001234567890},
        }
    )
    with pytest.raises(TelegramBadRequest) as caught:
        parse_response("sendMessage", 400, body)
    assert caught.value.migrate_to_chat_id == -1001234567890


@pytest.mark.parametrize(
    "content",
    [b"<html>502 Bad Gateway</html>", b"", b"\xff\xfe", b"[1, 2]", b'{"result": 1}'],
)
def test_a_reply_that_is_not_the_envelope_is_a_server_error(content: bytes) -> None:
    with pytest.raises(TelegramServerError, match=r"^sendPhoto: reply is not a Bot API envelope"):
        parse_response("sendPhoto", 502, content)


def test_401_tells_the_operator_which_setting_to_check() -> None:
    body = envelope({"ok": False, "error_code": 401, "description": "Unauthorized"})
    with pytest.raises(TelegramUnauthorized) as caught:
        parse_response("getMe", 401, body)
    assert str(caught.value) == "getMe: Unauthorized; check TELEGRAM_BOT_TOKEN (error 401)"


# Typed methods round-trip with the fake.


async def test_get_me_returns_the_bot(telegram_api: TelegramApi) -> None:
    me = await telegram_api.get_me()
    assert (me.id, me.is_bot, me.username) == (BOT_USER_ID, True, "persona_test_bot")


async def test_send_message_replies_with_a_keyboard(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.user_says("привет")
    sent = await telegram_api.send_message(
        CHAT, "Привет! Чем займёмся?", reply_markup=LOOK, reply_to_message_id=1
    )
    assert (sent.chat.id, sent.message_id, sent.text) == (CHAT, 2, "Привет! Чем займёмся?")
    assert sent.reply_markup == LOOK
    assert sent.reply_to_message is not None
    assert sent.reply_to_message.text == "привет"
    record = fake_telegram.sent[0]
    assert (record.kind, record.reply_to_message_id) == ("message", 1)
    assert record.buttons() == [("👁️ Посмотреть", "img:1")]
    request = fake_telegram.requests[-1]
    assert request.content_type == "application/json"
    assert request.params["reply_parameters"] == {
        "message_id": 1,
        "allow_sending_without_reply": True,
    }
    assert "parse_mode" not in request.params
    assert "disable_notification" not in request.params


async def test_send_message_to_a_deleted_message_still_arrives(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.user_says("привет")
    sent = await telegram_api.send_message(
        CHAT, "ответ", reply_to_message_id=99, disable_notification=True
    )
    assert sent.reply_to_message is None
    assert fake_telegram.sent[0].disable_notification is True


async def test_answer_callback_query_once(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.user_says("привет")
    await telegram_api.send_message(CHAT, "ответ", reply_markup=LOOK)
    query_id = fake_telegram.user_presses(2, "img:1")
    assert await telegram_api.answer_callback_query(query_id, text="Рисую…") is True
    answer = fake_telegram.callback_answers[query_id]
    assert (answer.text, answer.show_alert) == ("Рисую…", False)
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await telegram_api.answer_callback_query(query_id)
    assert fake_telegram.calls.count("answerCallbackQuery") == 2


async def test_send_chat_action_defaults_to_upload_photo(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.user_says("привет")
    assert await telegram_api.send_chat_action(CHAT) is True
    assert [(a.chat_id, a.action) for a in fake_telegram.chat_actions] == [(CHAT, "upload_photo")]


async def test_edit_message_text_to_the_same_text_counts_as_done(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.user_says("привет")
    sent = await telegram_api.send_message(CHAT, "черновик")
    await telegram_api.edit_message_text(CHAT, sent.message_id, "готово", reply_markup=LOOK)
    await telegram_api.edit_message_text(CHAT, sent.message_id, "готово", reply_markup=LOOK)
    assert [(e.message_id, e.text) for e in fake_telegram.edits] == [(sent.message_id, "готово")]
    assert fake_telegram.calls.count("editMessageText") == 2
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await telegram_api.edit_message_text(CHAT, 1, "not ours")


async def test_edit_message_reply_markup_removes_the_keyboard(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.user_says("привет")
    sent = await telegram_api.send_message(CHAT, "ответ", reply_markup=LOOK)
    await telegram_api.edit_message_reply_markup(CHAT, sent.message_id)
    shown = fake_telegram.message(CHAT, sent.message_id)
    assert shown is not None
    assert "reply_markup" not in shown
    assert shown["text"] == "ответ"


async def test_delete_message(telegram_api: TelegramApi, fake_telegram: FakeTelegram) -> None:
    fake_telegram.user_says("привет")
    sent = await telegram_api.send_message(CHAT, "ответ")
    assert await telegram_api.delete_message(CHAT, sent.message_id) is True
    assert fake_telegram.deleted == [(CHAT, sent.message_id)]
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await telegram_api.delete_message(CHAT, sent.message_id)


async def test_set_my_commands_per_language(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram
) -> None:
    commands = [
        BotCommand(command="start", description="Начать"),
        BotCommand(command="help", description="Помощь"),
    ]
    assert await telegram_api.set_my_commands(commands) is True
    english = [BotCommand(command="start", description="Start")]
    assert await telegram_api.set_my_commands(english, language_code="en") is True
    assert fake_telegram.commands == {
        "": [
            {"command": "start", "description": "Начать"},
            {"command": "help", "description": "Помощь"},
        ],
        "en": [{"command": "start", "description": "Start"}],
    }


async def test_webhook_info_and_delete(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.webhook_url = "https://example.org/hook"
    info = await telegram_api.get_webhook_info()
    assert info.url == "https://example.org/hook"
    assert await telegram_api.delete_webhook(drop_pending_updates=False) is True
    assert (await telegram_api.get_webhook_info()).url == ""


async def test_send_photo_uploads_multipart_with_json_string_fields(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.user_says("привет")
    text = await telegram_api.send_message(CHAT, "ответ", reply_markup=LOOK)
    sent = await telegram_api.send_photo(
        CHAT, PNG, reply_to_message_id=text.message_id, caption="вот", reply_markup=LOOK
    )
    request = fake_telegram.requests[-1]
    assert request.content_type == "multipart/form-data"
    assert request.params["photo"] == UploadedFile("image.png", PNG, "image/png")
    assert json.loads(request.params["reply_parameters"]) == {
        "message_id": text.message_id,
        "allow_sending_without_reply": True,
    }
    assert json.loads(request.params["reply_markup"]) == LOOK.model_dump(exclude_none=True)
    assert request.params["chat_id"] == str(CHAT)
    assert request.read_timeout == 60.0
    assert sent.photo is not None
    record = fake_telegram.sent[-1]
    assert (record.kind, record.content, record.caption) == ("photo", PNG, "вот")
    assert record.file_id == sent.photo[-1].file_id
    assert record.reply_to_message_id == text.message_id


async def test_send_photo_by_file_id_resends_without_upload(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.user_says("привет")
    first = await telegram_api.send_photo(CHAT, PNG)
    assert first.photo is not None
    again = await telegram_api.send_photo(CHAT, first.photo[-1].file_id)
    assert again.photo is not None
    assert again.photo[-1].file_id == first.photo[-1].file_id
    assert fake_telegram.requests[-1].content_type == "application/json"
    assert (fake_telegram.sent[-1].content, fake_telegram.sent[-1].file_id) == (
        None,
        first.photo[-1].file_id,
    )
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await telegram_api.send_photo(CHAT, "no-such-file-id")


async def test_refused_photo_goes_as_a_document(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.user_says("привет")
    fake_telegram.refuse_photos = "Bad Request: PHOTO_INVALID_DIMENSIONS"
    with pytest.raises(TelegramBadRequest, match="PHOTO_INVALID_DIMENSIONS"):
        await telegram_api.send_photo(CHAT, PNG)
    sent = await telegram_api.send_document(CHAT, PNG, filename="scene.png", caption="вот")
    assert sent.document is not None
    assert sent.document.file_name == "scene.png"
    assert [(s.kind, s.content) for s in fake_telegram.sent] == [("document", PNG)]
    assert fake_telegram.calls.count("sendPhoto") == 1


# Retries, with exact virtual times.


async def test_429_waits_exactly_retry_after(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: trio.testing.MockClock
) -> None:
    fake_telegram.user_says("привет")
    fake_telegram.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
    start = trio.current_time()
    await telegram_api.send_message(CHAT, "ответ")
    times = [r.at - start for r in fake_telegram.requests if r.method == "sendMessage"]
    assert times == [0.0, 7.0]
    assert len(fake_telegram.sent) == 1


async def test_5xx_backs_off_with_seeded_jitter_then_succeeds(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: trio.testing.MockClock
) -> None:
    fake_telegram.user_says("привет")
    fake_telegram.fail_next("sendMessage", 500, "Internal Server Error")
    fake_telegram.fail_next("sendMessage", 502, "Bad Gateway")  # an nginx HTML page
    start = trio.current_time()
    await telegram_api.send_message(CHAT, "ответ")
    expected = backoff_delays(rng=random.Random(API_SEED))
    first, second = next(expected), next(expected)
    times = [r.at - start for r in fake_telegram.requests if r.method == "sendMessage"]
    assert times == pytest.approx([0.0, first, first + second], abs=1e-9)
    assert len(fake_telegram.sent) == 1


async def test_each_retry_is_one_warning_line(
    telegram_api: TelegramApi,
    fake_telegram: FakeTelegram,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_telegram.user_says("привет")
    fake_telegram.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
    with caplog.at_level(logging.WARNING, logger="bot.telegram.client"):
        await telegram_api.send_message(CHAT, "ответ")
    lines = [
        r.getMessage() + plain_fields(r) for r in caplog.records if r.name == "bot.telegram.client"
    ]
    assert len(lines) == 1
    assert lines[0].startswith(
        "telegram_retry method=sendMessage failures=0/5 rate_limited=1 delay_s=3.0 "
    )
    assert "\n" not in lines[0]


async def test_server_errors_give_up_after_max_attempts(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: trio.testing.MockClock
) -> None:
    fake_telegram.fail_next("getMe", 500, "Internal Server Error", times=DEFAULT_MAX_ATTEMPTS + 1)
    with pytest.raises(TelegramServerError, match=r"^getMe: Internal Server Error \(error 500\)$"):
        await telegram_api.get_me()
    assert fake_telegram.calls.count("getMe") == DEFAULT_MAX_ATTEMPTS


async def test_429_gives_up_after_its_own_budget_of_waits(
    fake_telegram: FakeTelegram, autojump_clock: trio.testing.MockClock
) -> None:
    fake_telegram.fail_next("getMe", 429, "Too Many Requests", retry_after=2, times=5)
    transport = httpx.MockTransport(fake_telegram.handler)
    async with httpx.AsyncClient(transport=transport) as http:
        api = TelegramApi(
            http,
            SecretStr(fake_telegram.token),
            base_url=FAKE_BASE_URL,
            max_attempts=1,  # network errors get one try; 429s still get their waits
            max_rate_limit_waits=3,
        )
        start = trio.current_time()
        with pytest.raises(TelegramRetryAfter) as caught:
            await api.get_me()
    assert caught.value.retry_after == 2
    assert trio.current_time() - start == 4.0
    assert fake_telegram.calls.count("getMe") == 3


@pytest.mark.parametrize(
    ("status", "description", "error_type"),
    [
        (400, "Bad Request: chat not found", TelegramBadRequest),
        (403, "Forbidden: user is deactivated", TelegramForbidden),
        (409, "Conflict: terminated by setWebhook request", TelegramConflict),
        (404, "Not Found", TelegramError),
    ],
)
async def test_other_4xx_raise_at_once_without_retry(
    telegram_api: TelegramApi,
    fake_telegram: FakeTelegram,
    status: int,
    description: str,
    error_type: type[TelegramError],
) -> None:
    fake_telegram.user_says("привет")
    fake_telegram.fail_next("sendMessage", status, description)
    with pytest.raises(error_type, match=description):
        await telegram_api.send_message(CHAT, "ответ")
    assert fake_telegram.calls.count("sendMessage") == 1


async def test_blocked_user_gives_forbidden(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.user_says("привет")
    fake_telegram.user_blocks_bot(CHAT)
    with pytest.raises(TelegramForbidden) as caught:
        await telegram_api.send_message(CHAT, "ответ")
    assert caught.value.description == "Forbidden: bot was blocked by the user"
    assert caught.value.error_code == 403
    assert fake_telegram.sent == []


async def test_network_error_is_retried_then_translated(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram, autojump_clock: trio.testing.MockClock
) -> None:
    fake_telegram.network_error_next("getMe")
    assert (await telegram_api.get_me()).id == BOT_USER_ID
    fake_telegram.network_error_next("getMe", times=DEFAULT_MAX_ATTEMPTS)
    with pytest.raises(TelegramNetworkError) as caught:
        await telegram_api.get_me()
    assert str(caught.value) == "getMe: ConnectError: [Errno 111] Connection refused"
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert fake_telegram.calls.count("getMe") == 1 + 1 + DEFAULT_MAX_ATTEMPTS


async def test_wrong_token_is_unauthorized(fake_telegram: FakeTelegram) -> None:
    transport = httpx.MockTransport(fake_telegram.handler)
    async with httpx.AsyncClient(transport=transport) as http:
        api = TelegramApi(http, SecretStr("999:not-the-right-token"), base_url=FAKE_BASE_URL)
        with pytest.raises(TelegramUnauthorized, match="check TELEGRAM_BOT_TOKEN"):
            await api.get_me()
    assert fake_telegram.calls == ["getMe"]


async def test_a_result_of_the_wrong_shape_is_a_server_error(
    telegram_api: TelegramApi, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.bot_user = {"id": "not a number"}
    with pytest.raises(TelegramServerError, match=r"^getMe: unexpected result shape"):
        await telegram_api.get_me()
    assert fake_telegram.calls == ["getMe"]


# The token never leaks.

SECRET = "123456:SECRET-TOKEN-do-not-log"


async def failures_of_every_kind(fake: FakeTelegram, api: TelegramApi) -> list[TelegramError]:
    fake.user_says("привет")
    fake.network_error_next("sendMessage", times=DEFAULT_MAX_ATTEMPTS)
    fake.fail_next("getMe", 500, "Internal Server Error", times=DEFAULT_MAX_ATTEMPTS)
    fake.fail_next("sendChatAction", 502, "Bad Gateway", times=DEFAULT_MAX_ATTEMPTS)
    fake.fail_next("getWebhookInfo", 429, "Too Many Requests", retry_after=1, times=30)
    fake.fail_next("deleteMessage", 400, "Bad Request: message can't be deleted")
    fake.user_blocks_bot(CHAT)
    calls = [
        api.send_message(CHAT, "a"),
        api.get_me(),
        api.send_chat_action(CHAT),
        api.get_webhook_info(),
        api.delete_message(CHAT, 1),
        api.send_photo(CHAT, PNG),
    ]
    errors = []
    for call in calls:
        with pytest.raises(TelegramError) as caught:
            await call
        errors.append(caught.value)
    return errors


async def test_the_token_appears_in_no_error_repr_traceback_or_log(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeTelegram(token=SECRET)

    async def leaky_proxy(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/setMyCommands"):  # a proxy page echoing the URL
            return httpx.Response(502, text=f"<pre>Cannot POST {request.url}</pre>")
        if request.url.path.endswith("/deleteWebhook"):  # a transport error naming the URL
            raise httpx.ConnectError(f"cannot reach {request.url}", request=request)
        return await fake.handler(request)

    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(transport=httpx.MockTransport(leaky_proxy)) as http:
        api = TelegramApi(http, SecretStr(SECRET), base_url=FAKE_BASE_URL, rng=random.Random(1))
        errors = await failures_of_every_kind(fake, api)
        for call in (api.set_my_commands([]), api.delete_webhook()):
            with pytest.raises(TelegramError) as caught:
                await call
            errors.append(caught.value)
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(FakeTelegram().handler)
        ) as other:
            wrong = TelegramApi(other, SecretStr(SECRET), base_url=FAKE_BASE_URL)
            with pytest.raises(TelegramUnauthorized) as caught_401:
                await wrong.get_me()
            errors.append(caught_401.value)
        texts = [repr(api), repr(wrong), caplog.text]
    kinds = {type(error) for error in errors}
    assert kinds == {
        TelegramNetworkError,
        TelegramServerError,
        TelegramRetryAfter,
        TelegramBadRequest,
        TelegramForbidden,
        TelegramUnauthorized,
    }
    for error in errors:
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    texts += [record.getMessage() for record in caplog.records]
    assert any(record.name == "httpx" for record in caplog.records)  # httpx did log URLs
    assert any("<redacted>" in text for text in texts)
    for text in texts:
        assert "SECRET-TOKEN" not in text
