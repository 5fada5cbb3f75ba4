"""The invoice payload that names what a buyer pays for (PURE).

What is on sale is the operator's: ``STARS_PACKS`` and ``STARS_SUBSCRIPTION_PRICE``
(``bot.core.settings``).

A payload is 1-128 bytes the user never sees (docs/telegram.md, T15). It names the offer
*and* its price and buyer, so a pre-checkout for an offer the operator has since changed,
or a payload replayed by someone else, is refused by comparing plain values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "SUBSCRIPTION_PERIOD_S",
    "PackPayload",
    "Payload",
    "SubscriptionPayload",
    "decode_payload",
    "encode_payload",
]

MAX_PAYLOAD_BYTES: Final = 128
SUBSCRIPTION_PERIOD_S: Final = 2_592_000  # 30 days: the only period Telegram allows

_PACK_PAYLOAD: Final = re.compile(r"^pack:(\d{1,6}):(\d{1,6}):(\d{1,20})$")
_SUB_PAYLOAD: Final = re.compile(r"^sub:(\d{1,6}):(\d{1,20})$")


@dataclass(frozen=True, slots=True)
class PackPayload:
    pictures: int
    stars: int
    user_id: int


@dataclass(frozen=True, slots=True)
class SubscriptionPayload:
    stars: int
    user_id: int


Payload = PackPayload | SubscriptionPayload


def encode_payload(payload: Payload) -> str:
    match payload:
        case PackPayload(pictures, stars, user_id):
            text = f"pack:{pictures}:{stars}:{user_id}"
        case SubscriptionPayload(stars, user_id):
            text = f"sub:{stars}:{user_id}"
    if not 1 <= len(text.encode()) <= MAX_PAYLOAD_BYTES:
        raise ValueError(f"invoice payload {text!r} is not 1..{MAX_PAYLOAD_BYTES} bytes")
    return text


def decode_payload(text: str) -> Payload | None:
    """The payload in *text*, or None for anything this bot did not make."""
    if not text or len(text.encode()) > MAX_PAYLOAD_BYTES:
        return None
    if match := _PACK_PAYLOAD.fullmatch(text):
        return PackPayload(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    if match := _SUB_PAYLOAD.fullmatch(text):
        return SubscriptionPayload(int(match.group(1)), int(match.group(2)))
    return None
