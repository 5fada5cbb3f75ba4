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
    "CancelJob",
    "ChoosePersona",
    "LookPress",
    "Payload",
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


Payload = LookPress | ChoosePersona | CancelJob

_LOOK: Final = "look"
_PERSONA: Final = re.compile(r"^persona:([a-z0-9_-]{1,32})$")
_CANCEL: Final = re.compile(r"^cancel:([0-9a-f]{32})$")


def encode(payload: Payload) -> str:
    match payload:
        case LookPress():
            text = _LOOK
        case ChoosePersona(key):
            text = f"persona:{key}"
        case CancelJob(job_id):
            text = f"cancel:{job_id}"
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
    return None
