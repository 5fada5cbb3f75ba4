"""Inline-button payloads: encode, and decode anything a client sends back.

``callback_data`` is 1-64 bytes and comes back from the client unchecked
(docs/telegram.md, T8), so every payload is parsed strictly; anything else (forged, stale,
from an older version) decodes to None and the press is answered and ignored
(docs/product.md, P13).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "BuyPack",
    "BuySubscription",
    "CancelJob",
    "ChoosePersona",
    "LookPress",
    "Payload",
    "VariantPress",
    "decode",
    "encode",
]

MAX_BYTES: Final = 64


@dataclass(frozen=True, slots=True)
class LookPress:
    """«👁️ Посмотреть»; the message it illustrates is the one the button sits under,
    which Telegram itself reports in ``callback_query.message`` (the payload cannot
    point elsewhere)."""


@dataclass(frozen=True, slots=True)
class ChoosePersona:
    key: str


@dataclass(frozen=True, slots=True)
class CancelJob:
    job_id: str


@dataclass(frozen=True, slots=True)
class VariantPress:
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


Payload = LookPress | ChoosePersona | CancelJob | VariantPress | BuyPack | BuySubscription

_LOOK: Final = "look"
_PERSONA: Final = re.compile(r"^persona:([a-z0-9_-]{1,32})$")
_CANCEL: Final = re.compile(r"^cancel:([0-9a-f]{32})$")
_VARIANT: Final = re.compile(r"^variant:([1-9][0-9]{0,15})$")
_BUY: Final = re.compile(r"^buy:([1-9][0-9]{0,5})$")
_BUY_SUBSCRIPTION: Final = "buy:sub"


def encode(payload: Payload) -> str:
    match payload:
        case LookPress():
            text = _LOOK
        case ChoosePersona(key):
            text = f"persona:{key}"
        case CancelJob(job_id):
            text = f"cancel:{job_id}"
        case VariantPress(message_id):
            text = f"variant:{message_id}"
        case BuyPack(pictures):
            text = f"buy:{pictures}"
        case BuySubscription():
            text = _BUY_SUBSCRIPTION
    if len(text.encode()) > MAX_BYTES:
        raise ValueError(f"callback data {text!r} is longer than {MAX_BYTES} bytes")
    return text


def decode(data: str | None) -> Payload | None:
    """The payload in *data*, or None for anything this bot did not make."""
    if not data or len(data.encode()) > MAX_BYTES:
        return None
    if data == _LOOK:
        return LookPress()
    if match := _PERSONA.match(data):
        return ChoosePersona(match.group(1))
    if match := _CANCEL.match(data):
        return CancelJob(match.group(1))
    if match := _VARIANT.match(data):
        return VariantPress(int(match.group(1)))
    if match := _BUY.match(data):
        return BuyPack(int(match.group(1)))
    if data == _BUY_SUBSCRIPTION:
        return BuySubscription()
    return None
