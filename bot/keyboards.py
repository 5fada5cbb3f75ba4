"""Inline keyboards: the «👁️ Посмотреть» button, the persona picker, «✖ Отмена»."""

from __future__ import annotations

from collections.abc import Sequence

from bot.callback_data import CancelJob, ChoosePersona, LookPress, encode
from bot.personas import Persona
from bot.telegram_types import InlineKeyboardButton, InlineKeyboardMarkup
from bot.texts import LOOK_BUTTON, t

__all__ = ["cancel_keyboard", "look_keyboard", "persona_keyboard"]


def look_keyboard() -> InlineKeyboardMarkup:
    """The button under a reply (SPEC §3.1)."""
    button = InlineKeyboardButton(text=LOOK_BUTTON, callback_data=encode(LookPress()))
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


def persona_keyboard(personas: Sequence[Persona], *, current: str | None) -> InlineKeyboardMarkup:
    rows = [
        [
            InlineKeyboardButton(
                text=("✅ " if persona.key == current else "") + persona.name,
                callback_data=encode(ChoosePersona(persona.key)),
            )
        ]
        for persona in personas
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows)


def cancel_keyboard(job_id: str, lang: str) -> InlineKeyboardMarkup:
    button = InlineKeyboardButton(
        text=t("cancel_button", lang), callback_data=encode(CancelJob(job_id))
    )
    return InlineKeyboardMarkup(inline_keyboard=[[button]])
