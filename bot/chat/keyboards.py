"""The chat's inline keyboards: «👁️ Посмотреть» under a reply, and the persona picker."""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.buttons import ChoosePersona, Look, encode
from bot.core.personas import Persona
from bot.core.texts import Lang, t
from bot.telegram.types import InlineKeyboardButton, InlineKeyboardMarkup

__all__ = ["look_keyboard", "persona_keyboard"]


def look_keyboard(lang: Lang) -> InlineKeyboardMarkup:
    """The button under a reply in a private chat."""
    button = InlineKeyboardButton(text=t("look_button", lang), callback_data=encode(Look()))
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


def persona_keyboard(
    personas: Sequence[Persona], *, current: str | None, lang: Lang = "ru"
) -> InlineKeyboardMarkup:
    """One button per persona, in *lang*, with its short description; the current one
    ticked."""
    rows = [
        [
            InlineKeyboardButton(
                text=_label(persona.speaking(lang), ticked=persona.key == current),
                callback_data=encode(ChoosePersona(persona.key)),
            )
        ]
        for persona in personas
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows)


def _label(persona: Persona, *, ticked: bool) -> str:
    label = ("✅ " if ticked else "") + persona.name
    return f"{label} · {persona.description}" if persona.description else label
