"""Update → command, as plain functions: every shape the bot may receive."""

from __future__ import annotations

from typing import Any

from bot.core.buttons import Cancel, ChoosePersona, Look, decode, encode
from bot.core.commands import (
    MAX_USER_TEXT_CHARS,
    AdminCmd,
    BalanceCmd,
    BlockedChange,
    ChatText,
    HelpCmd,
    Ignored,
    NonText,
    Press,
    ResetCmd,
    StartCmd,
    UnknownCallback,
    UnknownCmd,
    route,
)
from bot.telegram.types import Update

USER = {"id": 42, "is_bot": False, "first_name": "Аня", "language_code": "en"}
PRIVATE = {"id": 42, "type": "private"}
GROUP = {"id": -100, "type": "supergroup", "title": "g"}


def message(text: str | None = "hi", *, chat: dict[str, Any] = PRIVATE, **extra: Any) -> Update:
    body: dict[str, Any] = {"message_id": 5, "date": 1, "chat": chat, "from": USER, **extra}
    if text is not None:
        body["text"] = text
    return Update.model_validate({"update_id": 1, "message": body})


def press(data: str | None, *, message_date: int = 1) -> Update:
    query: dict[str, Any] = {
        "id": "q1",
        "from": USER,
        "chat_instance": "c",
        "message": {"message_id": 9, "date": message_date, "chat": PRIVATE},
    }
    if data is not None:
        query["data"] = data
    return Update.model_validate({"update_id": 2, "callback_query": query})


def test_text_in_a_private_chat_is_chat_text_with_context() -> None:
    command = route(message("привет"))
    assert isinstance(command, ChatText)
    assert command.text == "привет"
    assert command.ctx.private
    assert command.ctx.lang == "en"
    assert (command.ctx.chat_id, command.ctx.user_id, command.message_id) == (42, 42, 5)


def test_huge_text_is_cut_before_it_reaches_anyone() -> None:
    command = route(message("я" * 4096))
    assert isinstance(command, ChatText)
    assert len(command.text) == MAX_USER_TEXT_CHARS


def test_commands_with_and_without_the_bot_name() -> None:
    assert isinstance(route(message("/start")), StartCmd)
    assert isinstance(route(message("/help@persona_bot"), bot_username="persona_bot"), HelpCmd)
    assert isinstance(route(message("/quota")), BalanceCmd)
    assert isinstance(route(message("/balance")), BalanceCmd)
    assert isinstance(route(message("/nope")), UnknownCmd)
    assert isinstance(route(message("/help@other_bot"), bot_username="persona_bot"), Ignored)


def test_admin_commands_keep_their_arguments() -> None:
    command = route(message("/grant 7 10"))
    assert isinstance(command, AdminCmd)
    assert (command.name, command.args) == ("grant", ("7", "10"))


def test_non_text_in_private_is_answered_but_ignored_in_groups() -> None:
    sticker = {"sticker": {"file_id": "x"}}
    assert isinstance(route(message(None, **sticker)), NonText)
    assert isinstance(route(message(None, chat=GROUP, **sticker)), Ignored)


def test_group_text_is_chat_text_in_a_non_private_context() -> None:
    command = route(message("hello", chat=GROUP))
    assert isinstance(command, ChatText)
    assert not command.ctx.private


def test_message_from_a_bot_is_ignored() -> None:
    update = Update.model_validate(
        {
            "update_id": 1,
            "message": {
                "message_id": 1,
                "date": 1,
                "chat": PRIVATE,
                "from": {**USER, "is_bot": True},
                "text": "x",
            },
        }
    )
    assert isinstance(route(update), Ignored)


def test_look_press_names_the_message_the_button_sits_under() -> None:
    command = route(press("look"))
    assert isinstance(command, Press)
    assert (command.query_id, command.message_id, command.button) == ("q1", 9, Look())


def test_persona_and_cancel_presses() -> None:
    persona = route(press("persona:alice"))
    assert isinstance(persona, Press)
    assert persona.button == ChoosePersona("alice")
    job_id = "0" * 32
    command = route(press(f"cancel:{job_id}"))
    assert isinstance(command, Press)
    assert command.button == Cancel(job_id)


def test_forged_or_stale_callback_data_is_unknown() -> None:
    for data in [None, "", "look:1", "persona:ALICE", "cancel:xyz", "x" * 65, "drop table"]:
        assert isinstance(route(press(data)), UnknownCallback), data
    assert isinstance(route(press("look", message_date=0)), UnknownCallback)


def test_callback_payloads_round_trip() -> None:
    for payload in [Look(), ChoosePersona("max"), Cancel("a" * 32)]:
        assert decode(encode(payload)) == payload


def test_my_chat_member_kicked_means_blocked() -> None:
    update = Update.model_validate(
        {
            "update_id": 3,
            "my_chat_member": {
                "chat": PRIVATE,
                "from": USER,
                "date": 1,
                "new_chat_member": {"status": "kicked", "user": USER},
            },
        }
    )
    assert route(update) == BlockedChange(user_id=42, blocked=True)


def test_unhandled_update_kinds_are_ignored() -> None:
    update = Update.model_validate({"update_id": 4, "edited_message": message().message})
    assert isinstance(route(update), Ignored)


def test_every_admin_command_has_a_handler() -> None:
    from bot.app.handler import ADMIN_HANDLERS
    from bot.core.commands import ADMIN_COMMANDS

    assert set(ADMIN_HANDLERS) == ADMIN_COMMANDS


def test_start_carries_a_deep_link_payload_and_refuses_forged_ones() -> None:
    plain = route(message("/start"))
    assert isinstance(plain, StartCmd)
    assert plain.payload is None
    linked = route(message("/start vera"))
    assert isinstance(linked, StartCmd)
    assert linked.payload == "vera"
    addressed = route(message("/start@persona_bot max_2-b"), bot_username="persona_bot")
    assert isinstance(addressed, StartCmd)
    assert addressed.payload == "max_2-b"
    for forged in ("/start ве ра", "/start ../x", "/start " + "a" * 65, "/start a;b"):
        command = route(message(forged))
        assert isinstance(command, StartCmd)
        assert command.payload is None, forged


def test_reset_is_its_own_command() -> None:
    command = route(message("/reset"))
    assert isinstance(command, ResetCmd)
    assert command.ctx.user_id == 42
