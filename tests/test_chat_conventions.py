"""Telegram conventions in the running bot: deep links, /reset, "typing…" renewed."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import httpx
import pytest
import trio

from bot.chat.handlers import TYPING_ACTION, TYPING_RENEW_S
from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS
from bot.core.texts import TEMPLATES, ordinal, plural, t
from tests.fakes.telegram import DEFAULT_USER_ID, FakeTelegram
from tests.harness import start_bot
from tests.rows import user_row
from tests.test_bot_chat import llm_answer

USER = DEFAULT_USER_ID
PERSONAS = load_personas(SHIPPED_PERSONAS)


async def test_a_deep_link_opens_its_persona_with_its_greeting(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    fake_telegram.user_says("/start vera")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    with bot.store() as store:
        assert user_row(store, USER).persona_key == "vera"
    assert fake_telegram.sent[0].text == PERSONAS.get("vera").greeting
    fake_telegram.user_says("как дела?")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 2)
    with bot.store() as store:
        stored = store.sent.get(chat_id=USER, message_id=fake_telegram.sent[1].message_id)
    assert stored is not None
    assert stored.persona_key == "vera"
    await bot.stop()


async def test_a_deep_link_to_an_unknown_persona_gets_the_plain_greeting(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    fake_telegram.user_says("/start nobody", first_name="Аня")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    greeting = fake_telegram.sent[0]
    assert greeting.text == t("greeting", "ru", name="Аня")
    assert next(data for _, data in greeting.buttons()) == "persona:alice"
    with bot.store() as store:
        assert user_row(store, USER).persona_key != "nobody"
    await bot.stop()


async def test_reset_drops_the_turns_with_the_current_persona_only(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    bodies: list[dict[str, object]] = []

    async def llm(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return llm_answer(f"ответ {len(bodies)}")

    bot = await start_bot(nursery, tmp_path, fake_telegram, llm=llm)
    fake_telegram.user_says("/start max")
    fake_telegram.user_says("с Максом")
    fake_telegram.user_says("/start alice")
    fake_telegram.user_says("первое")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 4)
    fake_telegram.user_says("/reset")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 6)
    alice = PERSONAS.get("alice")
    assert fake_telegram.sent[4].text == t("conversation_reset", "ru", persona=alice.name)
    assert fake_telegram.sent[5].text == alice.greeting
    fake_telegram.user_says("второе")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 7)
    messages = bodies[-1]["messages"]
    assert isinstance(messages, list)
    assert [m["content"] for m in messages[1:]] == ["второе"]
    with bot.store() as store:
        kept = store.conversation.last(user_id=USER, persona_key="max", limit=10)
    assert [turn.text for turn in kept] == ["с Максом", "ответ 1"]
    await bot.stop()


async def test_typing_is_renewed_while_the_llm_thinks_and_stops_with_the_answer(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    thinking_s = 13.0

    async def llm(request: httpx.Request) -> httpx.Response:
        await trio.sleep(thinking_s)
        return llm_answer("подумала")

    bot = await start_bot(nursery, tmp_path, fake_telegram, llm=llm, llm_timeout_seconds=60)
    fake_telegram.user_says("долгий вопрос")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    answered_at = trio.current_time()
    await trio.sleep(3 * TYPING_RENEW_S)  # nothing more once the answer is out
    typing = [a for a in fake_telegram.chat_actions if a.action == TYPING_ACTION]
    assert all(a.chat_id == USER for a in typing)
    # Sent at once, then every TYPING_RENEW_S for as long as the LLM took: 0, 4, 8, 12 s.
    assert len(typing) == int(thinking_s // TYPING_RENEW_S) + 1
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(typing)]
    assert all(abs(gap - TYPING_RENEW_S) < 0.1 for gap in gaps)
    assert typing[-1].at < answered_at
    await bot.stop()


async def test_a_failing_typing_action_never_holds_up_the_reply(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async def llm(request: httpx.Request) -> httpx.Response:
        await trio.sleep(9)
        return llm_answer("всё равно отвечу")

    bot = await start_bot(nursery, tmp_path, fake_telegram, llm=llm, llm_timeout_seconds=60)
    fake_telegram.fail_next("sendChatAction", 400, "Bad Request: chat not found", times=5)
    started = trio.current_time()
    fake_telegram.user_says("вопрос")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    assert fake_telegram.sent[0].text == "всё равно отвечу"
    assert trio.current_time() - started < 10
    await bot.stop()


@pytest.mark.parametrize(
    ("count", "ru", "en"),
    [
        (0, "0 картинок", "0 pictures"),
        (1, "1 картинка", "1 picture"),
        (2, "2 картинки", "2 pictures"),
        (4, "4 картинки", "4 pictures"),
        (5, "5 картинок", "5 pictures"),
        (11, "11 картинок", "11 pictures"),
        (12, "12 картинок", "12 pictures"),
        (14, "14 картинок", "14 pictures"),
        (21, "21 картинка", "21 pictures"),
        (22, "22 картинки", "22 pictures"),
        (111, "111 картинок", "111 pictures"),
        (1001, "1001 картинка", "1001 pictures"),
    ],
)
def test_a_number_takes_the_form_of_its_noun(count: int, ru: str, en: str) -> None:
    assert plural(count, "картинка|картинки|картинок", "ru") == ru
    assert plural(count, "picture|pictures", "en") == en


def test_no_text_puts_a_bare_number_before_a_noun_it_does_not_agree_with() -> None:
    """Every count in a text names its noun's forms: no "2 картинок", no "1 pictures"."""
    assert t("balance", "ru", balance=2) == "На балансе 2 картинки."
    assert t("balance", "en", balance=1) == "Your balance: 1 picture."
    assert t("pay_thanks_pack", "ru", pictures=1, balance=21) == (
        "Спасибо! На баланс добавлено: 1 картинка. Теперь на балансе 21 картинка."
    )
    assert t("fail_generation", "ru").endswith("с баланса ничего не списано.")
    counted = re.compile(r"\{(?:pictures|balance|daily|images)\}\s+(?:картин|pictures|images)")
    for key, by_lang in TEMPLATES.items():
        for lang, template in by_lang.items():
            assert not counted.search(template), (key, lang)


@pytest.mark.parametrize(
    ("place", "en"),
    [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"),
     (13, "13th"), (21, "21st"), (22, "22nd"), (101, "101st"), (111, "111th")],
)  # fmt: skip
def test_a_place_in_line_reads_as_a_person_would_say_it(place: int, en: str) -> None:
    assert ordinal(place, "en") == en
    assert ordinal(place, "ru") == f"{place}-я"
    assert t("status_queued", "en", position=place) == f"🎨 Your picture is {en} in line."
