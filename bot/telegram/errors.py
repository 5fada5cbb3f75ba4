"""Errors of the Telegram Bot API, and the one function that reads its reply envelope.

Every Bot API reply is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N,
"description": "...", "parameters": {...}}`` with the HTTP status equal to ``error_code``
(docs/telegram.md, T2). :func:`parse_response` turns it into the result or into one of::

    TelegramError                  .method, .error_code, .description
    ├── TelegramRetryAfter         429: flood control; wait .retry_after seconds
    ├── TelegramBadRequest         400: the call itself is wrong (.migrate_to_chat_id)
    ├── TelegramUnauthorized       401: the token is wrong
    ├── TelegramForbidden          403: the user blocked the bot or is deactivated
    ├── TelegramConflict           409: another poller, or a webhook is set
    ├── TelegramServerError        5xx, or a reply that is not the JSON envelope
    ├── TelegramNetworkError       no reply at all (connection, timeout, protocol)
    └── TelegramCallDropped        never sent: a cosmetic call the send budget dropped

A 404 or any other status becomes a plain :class:`TelegramError`. Messages name the
method and Telegram's description, never the token or the request URL.
"""

from __future__ import annotations

import json
from typing import ClassVar, Final

from pydantic import ValidationError

from bot.telegram.redact import redact_token
from bot.telegram.types import ResponseParameters

__all__ = [
    "DEFAULT_RETRY_AFTER_S",
    "RETRIED_ERRORS",
    "TelegramBadRequest",
    "TelegramCallDropped",
    "TelegramConflict",
    "TelegramError",
    "TelegramForbidden",
    "TelegramNetworkError",
    "TelegramRetryAfter",
    "TelegramServerError",
    "TelegramUnauthorized",
    "chat_not_found",
    "parse_response",
]

DEFAULT_RETRY_AFTER_S: Final = 1.0  # a 429 without parameters.retry_after (never seen, but legal)
_MAX_BODY_IN_MESSAGE: Final = 80  # characters of a non-JSON body quoted in the error


class TelegramError(Exception):
    """A Bot API call failed; the message is ``"<method>: <description> (error <code>)"``."""

    default_error_code: ClassVar[int | None] = None

    def __init__(self, method: str, description: str, *, error_code: int | None = None) -> None:
        if error_code is None:
            error_code = self.default_error_code
        self.method = method
        self.description = description
        self.error_code = error_code
        suffix = "" if error_code is None else f" (error {error_code})"
        super().__init__(f"{method}: {description}{suffix}")


class TelegramRetryAfter(TelegramError):
    """429 Too Many Requests: the call may be repeated after ``retry_after`` seconds."""

    def __init__(self, method: str, description: str, *, retry_after: float) -> None:
        super().__init__(method, f"{description}; retry after {retry_after:g} s", error_code=429)
        self.description = description
        self.retry_after = retry_after


class TelegramBadRequest(TelegramError):
    """400: the request is wrong (bad ids, message not found, file refused, ...)."""

    def __init__(
        self, method: str, description: str, *, migrate_to_chat_id: int | None = None
    ) -> None:
        super().__init__(method, description, error_code=400)
        self.migrate_to_chat_id = migrate_to_chat_id


CHAT_NOT_FOUND: Final = "chat not found"


def chat_not_found(error: TelegramError) -> bool:
    """Telegram no longer knows the chat (deleted, or the bot left it): nothing sent there
    can succeed, so it is the update's end, not a fault."""
    return isinstance(error, TelegramBadRequest) and CHAT_NOT_FOUND in error.description.lower()


class TelegramUnauthorized(TelegramError):
    """401: Telegram does not know this token."""

    def __init__(self, method: str, description: str) -> None:
        super().__init__(method, f"{description}; check TELEGRAM_BOT_TOKEN", error_code=401)
        self.description = description


class TelegramForbidden(TelegramError):
    """403: the bot may not write there (blocked by the user, kicked, user deactivated)."""

    default_error_code = 403


class TelegramConflict(TelegramError):
    """409: another ``getUpdates`` is running with this token, or a webhook is set."""

    default_error_code = 409


class TelegramServerError(TelegramError):
    """5xx, or a reply that is not the Bot API envelope (a proxy's HTML error page)."""


class TelegramNetworkError(TelegramError):
    """No reply: connection refused or reset, a timeout, a broken HTTP exchange."""


class TelegramCallDropped(TelegramError):
    """A chat action or status edit the send budget dropped, stale or replaced by a newer
    one (bot/telegram/send_budget.py); Telegram never saw it."""


# Failures where the same call may succeed later, after a backoff delay. A 429
# (TelegramRetryAfter) is transient too, but Telegram names its own wait; everything else
# is the caller's mistake or the user's choice and is never repeated.
RETRIED_ERRORS: Final = (TelegramServerError, TelegramNetworkError)


def parse_response(
    method: str, status_code: int, content: bytes, *, token: str | None = None
) -> object:
    """Return the ``result`` of a Bot API reply, or raise the matching :class:`TelegramError`.

    Args:
        method: the Bot API method, used in error messages.
        status_code: the HTTP status of the reply.
        content: the raw reply body.
        token: the bot token, hidden in every form from the error's message (a proxy's
            page may echo the request path, percent-encoded).

    Raises:
        TelegramError: one of its subclasses, chosen by ``error_code`` (see the module tree).
    """
    try:
        envelope = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        envelope = None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("ok"), bool):
        raise TelegramServerError(
            method,
            f"reply is not a Bot API envelope: {_quote(content, token)}",
            error_code=status_code,
        )
    if envelope["ok"]:
        return envelope.get("result")
    code = envelope.get("error_code")
    error_code = code if isinstance(code, int) else status_code
    description = redact_token(str(envelope.get("description") or "no description"), token)
    raise _error_for(method, error_code, description, _parameters(envelope.get("parameters")))


def _error_for(
    method: str, error_code: int, description: str, parameters: ResponseParameters
) -> TelegramError:
    if error_code == 429:
        retry_after = parameters.retry_after
        if retry_after is None or retry_after < 0:
            retry_after = DEFAULT_RETRY_AFTER_S
        return TelegramRetryAfter(method, description, retry_after=retry_after)
    if error_code == 400:
        return TelegramBadRequest(
            method, description, migrate_to_chat_id=parameters.migrate_to_chat_id
        )
    if error_code == 401:
        return TelegramUnauthorized(method, description)
    if error_code == 403:
        return TelegramForbidden(method, description)
    if error_code == 409:
        return TelegramConflict(method, description)
    if error_code >= 500:
        return TelegramServerError(method, description, error_code=error_code)
    return TelegramError(method, description, error_code=error_code)


def _parameters(raw: object) -> ResponseParameters:
    try:
        return ResponseParameters.model_validate(raw if isinstance(raw, dict) else {})
    except ValidationError:
        return ResponseParameters()


def _quote(content: bytes, token: str | None) -> str:
    text = redact_token(content.decode("utf-8", errors="replace").strip(), token)
    if len(text) > _MAX_BODY_IN_MESSAGE:
        text = text[:_MAX_BODY_IN_MESSAGE] + "..."
    return repr(text)
