"""The LLM's answer is read up to ``MAX_ANSWER_BYTES``; whatever the server sends ends as a
reply or an ``LlmError``, never as another exception."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import trio

from bot.core.llm import MAX_ANSWER_BYTES, ChatCompletions, LlmError
from bot.core.texts import t
from tests.fakes.telegram import FakeTelegram
from tests.harness import start_bot

CHUNK = 64 * 1024
MESSAGES = [{"role": "user", "content": "hi"}]


class Endless(httpx.AsyncByteStream):
    """A body that never ends; counts what was read of it."""

    def __init__(self) -> None:
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            self.sent += CHUNK
            yield b" " * CHUNK


def answer(text: str) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()


def llm_for(make: Callable[[], httpx.Response]) -> ChatCompletions:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: make()))
    return ChatCompletions(http, base_url="http://llm.test/v1", model="m")


async def test_an_endless_answer_is_read_only_up_to_the_cap() -> None:
    stream = Endless()
    llm = llm_for(lambda: httpx.Response(200, stream=stream))
    with pytest.raises(LlmError) as caught:
        await llm.complete(MESSAGES, max_tokens=10)
    assert caught.value.detail == (
        f"answer unreadable: body is over its cap of {MAX_ANSWER_BYTES} bytes"
    )
    assert MAX_ANSWER_BYTES < stream.sent <= MAX_ANSWER_BYTES + CHUNK


async def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    stream = Endless()
    headers = {"content-length": str(MAX_ANSWER_BYTES + 1)}
    llm = llm_for(lambda: httpx.Response(200, headers=headers, stream=stream))
    with pytest.raises(LlmError) as caught:
        await llm.complete(MESSAGES, max_tokens=10)
    assert caught.value.detail == (
        f"answer unreadable: body of {MAX_ANSWER_BYTES + 1} bytes (Content-Length) "
        f"is over its cap of {MAX_ANSWER_BYTES}"
    )
    assert stream.sent == 0


async def test_a_gzip_bomb_is_counted_after_decompression() -> None:
    bomb = gzip.compress(b" " * (MAX_ANSWER_BYTES + 1) + answer("hi"))
    headers = {"content-encoding": "gzip"}
    llm = llm_for(lambda: httpx.Response(200, headers=headers, stream=httpx.ByteStream(bomb)))
    with pytest.raises(LlmError, match="over its cap"):
        await llm.complete(MESSAGES, max_tokens=10)


async def test_a_gzipped_answer_within_the_cap_is_read() -> None:
    body = gzip.compress(answer("  привет  "))
    headers = {"content-encoding": "gzip", "content-type": "application/json"}
    llm = llm_for(lambda: httpx.Response(200, headers=headers, stream=httpx.ByteStream(body)))
    assert await llm.complete(MESSAGES, max_tokens=10) == "привет"


@pytest.mark.parametrize(
    ("make", "detail"),
    [
        (
            lambda: httpx.Response(
                200,
                headers={"content-encoding": "gzip"},
                stream=httpx.ByteStream(b"\x1f\x8b\x08 not gzip"),
            ),
            "answer unreadable: compressed body does not decompress: ",
        ),
        (
            lambda: httpx.Response(
                401, content=b"no key", headers={"content-type": "text/plain; charset=rot13"}
            ),
            "HTTP 401: 'no key'",
        ),
        (lambda: httpx.Response(200, content=b"\xff\xfe{"), "unexpected answer: '\ufffd\ufffd{'"),
        (lambda: httpx.Response(200, content=b"[" * 100_000), "unexpected answer: '[[["),
        (lambda: httpx.Response(200, html="<html>proxy</html>"), "unexpected answer: '<html>"),
        (lambda: httpx.Response(200, json={"choices": []}), "the answer has no text"),
    ],
    ids=["broken-gzip", "bogus-charset", "not-utf8", "deep-json", "html", "no-choices"],
)
async def test_whatever_the_server_sends_is_an_llm_error(
    make: Callable[[], httpx.Response], detail: str
) -> None:
    with pytest.raises(LlmError) as caught:
        await llm_for(make).complete(MESSAGES, max_tokens=10)
    assert caught.value.detail.startswith(detail)


async def test_an_endless_answer_gives_the_user_the_polite_fallback(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    answers = [httpx.Response(200, stream=Endless()), httpx.Response(200, content=answer("да"))]

    async def llm(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    bot = await start_bot(nursery, tmp_path, fake_telegram, llm=llm)
    fake_telegram.user_says("раз")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    assert fake_telegram.sent[0].text == t(
        "llm_fallback_feminine", "ru"
    )  # Алиса speaks of herself in the feminine
    fake_telegram.user_says("два")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 2)
    assert fake_telegram.sent[1].text == "да"
    await bot.stop()
