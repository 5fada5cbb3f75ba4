"""The bot token's shape, and the one function that hides it in any text.

A bot token is ``<bot id>:<secret>``. It sits in the path of every Bot API URL, and httpx
puts URLs into its exceptions and request log lines, so every text that leaves the
Telegram client, and every log line, passes through :func:`redact_token`.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["REDACTED", "TOKEN_PATTERN", "redact_token"]

TOKEN_PATTERN: Final = re.compile(r"\d{3,}:[A-Za-z0-9_-]{10,}")
REDACTED: Final = "<redacted>"


def redact_token(text: str, token: str | None = None) -> str:
    """Hide *token* and anything shaped like a bot token in *text*."""
    if token:
        text = text.replace(token, REDACTED)
    return TOKEN_PATTERN.sub(REDACTED, text)
