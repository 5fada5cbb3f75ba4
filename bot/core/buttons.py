"""The bot's inline buttons, one type each: encode, and decode anything a client sends back.

A button is named once, here (``Look``, ``Variant``, ``Cancel``…); a press on it reaches
its handler as ``commands.Press[Look]`` and so on. ``callback_data`` is 1-64 bytes and
comes back from the client unchecked (docs/telegram.md, T8), so every payload is parsed
strictly; anything else (forged, stale, from an older version) decodes to None and the
press is answered and ignored (docs/product.md, P13).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "Button",
    "BuyPack",
    "BuySubscription",
    "Cancel",
    "ChoosePersona",
    "Look",
    "Variant",
    "decode",
    "encode",
]

MAX_BYTES: Final = 64


@dataclass(frozen=True, slots=True)
class Look:
    """«👁️ Посмотреть» under a persona's reply. The message it illustrates is the one the
    button sits under, which Telegram itself reports in ``callback_query.message`` (the
    payload cannot point elsewhere)."""


@dataclass(frozen=True, slots=True)
class ChoosePersona:
    """A persona in the picker of ``/start`` and ``/persona``."""

    key: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """«✖ Отмена» under a picture's status message."""

    job_id: str


@dataclass(frozen=True, slots=True)
class Variant:
    """«🔄 Ещё вариант» under a delivered photo; *message_id* is the text it illustrates.

    The photo is a reply to that text, but the id is carried here so the press does not
    depend on Telegram including the replied message; the handler checks that this
    user's private chat holds that text (a forged id is stale).
    """

    message_id: int


@dataclass(frozen=True, slots=True)
class BuyPack:
    """A pack of *pictures*, priced by the settings at the moment of the press."""

    pictures: int


@dataclass(frozen=True, slots=True)
class BuySubscription:
    """The monthly subscription."""


Button = Look | ChoosePersona | Cancel | Variant | BuyPack | BuySubscription

_LOOK: Final = "look"
_PERSONA: Final = re.compile(r"^persona:([a-z0-9_-]{1,32})$")
_CANCEL: Final = re.compile(r"^cancel:([0-9a-f]{32})$")
_VARIANT: Final = re.compile(r"^variant:([1-9][0-9]{0,15})$")
_BUY: Final = re.compile(r"^buy:([1-9][0-9]{0,5})$")
_BUY_SUBSCRIPTION: Final = "buy:sub"


def encode(button: Button) -> str:
    match button:
        case Look():
            text = _LOOK
        case ChoosePersona(key):
            text = f"persona:{key}"
        case Cancel(job_id):
            text = f"cancel:{job_id}"
        case Variant(message_id):
            text = f"variant:{message_id}"
        case BuyPack(pictures):
            text = f"buy:{pictures}"
        case BuySubscription():
            text = _BUY_SUBSCRIPTION
    if len(text.encode()) > MAX_BYTES:
        raise ValueError(f"callback data {text!r} is longer than {MAX_BYTES} bytes")
    return text


def decode(data: str | None) -> Button | None:
    """The button in *data*, or None for anything this bot did not make."""
    if not data or len(data.encode()) > MAX_BYTES:
        return None
    if data == _LOOK:
        return Look()
    if match := _PERSONA.match(data):
        return ChoosePersona(match.group(1))
    if match := _CANCEL.match(data):
        return Cancel(match.group(1))
    if match := _VARIANT.match(data):
        return Variant(int(match.group(1)))
    if match := _BUY.match(data):
        return BuyPack(int(match.group(1)))
    if data == _BUY_SUBSCRIPTION:
        return BuySubscription()
    return None
