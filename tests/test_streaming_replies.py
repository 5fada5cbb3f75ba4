"""Persona replies that grow on the screen: a streaming LLM, sendMessageDraft in private
chats, and the quiet fallbacks (a Bot API without drafts, an LLM that does not stream)."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from bot.chat.drafts import DRAFT_INTERVAL_S
from bot.core.llm import EventStream, LlmError
from bot.core.texts import t
from tests.fakes.comfy import FakeComfy
from tests.fakes.telegram import DEFAULT_USER_ID, FakeTelegram
from tests.harness import start_bot
from tests.test_bot_chat import llm_answer

PIECES = ("Привет! ", "Я только ", "что вернулась ", "с моря, ", "а ты?")
PIECE_S = 0.4  # between the LLM's pieces


def sse(payload: object) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


async def streamed(pieces: tuple[str, ...] = PIECES) -> AsyncIterator[bytes]:
    yield b": keep-alive\n\n"
    for piece in pieces:
        await trio.sleep(PIECE_S)
        chunk = {"object": "chat.completion.chunk", "choices": [{"delta": {"content": piece}}]}
        event = sse(chunk)
        yield event[:7]  # a line cut between two reads
        yield event[7:]
    yield b"data: [DONE]\n\n"


class StreamingLlm:
    """An OpenAI-compatible server that streams when asked to."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        if not body.get("stream"):
            return llm_answer("".join(PIECES))
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=streamed()
        )


async def test_a_private_chat_sees_the_reply_grow_then_gets_it_with_its_button(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    llm = StreamingLlm()
    bot = await start_bot(nursery, tmp_path, fake_telegram, llm=llm, comfy=fake_comfy)
    asked = trio.current_time()
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    [reply] = fake_telegram.sent
    assert reply.text == "".join(PIECES).strip()
    assert reply.buttons() == [(t("look_button", "ru"), "look")]
    drafts = fake_telegram.drafts
    assert llm.bodies[0]["stream"] is True
    assert {d.draft_id for d in drafts} != {0}
    assert len({d.draft_id for d in drafts}) == 1  # one draft, animated
    assert drafts[0].text == PIECES[0]  # the first piece as soon as it came
    assert drafts[0].at - asked == pytest.approx(PIECE_S)
    # At most one a second: the pieces come every 0.4 s, the drafts every second.
    assert [d.text for d in drafts] == ["Привет! ", "Привет! Я только что вернулась "]
    assert all(b.at - a.at >= DRAFT_INTERVAL_S - 1e-9 for a, b in itertools.pairwise(drafts))
    assert [len(d.text) for d in drafts] == sorted(len(d.text) for d in drafts)  # it grows
    assert drafts[-1].at < reply.at  # shown before the reply was complete
    await bot.stop()


async def test_a_group_gets_no_drafts(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    llm = StreamingLlm()
    bot = await start_bot(nursery, tmp_path, fake_telegram, llm=llm)
    fake_telegram.user_says("привет всем", chat_id=-100123, chat_type="supergroup")
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 2)
    assert {d.chat_id for d in fake_telegram.drafts} == {DEFAULT_USER_ID}
    await bot.stop()


async def test_a_bot_api_without_drafts_is_tried_once_and_logged_once(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    autojump_clock: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    fake_telegram.drafts_supported = False
    bot = await start_bot(nursery, tmp_path, fake_telegram, llm=StreamingLlm())
    for n in range(2):
        fake_telegram.user_says(f"привет {n}")
        await fake_telegram.wait_for(lambda n=n: len(fake_telegram.sent) == n + 1)
    tries = [r for r in fake_telegram.requests if r.method == "sendMessageDraft"]
    assert len(tries) == 1
    assert [r.getMessage() for r in caplog.records].count("telegram_drafts_unsupported") == 1
    assert fake_telegram.sent[-1].text == "".join(PIECES).strip()  # replies as before
    await bot.stop()


async def test_an_llm_that_does_not_stream_is_asked_once_and_logged_once(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    autojump_clock: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    bodies: list[dict[str, object]] = []

    async def plain(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return llm_answer("Привет!")

    bot = await start_bot(nursery, tmp_path, fake_telegram, llm=plain)
    for n in range(2):
        fake_telegram.user_says(f"привет {n}")
        await fake_telegram.wait_for(lambda n=n: len(fake_telegram.sent) == n + 1)
    assert [body.get("stream") for body in bodies] == [True, None]
    assert [r.getMessage() for r in caplog.records].count("llm_streaming_unsupported") == 1
    assert fake_telegram.drafts == []
    assert [s.text for s in fake_telegram.sent] == ["Привет!", "Привет!"]
    await bot.stop()


def test_the_event_stream_reader_keeps_cut_lines_and_skips_comments() -> None:
    events = EventStream(limit=100)
    assert events.feed(b": ping\n\nda") == []
    assert events.feed(b'ta: {"a": 1}\n') == ['{"a": 1}']
    assert events.feed(b"\ndata: [DONE]\n\n") == ["[DONE]"]
    with pytest.raises(LlmError, match="cap of 100 bytes"):
        events.feed(b"x" * 100)


@pytest.mark.parametrize("ending", ["error event", "connection lost"])
async def test_a_stream_that_breaks_off_ends_in_the_fallback_line_not_half_a_reply(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    autojump_clock: object,
    ending: str,
) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield sse({"choices": [{"delta": {"content": "Привет! Я "}}]})
        await trio.sleep(PIECE_S)
        if ending == "error event":
            yield sse({"error": {"message": "model overloaded"}})
        else:
            raise httpx.ReadError("connection reset by peer")

    async def llm(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=broken())

    bot = await start_bot(nursery, tmp_path, fake_telegram, llm=llm)
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    assert [d.text for d in fake_telegram.drafts] == ["Привет! Я "]  # shown while it lasted
    assert fake_telegram.sent[0].text == t("llm_fallback_feminine", "ru")  # Alice
    await bot.stop()
