"""Secrets never leave the process: every form of the token and the LLM key, on every path
output takes (log lines and tracebacks, client errors, doctor, stats, /stats)."""

from __future__ import annotations

import argparse
import io
import json
import logging
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr

from bot.core.commands import AdminCmd, Context
from bot.core.deps import Deps
from bot.core.llm import QUOTED_BODY_CHARS, ChatCompletions, LlmError
from bot.core.logs import setup_logging
from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS, Settings, load_settings
from bot.ops import doctor
from bot.ops.doctor import Check, doctor_main
from bot.ops.stats import handle_stats, stats_main
from bot.telegram.client import TelegramApi
from bot.telegram.errors import TelegramBadRequest, TelegramServerError, parse_response
from bot.telegram.redact import REDACTED, Redactor, redact_token, secret_forms
from store import EventRecord, open_store
from tests.fakes.telegram import FakeTelegram

TOKEN = "7412589630:AAH-secretHalfOfTheToken_0123456789xyz"
SECRET_HALF = TOKEN.split(":", 1)[1]
LLM_KEY = "sk-live/key+with=odd:chars_0123456789"


def every_form(secret: str) -> list[str]:
    """How a secret shows up in the wild: as is, URL-encoded, fully encoded, twice."""
    fully = "".join(f"%{byte:02X}" for byte in secret.encode())
    return [
        secret,
        quote(secret, safe=""),
        quote(secret, safe="").replace("%3A", "%3a").replace("%2F", "%2f"),
        fully,
        fully.lower(),
        quote(quote(secret, safe=""), safe=""),
    ]


def leaks(text: str) -> list[str]:
    """The secret parts still readable in *text*."""
    return [
        part
        for part in (SECRET_HALF, "secretHalfOfTheToken", "key+with", "key%2Bwith")
        if part in text
    ]


@pytest.mark.parametrize("form", every_form(TOKEN) + every_form(SECRET_HALF) + every_form(LLM_KEY))
def test_the_redactor_hides_every_form_of_a_known_secret(form: str) -> None:
    redact = Redactor([TOKEN, LLM_KEY])
    text = f"GET /bot/{form}/getMe failed: <html>{form}</html>"
    assert redact(text) == f"GET /bot/{REDACTED}/getMe failed: <html>{REDACTED}</html>"


@pytest.mark.parametrize(
    "shape",
    [
        "111222333:AAbbCCddEEffGGhhIIjjKKll",
        "111222333%3AAAbbCCddEEffGGhhIIjjKKll",
        "111222333%3aAAbbCCddEEffGGhhIIjjKKll",
        "111222333%253AAAbbCCddEEffGGhhIIjjKKll",
    ],
)
def test_anything_shaped_like_a_token_is_hidden_without_being_told(shape: str) -> None:
    assert redact_token(f"proxy echoed /bot{shape}/getMe") == f"proxy echoed /bot{REDACTED}/getMe"


def test_the_whole_token_wins_over_its_half_and_ordinary_text_is_untouched() -> None:
    redact = Redactor([TOKEN, None, ""])
    assert redact(f"a {TOKEN} b {SECRET_HALF} c") == f"a {REDACTED} b {REDACTED} c"
    assert redact("12:30 the id 7412589630 alone is not a secret") == (
        "12:30 the id 7412589630 alone is not a secret"
    )


def test_values_too_short_to_be_secrets_are_not_hunted_in_every_word() -> None:
    assert secret_forms("abc") == frozenset()
    assert Redactor(["abc"])("abc abc") == "abc abc"


# Logs: the formatter, tracebacks included, plain and JSON.


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logging")
@pytest.mark.parametrize("json_lines", [False, True])
def test_log_lines_and_tracebacks_hide_the_half_token_encoded_forms_and_the_llm_key(
    json_lines: bool,
) -> None:
    stream = io.StringIO()
    setup_logging(level="DEBUG", json_lines=json_lines, secrets=[TOKEN, LLM_KEY], stream=stream)
    log = logging.getLogger("bot.test")
    log.warning("retry: proxy said 'no route to /bot%s/getMe'", quote(TOKEN, safe=""))
    log.warning("a page quoting only the secret %s", SECRET_HALF)
    try:
        raise RuntimeError(f"401 from the LLM: invalid key {LLM_KEY}")
    except RuntimeError:
        log.exception("llm failed")
    text = stream.getvalue()
    assert leaks(text) == []
    assert LLM_KEY not in text
    assert text.count(REDACTED) == 3
    assert "RuntimeError" in text


# The clients build their errors from what servers sent.


