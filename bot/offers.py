"""What the bot sells for Telegram Stars, and the invoice payload that names it (PURE).

Shared by the settings (``STARS_PACKS``, ``STARS_SUBSCRIPTION_PRICE``), the payments room
and the pictures room (the buy buttons under the ``no_quota`` message), so it lives at
the top of ``bot/`` and imports nothing of a feature.

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
    "MAX_SUBSCRIPTION_STARS",
    "SUBSCRIPTION_PERIOD_S",
    "Pack",
    "PackPayload",
    "Payload",
    "SubscriptionPayload",
    "decode_payload",
    "encode_payload",
    "parse_packs",
]

MAX_PAYLOAD_BYTES: Final = 128
SUBSCRIPTION_PERIOD_S: Final = 2_592_000  # 30 days: the only period Telegram allows
MAX_SUBSCRIPTION_STARS: Final = 10_000  # Telegram's ceiling for a subscription price
MAX_PACK_PICTURES: Final = 100_000
MAX_PACK_STARS: Final = 100_000

_PACK_ITEM: Final = re.compile(r"^(\d{1,6}):(\d{1,6})$")
_PACK_PAYLOAD: Final = re.compile(r"^pack:(\d{1,6}):(\d{1,6}):(\d{1,20})$")
_SUB_PAYLOAD: Final = re.compile(r"^sub:(\d{1,6}):(\d{1,20})$")


@dataclass(frozen=True, slots=True)
class Pack:
    """*pictures* added to the balance for *stars*."""

    pictures: int
    stars: int


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


def parse_packs(text: str) -> tuple[Pack, ...]:
    """``"10:50,50:200"`` (pictures:stars) → packs; empty → none (payments off).

    Raises:
        ValueError: one line naming the rule and the bad item.
    """
    packs: list[Pack] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        match = _PACK_ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"each pack is pictures:stars, like 10:50 (got {item!r})")
        pictures, stars = int(match.group(1)), int(match.group(2))
        if not (1 <= pictures <= MAX_PACK_PICTURES and 1 <= stars <= MAX_PACK_STARS):
            raise ValueError(
                f"a pack needs 1..{MAX_PACK_PICTURES} pictures and 1..{MAX_PACK_STARS} stars"
                f" (got {item!r})"
            )
        if any(pack.pictures == pictures for pack in packs):
            raise ValueError(f"two packs of {pictures} pictures; a pack is named by its size")
        packs.append(Pack(pictures, stars))
    return tuple(packs)


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
