"""The chat's inline keyboards: «👁️ Посмотреть» under a reply, and the persona picker."""

from __future__ import annotations

from collections.abc import Sequence

from bot.callback_data import ChoosePersona, LookPress, encode
from bot.personas import Persona
from bot.telegram.types import InlineKeyboardButton, InlineKeyboardMarkup
from bot.texts import Lang, t

__all__ = ["look_keyboard", "persona_keyboard"]


def look_keyboard(lang: Lang) -> InlineKeyboardMarkup:
    """The button under a reply in a private chat."""
    button = InlineKeyboardButton(text=t("look_button", lang), callback_data=encode(LookPress()))
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


def persona_keyboard(personas: Sequence[Persona], *, current: str | None) -> InlineKeyboardMarkup:
    """One button per persona, the current one ticked."""
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
