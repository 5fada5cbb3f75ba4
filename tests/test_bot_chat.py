"""The running bot, in-process: commands, persona replies, LLM, concurrency, restarts."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from bot.core.logs import setup_logging
from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS
from bot.core.texts import t
from tests.fakes.telegram import DEFAULT_USER_ID, TEST_TOKEN, FakeTelegram
from tests.harness import start_bot
from tests.rows import user_row

USER = DEFAULT_USER_ID
OTHER = 5_000_000_002


def llm_answer(text: str) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "c",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
        },
    )


async def test_text_gets_an_offline_persona_line_without_a_button_when_images_are_off(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    reply = fake_telegram.sent[0]
    assert reply.text in load_personas(SHIPPED_PERSONAS).get("alice").offline_lines
    assert reply.buttons() == []
    with bot.store() as store:
        stored = store.sent.get(chat_id=USER, message_id=reply.message_id)
    assert stored is not None
    assert stored.persona_key == "alice"
    await bot.stop()


async def test_start_offers_personas_and_a_choice_switches(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    fake_telegram.user_says("/start", first_name="Аня")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    greeting = fake_telegram.sent[0]
    assert "Аня" in (greeting.text or "")
    assert [data for _, data in greeting.buttons()] == [
        "persona:alice",
        "persona:max",
        "persona:vera",
    ]
    query = fake_telegram.user_presses(greeting.message_id, "persona:max")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 2)
    assert fake_telegram.callback_answers[query].text == t("persona_chosen", "ru", persona="Макс")
    assert "Макс" in (fake_telegram.sent[1].text or "")
    fake_telegram.user_says("как дела?")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 3)
    with bot.store() as store:
        assert user_row(store, USER).persona_key == "max"
        stored = store.sent.get(chat_id=USER, message_id=fake_telegram.sent[2].message_id)
        assert stored is not None
        assert stored.persona_key == "max"
    await bot.stop()


async def test_help_persona_and_english_users(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    fake_telegram.user_says("/help", language_code="en-GB")
    fake_telegram.user_says("/persona", language_code="en")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 2)
    assert fake_telegram.sent[0].text == t("help", "en")
    assert fake_telegram.sent[1].text == t("choose_persona", "en")
    # The picker in English, each persona with its short description.
    assert fake_telegram.sent[1].buttons() == [
        ("✅ Alice · A cheerful traveller", "persona:alice"),
        ("Max · A calm barista and photographer", "persona:max"),
        ("Vera · A dreamy painter", "persona:vera"),
    ]
    await bot.stop()


async def test_english_users_meet_the_persona_in_english_and_russian_users_in_russian(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    alice = load_personas(SHIPPED_PERSONAS).get("alice")
    assert alice.en is not None
    fake_telegram.user_says("/start alice", language_code="de")  # other languages: English
    fake_telegram.user_says("/start alice", user_id=5, language_code="ru-RU")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 2)
    by_chat = {s.chat_id: s.text for s in fake_telegram.sent}
    assert by_chat[DEFAULT_USER_ID] == alice.en.greeting
    assert by_chat[5] == alice.greeting
    fake_telegram.user_says("how are you?", language_code="en")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 3)
    assert fake_telegram.sent[-1].text in alice.en.offline_lines  # no LLM: an English line
    await bot.stop()


async def test_the_llm_gets_the_system_prompt_in_the_users_language(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    seen: list[str] = []

    async def llm(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content)["messages"][0]["content"])
        return llm_answer("Hello there!")

    bot = await start_bot(nursery, tmp_path, fake_telegram, llm=llm)
    fake_telegram.user_says("hi", language_code="en")
    fake_telegram.user_says("привет", user_id=5, language_code="ru")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 2)
    alice = load_personas(SHIPPED_PERSONAS).get("alice")
    assert alice.en is not None
    assert sorted(seen) == sorted([alice.en.system_prompt, alice.system_prompt])
    await bot.stop()


async def test_forged_callback_is_answered_and_ignored(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    fake_telegram.user_says("hi")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    forged = fake_telegram.user_presses(fake_telegram.sent[0].message_id, "'; drop table users")
    unknown = fake_telegram.user_presses(999, "persona:nobody")
    await fake_telegram.wait_for(
        lambda: (
            forged in fake_telegram.callback_answers and unknown in fake_telegram.callback_answers
        )
    )
    assert fake_telegram.callback_answers[forged].text == t("toast_stale", "ru")
    assert len(fake_telegram.sent) == 1
    await bot.stop()


async def test_a_stale_persona_button_answers_an_en_us_user_in_english(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    # A persona keyboard Telegram no longer shows: the press arrives without its message.
    query = fake_telegram.user_presses(999, "persona:max", language_code="en-US")
    await fake_telegram.wait_for(lambda: query in fake_telegram.callback_answers)
    assert fake_telegram.callback_answers[query].text == t("toast_stale", "en")
    await bot.stop()


async def test_llm_reply_with_persona_prompt_and_history(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    bodies: list[dict[str, object]] = []

    async def llm(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        assert request.url.path == "/v1/chat/completions"
        return llm_answer(f"ответ {len(bodies)}")

    bot = await start_bot(nursery, tmp_path, fake_telegram, llm=llm)
    fake_telegram.user_says("первое")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    fake_telegram.user_says("второе")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 2)
    assert fake_telegram.texts_to(USER) == ["ответ 1", "ответ 2"]
    messages = bodies[1]["messages"]
    assert isinstance(messages, list)
    assert messages[0]["role"] == "system"
    assert "Алиса" in messages[0]["content"]
    assert [m["content"] for m in messages[1:]] == ["первое", "ответ 1", "второе"]
    await bot.stop()


async def test_llm_failure_gives_a_polite_fallback_and_long_output_is_cut(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    answers = [httpx.Response(500, text="upstream down"), llm_answer("я" * 5000)]

    async def llm(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    bot = await start_bot(nursery, tmp_path, fake_telegram, llm=llm)
    fake_telegram.user_says("раз")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    assert fake_telegram.sent[0].text == t(
        "llm_fallback_feminine", "ru"
    )  # Алиса speaks in the feminine
    fake_telegram.user_says("два")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 2)
    assert fake_telegram.sent[1].text == "я" * 4096
    await bot.stop()


async def test_llm_timeout_falls_back_after_exactly_the_timeout(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async def llm(request: httpx.Request) -> httpx.Response:
        await trio.sleep(1000)
        return llm_answer("too late")

    bot = await start_bot(nursery, tmp_path, fake_telegram, llm=llm, llm_timeout_seconds=7)
    fake_telegram.user_says("эй")
    start = trio.current_time()
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    assert fake_telegram.sent[0].text == t("llm_fallback_feminine", "ru")
    assert trio.current_time() - start == pytest.approx(7, abs=0.01)
    await bot.stop()


async def test_a_slow_llm_answer_for_one_user_does_not_delay_another(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async def llm(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["messages"][-1]["content"]
        await trio.sleep(20 if text == "slow" else 1)
        return llm_answer(f"re: {text}")

    bot = await start_bot(nursery, tmp_path, fake_telegram, llm=llm)
    start = trio.current_time()
    fake_telegram.user_says("slow", user_id=USER)
    fake_telegram.user_says("fast", user_id=OTHER)
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 2)
    first, second = fake_telegram.sent
    assert (first.chat_id, first.text) == (OTHER, "re: fast")
    assert first.at - start < 2
    assert (second.chat_id, second.text) == (USER, "re: slow")
    await bot.stop()


async def test_one_chat_keeps_its_order(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async def llm(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["messages"][-1]["content"]
        await trio.sleep(10 if text == "1" else 1)
        return llm_answer(f"re: {text}")

    bot = await start_bot(nursery, tmp_path, fake_telegram, llm=llm)
    for text in ["1", "2", "3"]:
        fake_telegram.user_says(text)
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 3)
    assert fake_telegram.texts_to(USER) == ["re: 1", "re: 2", "re: 3"]
    await bot.stop()


async def test_restart_neither_loses_nor_repeats_an_update(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    fake_telegram.user_says("before")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    await bot.stop()
    fake_telegram.user_says("while down")
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 2)
    await trio.sleep(120)  # several long polls: nothing is answered twice
    assert len(fake_telegram.sent) == 2
    await bot.stop()


async def test_a_user_who_blocked_the_bot_is_marked(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    fake_telegram.user_says("hi")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    fake_telegram.blocked.add(USER)  # the next send fails with 403
    fake_telegram.user_says("still here?")
    await trio.sleep(5)
    with bot.store() as store:
        assert user_row(store, USER).blocked
    fake_telegram.blocked.discard(USER)
    fake_telegram.user_says("back")  # writing again means they unblocked us
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 2)
    with bot.store() as store:
        assert not user_row(store, USER).blocked
    await bot.stop()


async def test_admin_commands_grant_and_subscribe_and_balance(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram, admin_user_ids=str(USER), free_images=2)
    fake_telegram.user_says("/grant 77 5", user_id=OTHER)
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    assert fake_telegram.sent[0].text == t("admin_only", "ru")
    fake_telegram.user_says("/grant 77 5")
    fake_telegram.user_says("/grant nonsense")
    fake_telegram.user_says("/subscribe 77 30")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 4)
    assert fake_telegram.sent[1].text == t("grant_done", "ru", user_id=77, images=5, balance=7)
    assert fake_telegram.sent[2].text == t("grant_usage", "ru")
    assert fake_telegram.sent[3].text == t(
        "subscribe_done", "ru", user_id=77, until="2026-12-28 12:00"
    )
    fake_telegram.user_says("/balance", user_id=77)
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 5)
    assert fake_telegram.sent[4].text == "\n".join(
        [
            t("balance", "ru", balance=7),
            t("balance_subscription", "ru", until="2026-12-28 12:00", left=20, daily=20),
        ]
    )
    await bot.stop()


@pytest.mark.parametrize("command", ["/grant", "/subscribe"])
async def test_admin_commands_refuse_user_ids_beyond_telegrams_52_bits_with_the_usage_line(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    autojump_clock: object,
    command: str,
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram, admin_user_ids=str(USER))
    usage = t(f"{command[1:]}_usage", "ru")
    for user_id in (2**52, 2**63, 10**30):
        fake_telegram.user_says(f"{command} {user_id} 5")
    fake_telegram.user_says(f"{command} {2**52 - 1} 5")  # the largest id Telegram can give
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 4)
    assert [message.text for message in fake_telegram.sent[:3]] == [usage] * 3
    assert fake_telegram.sent[3].text != usage
    with bot.store() as store:
        assert user_row(store, 2**52 - 1).user_id == 2**52 - 1
    await bot.stop()


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    setup_logging(level="DEBUG", stream=stream)  # no secrets list: the pattern must do
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_the_token_never_appears_in_anything_logged(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    autojump_clock: object,
    captured_logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_telegram.fail_next("sendMessage", 502, "Bad Gateway")
    fake_telegram.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
    fake_telegram.network_error_next("sendMessage")
    fake_telegram.fail_next("sendMessage", 400, "Bad Request: chat not found", times=5)
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    fake_telegram.user_says("one")
    fake_telegram.user_says("two")
    await trio.sleep(60)
    await bot.stop()
    raw_records = "\n".join(
        f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
    )
    assert "sendMessage" in captured_logs.getvalue()  # the failures were logged...
    assert TEST_TOKEN not in captured_logs.getvalue()  # ...without the token
    assert TEST_TOKEN not in raw_records


async def test_telegram_unreachable_at_start_is_waited_out(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    fake_telegram.network_error_next("getMe", times=12)  # more than one call's own retries
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    assert fake_telegram.calls.count("getMe") == 13
    fake_telegram.user_says("ты проснулся?")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    await bot.stop()