async def test_a_proxy_page_echoing_the_encoded_path_leaves_no_secret_in_errors_or_retry_lines(
    autojump_clock: object, restore_root_logging: None
) -> None:
    stream = io.StringIO()
    setup_logging(level="DEBUG", stream=stream)  # no secrets given: the client hides them itself

    async def proxy(request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode().replace(":", "%3A")
        page = f"<html>502 Bad Gateway: {path} (secret {SECRET_HALF})</html>"
        return httpx.Response(502, text=page)

    async with httpx.AsyncClient(transport=httpx.MockTransport(proxy)) as http:
        api = TelegramApi(http, SecretStr(TOKEN), rng=random.Random(1))
        with pytest.raises(TelegramServerError) as caught:
            await api.get_me()
    assert leaks(str(caught.value)) == []
    assert "telegram_retry" in stream.getvalue()
    assert leaks(stream.getvalue()) == []


def test_parse_response_hides_the_secret_half_of_its_token_in_descriptions() -> None:
    body = json.dumps({"ok": False, "error_code": 400, "description": f"bad {SECRET_HALF}"})
    with pytest.raises(TelegramBadRequest) as caught:
        parse_response("getMe", 400, body.encode(), token=TOKEN)
    assert str(caught.value) == f"getMe: bad {REDACTED} (error 400)"


@pytest.mark.parametrize("status", [401, 200])
async def test_an_llm_server_echoing_its_key_never_puts_it_in_the_error(
    status: int, autojump_clock: object
) -> None:
    # The key straddles the point where the quoted body is cut: no part of it survives.
    padding = "x" * (QUOTED_BODY_CHARS - 10)

    async def llm(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text=f"{padding}{LLM_KEY} is not a valid key")

    async with httpx.AsyncClient(transport=httpx.MockTransport(llm)) as http:
        client = ChatCompletions(
            http, base_url="http://llm.test/v1", model="m", api_key=SecretStr(LLM_KEY)
        )
        with pytest.raises(LlmError) as caught:
            await client.complete([{"role": "user", "content": "hi"}], max_tokens=5)
    assert LLM_KEY[:8] not in caught.value.detail
    assert REDACTED[:8] in caught.value.detail


# Doctor, stats and /stats print what they read; what they print is hidden too.


def write_env(folder: Path, **values: str) -> None:
    lines = [f"{name}={value}" for name, value in values.items()]
    (folder / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_doctor_prints_no_secret_even_when_a_check_quotes_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("TELEGRAM_BOT_TOKEN", "LLM_API_KEY", "LLM_BASE_URL", "DATABASE_PATH"):
        monkeypatch.delenv(name, raising=False)
    write_env(tmp_path, TELEGRAM_BOT_TOKEN=TOKEN, LLM_API_KEY=LLM_KEY)

    async def checks_quoting_secrets(settings: Settings) -> list[Check]:
        return [
            Check("telegram", False, f"proxy page: /bot{quote(TOKEN, safe='')}/getMe"),
            Check("llm", False, f"HTTP 401: 'invalid api key {LLM_KEY}'"),
            Check("database", True, f"half {SECRET_HALF}"),
        ]

    monkeypatch.setattr(doctor, "run_checks", checks_quoting_secrets)
    assert doctor_main() == 1
    out = capsys.readouterr().out
    assert out.splitlines()[1:] == [
        f"✗ telegram: proxy page: /bot{REDACTED}/getMe",
        f"✗ llm: HTTP 401: 'invalid api key {REDACTED}'",
        f"✓ database: half {REDACTED}",
    ]


def test_stats_output_hides_the_configured_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("TELEGRAM_BOT_TOKEN", "LLM_API_KEY", "DATABASE_PATH"):
        monkeypatch.delenv(name, raising=False)
    database = tmp_path / "bot.db"
    write_env(tmp_path, DATABASE_PATH=str(database), LLM_API_KEY=LLM_KEY)
    with open_store(database) as store:
        # A persona key is operator data; here it happens to hold the key.
        store.events.add(EventRecord(ts=_now(), event="image_requested", persona=LLM_KEY))
    args = argparse.Namespace(since="7d", json=True, database=None)
    assert stats_main(args, now=_now) == 0
    out = capsys.readouterr().out
    assert LLM_KEY not in out
    assert REDACTED in out


def _now() -> datetime:
    return datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


async def test_the_admins_stats_message_hides_the_configured_secrets(
    fake_telegram: FakeTelegram, telegram_api: TelegramApi
) -> None:
    with open_store(":memory:") as store:
        store.events.add(EventRecord(ts=_now(), event="image_requested", persona=LLM_KEY))
        deps = Deps(
            api=telegram_api,
            store=store,
            personas=load_personas(SHIPPED_PERSONAS),
            settings=load_settings(
                env_file=None, telegram_bot_token=TOKEN, llm_api_key=LLM_KEY, admin_user_ids="42"
            ),
            llm=None,
            rng=random.Random(1),
            now=_now,
        )
        fake_telegram.user_says("x", user_id=42)
        ctx = Context(
            chat_id=42,
            chat_type="private",
            user_id=42,
            first_name="A",
            language_code="en",
            update_id=1,
        )
        await handle_stats(deps, AdminCmd(ctx=ctx, name="stats", args=()))
    (text,) = fake_telegram.texts_to(42)
    assert LLM_KEY not in text
    assert REDACTED in text


def test_settings_name_their_secrets() -> None:
    settings = load_settings(env_file=None, telegram_bot_token=TOKEN, llm_api_key=LLM_KEY)
    assert sorted(settings.secrets()) == sorted([TOKEN, LLM_KEY])
    assert load_settings(env_file=None, require_token=False).secrets() == ()


@pytest.mark.usefixtures("restore_root_logging")
def test_a_traceback_nothing_caught_goes_through_the_redacting_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    stream = io.StringIO()
    setup_logging(secrets=[TOKEN, LLM_KEY], stream=stream)
    try:
        raise ValueError(f"proxy said /bot{quote(TOKEN, safe='')}/getMe with key {LLM_KEY}")
    except ValueError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    text = stream.getvalue()
    assert "bot_uncaught_exception" in text
    assert "Traceback (most recent call last)" in text
    assert leaks(text) == []
    assert LLM_KEY not in text
