"""The one mechanism that hides secrets in any text before it leaves the process.

A bot token is ``<bot id>:<secret>``. It sits in the path of every Bot API URL, and httpx
puts URLs into its exceptions; a proxy's error page echoes the request path
percent-encoded (``%3A`` for the colon, or every byte encoded); an LLM server may echo the
key it refused in its 401 body. So a secret is hidden in every form it can take
(:func:`secret_forms`): as it is, percent-encoded (the reserved characters only, or every
byte, in either case of hex digits, or encoded twice), and for a bot token also its
secret half on its own, in the same forms. Anything shaped like a bot token is hidden too,
even a token nobody told us about.

Every output path uses a :class:`Redactor`: the log formatter (tracebacks included),
``doctor`` and ``stats`` output, ``/stats``, and the errors the Telegram and LLM clients
build from what a server sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Final
from urllib.parse import quote

__all__ = [
    "MIN_SECRET_CHARS",
    "REDACTED",
    "TOKEN_PATTERN",
    "Redactor",
    "redact_token",
    "secret_forms",
]

TOKEN_PATTERN: Final = re.compile(r"\d{3,}:[A-Za-z0-9_-]{10,}")  # a token's shape, as issued
REDACTED: Final = "<redacted>"
# Shorter values are not secrets worth the name, and hiding them would garble every line
# that happens to contain those few characters.
MIN_SECRET_CHARS: Final = 6
# A bot token in a text: the colon as is, percent-encoded, or percent-encoded twice.
_TOKEN_IN_TEXT: Final = re.compile(r"\d{3,}(?::|%3[Aa]|%253[Aa])[A-Za-z0-9_-]{10,}")
_HEX_ESCAPE: Final = re.compile(r"%[0-9A-F]{2}")


def secret_forms(secret: str) -> frozenset[str]:
    """Every way *secret* may appear in a text (see the module docstring); hex digits of
    percent-escapes in upper case (:class:`Redactor` matches them in either case)."""
    if len(secret) < MIN_SECRET_CHARS:
        return frozenset()
    plain = {secret}
    bot_id, colon, half = secret.partition(":")
    if colon and bot_id.isdigit() and len(half) >= MIN_SECRET_CHARS:
        plain.add(half)
    forms = set(plain)
    for value in plain:
        once = quote(value, safe="")
        forms.update((once, quote(once, safe=""), "".join(f"%{b:02X}" for b in value.encode())))
    return frozenset(forms)


def _pattern_of(form: str) -> str:
    """*form* as a regular expression whose percent-escapes match in either case."""
    parts: list[str] = []
    position = 0
    for escape in _HEX_ESCAPE.finditer(form):
        parts.append(re.escape(form[position : escape.start()]))
        parts.append(
            "%" + "".join(f"[{c}{c.lower()}]" if c.isalpha() else c for c in escape[0][1:])
        )
        position = escape.end()
    parts.append(re.escape(form[position:]))
    return "".join(parts)


class Redactor:
    """Replaces every form of the given secrets, and anything token-shaped, by REDACTED."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        forms = {form for secret in secrets if secret for form in secret_forms(secret)}
        # Longest first: where the whole token starts, it wins over its secret half.
        ordered = sorted(forms, key=len, reverse=True)
        self._known = re.compile("|".join(map(_pattern_of, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(REDACTED, text)
        return _TOKEN_IN_TEXT.sub(REDACTED, text)


@lru_cache(maxsize=8)
def _redactor_for(token: str | None) -> Redactor:
    return Redactor([token])


def redact_token(text: str, token: str | None = None) -> str:
    """Hide *token* (in every form) and anything shaped like a bot token in *text*."""
    return _redactor_for(token or None)(text)
