"""The bot's profile at start: descriptions, the menu in each language, admins' own menus;
texts that name a button name the one the user sees."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from bot.app.startup import PROFILE_DEADLINE_S
from bot.core.logs import EVENT_FIELDS_KEY
from bot.core.texts import ADMIN_MENU, COMMAND_MENU, TEMPLATES, t
from tests.fakes.telegram import FakeTelegram
from tests.harness import start_bot

ADMIN = 42


async def test_descriptions_menus_and_the_admins_own_menu_are_set_at_start(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram, admin_user_ids=str(ADMIN))
    await trio.sleep(1)  # set beside polling
    tg = fake_telegram
    for lang, code in (("ru", ""), ("en", "en")):
        assert tg.descriptions[("description", code)] == t("bot_description", lang)
        short = tg.descriptions[("short_description", code)]
        assert short == t("bot_short_description", lang)
        assert len(short) <= 120
        users = [c["command"] for c in tg.commands[code]]
        assert users == [c for c, _ in COMMAND_MENU[lang]]
        admin = [c["command"] for c in tg.chat_commands[(ADMIN, code)]]
        assert admin == users + [c for c, _ in ADMIN_MENU[lang]]
        assert "stats" not in users  # nobody else sees the admin commands
    assert {chat for chat, _ in tg.chat_commands} == {ADMIN}
    await bot.stop()


async def test_a_profile_telegram_refuses_is_logged_and_the_bot_runs(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    fake_telegram.fail_next(
        "setMyDescription", 400, "Bad Request: description is too long", times=2
    )
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    fake_telegram.user_says("/help")
    await fake_telegram.wait_for(lambda: fake_telegram.sent != [])
    assert fake_telegram.descriptions.keys() == {
        ("short_description", ""),
        ("short_description", "en"),
    }
    await bot.stop()


def test_texts_name_the_button_in_the_users_language() -> None:
    assert "«👁️ Show me»" in t("help", "en")
    assert "Посмотреть" not in t("help", "en")
    assert "«👁️ Посмотреть»" in t("help", "ru")
    for key, by_lang in TEMPLATES.items():
        if key != "look_button":
            assert "Посмотреть" not in by_lang["en"], key


async def test_a_profile_call_that_never_answers_gives_up_and_polling_was_never_held(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    autojump_clock: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_telegram.latency_s["setMyDescription"] = 10_000
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    fake_telegram.user_says("/help")
    await fake_telegram.wait_for(lambda: fake_telegram.sent != [])  # answered meanwhile
    assert trio.current_time() < PROFILE_DEADLINE_S
    await trio.sleep(PROFILE_DEADLINE_S + 1)  # past the deadline, whichever task runs first
    lines = [r for r in caplog.records if r.getMessage() == "telegram_profile_not_set"]
    assert [getattr(r, EVENT_FIELDS_KEY)["what"] for r in lines] == ["all"]
    await bot.stop()
