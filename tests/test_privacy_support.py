"""/privacy says what is kept and for how long; SUPPORT_CONTACT names a person to write to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from bot.core.settings import MAX_CONTACT_CHARS, SHIPPED_PERSONAS, SettingsError, load_settings
from bot.core.texts import t
from tests.fakes.comfy import FakeComfy
from tests.fakes.telegram import FakeTelegram
from tests.harness import start_bot
from tests.test_image_flow import press_look, say_and_get_reply
from tests.test_payments_flow import command

CONTACT = "@shop_support"


async def test_privacy_gives_each_kind_of_data_its_retention_and_the_way_to_erase_it(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    bot = await start_bot(
        nursery, tmp_path, fake_telegram, turns_retention_days=30,
        sent_messages_retention_days=1, jobs_retention_days=0, events_retention_days=400,
        support_contact=CONTACT,
    )  # fmt: skip
    answer = await command(fake_telegram, "/privacy")
    assert answer.text is not None
    lines = answer.text.splitlines()
    assert "— 30 дней;" in lines[1]
    assert "— 1 день;" in lines[2]
    assert "— бессрочно;" in lines[3]  # 0 keeps them forever
    assert "— 400 дней;" in lines[4]
    assert "/forget" in answer.text
    assert answer.text.endswith(f"Вопросы: {CONTACT}.")
    english = await command(fake_telegram, "/privacy", user_id=77)
    assert english.text == t(
        "privacy", "ru", turns="30 дней", sent="1 день", jobs="бессрочно", events="400 дней",
        contact=t("privacy_contact", "ru", contact=CONTACT),
    )  # fmt: skip
    await bot.stop()


async def test_privacy_in_english_without_a_contact(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram)
    count = len(fake_telegram.sent)
    fake_telegram.user_says("/privacy", language_code="en")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) > count)
    text = fake_telegram.sent[-1].text or ""
    assert "— 90 days;" in text
    assert "Questions" not in text
    assert "privacy" in [c["command"] for c in fake_telegram.commands["en"]]
    await bot.stop()


async def test_out_of_pictures_names_the_contact_when_nothing_is_for_sale(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    # An operator who wrote no /paysupport text: the contact answers it.
    shipped = json.loads(SHIPPED_PERSONAS.read_text(encoding="utf-8"))
    shipped.pop("texts", None)
    personas = tmp_path / "personas.json"
    personas.write_text(json.dumps(shipped, ensure_ascii=False), encoding="utf-8")
    bot = await start_bot(
        nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=0,
        support_contact=CONTACT, personas_file=personas,
    )  # fmt: skip
    reply = await say_and_get_reply(fake_telegram)
    query = await press_look(fake_telegram, reply)
    answer = fake_telegram.callback_answers[query]
    assert answer.show_alert
    assert answer.text == t("fail_no_quota_contact", "ru", contact=CONTACT)
    assert answer.text is not None
    assert len(answer.text) <= 200  # Telegram's limit for an alert
    paysupport = await command(fake_telegram, "/paysupport")
    assert paysupport.text == t("paysupport_contact", "ru", contact=CONTACT)
    await bot.stop()


def test_a_contact_is_one_short_line() -> None:
    longest = "@" + "x" * (MAX_CONTACT_CHARS - 1)
    assert load_settings(env_file=None, require_token=False, support_contact=longest)
    assert (
        load_settings(env_file=None, require_token=False, support_contact="  ").support_contact
        is None
    )
    with pytest.raises(SettingsError, match=r"^SUPPORT_CONTACT"):
        load_settings(env_file=None, require_token=False, support_contact=longest + "x")
    with pytest.raises(SettingsError, match=r"^SUPPORT_CONTACT"):
        load_settings(env_file=None, require_token=False, support_contact="a\nb")
    for lang in ("ru", "en"):
        assert len(t("fail_no_quota_contact", lang, contact=longest)) <= 200
