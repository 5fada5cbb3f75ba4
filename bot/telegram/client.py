"""A typed Telegram Bot API client over an injected ``httpx.AsyncClient``.

The bot token sits in the path of every request URL (``/bot<token>/<method>``), and httpx
puts that URL into its exceptions and its request log lines (docs/telegram.md, T1). So this
client never calls ``raise_for_status``: it reads the JSON envelope itself
(:func:`bot.telegram.errors.parse_response`), translates transport errors into
:class:`TelegramNetworkError` with no link to the httpx exception, and installs a
redacting filter on the ``httpx`` logger.

Retries follow :mod:`common.backoff`: a 429 waits ``retry_after``; a 5xx, a non-JSON reply or
a network error waits a jittered backoff delay; other errors raise at once.

With a :class:`~bot.telegram.throttle.SendThrottle` every call that writes to a chat waits
for its turn in the send budget first (docs/telegram.md, T7), and a 429 holds that chat's
calls, not only the one that got it (every chat's, when several chats get one at once).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal, TypeVar

import httpx
import trio
from pydantic import SecretStr, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from bot.telegram.errors import (
    RETRIED_ERRORS,
    TelegramBadRequest,
    TelegramError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    parse_response,
)
from bot.telegram.redact import redact_token
from bot.telegram.send_budget import CallClass, Priority, classify
from bot.telegram.throttle import SendThrottle
from bot.telegram.types import (
    BotCommand,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
    User,
    WebhookInfo,
)
from common.backoff import backoff_delays
from common.logfields import fields
from common.metrics import TELEGRAM_REQUESTS, TELEGRAM_SECONDS

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_ATTEMPTS",
    "LONG_POLL_MARGIN_S",
    "MAX_RATE_LIMIT_WAITS",
    "UPLOAD_TIMEOUT",
    "TelegramApi",
    "UploadFiles",
    "request_outcome",
]

T = TypeVar("T")
UploadFiles = Mapping[str, tuple[str, bytes, str]]  # field -> (filename, content, mime type)

DEFAULT_BASE_URL: Final = "https://api.telegram.org"
MEDIA_FIELD: Final = "picture"  # the multipart field an edit's media is attached as
DEFAULT_MAX_ATTEMPTS: Final = 5  # tries per call, the first one included
MAX_RATE_LIMIT_WAITS: Final = 30  # 429 answers one call may wait out before giving up
LONG_POLL_MARGIN_S: Final = 10  # read timeout = long-poll timeout + this (docs/telegram.md, T4)
CONNECT_TIMEOUT_S: Final = 10.0
UPLOAD_TIMEOUT: Final = httpx.Timeout(CONNECT_TIMEOUT_S, read=60.0, write=60.0)
_NOT_MODIFIED: Final = "message is not modified"
STARS_CURRENCY: Final = "XTR"  # Telegram Stars (docs/telegram.md, T15)

log = logging.getLogger(__name__)


class _RedactTokens(logging.Filter):
    """Rewrites ``httpx`` log records so request URLs show no token."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_token(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_HTTPX_FILTER: Final = _RedactTokens()


def _install_httpx_redaction() -> None:
    httpx_logger = logging.getLogger("httpx")
    if _HTTPX_FILTER not in httpx_logger.filters:
        httpx_logger.addFilter(_HTTPX_FILTER)


_ADAPTERS: dict[object, TypeAdapter[Any]] = {}  # building a TypeAdapter is not free


def _adapter_for(result: type[T] | TypeAdapter[T]) -> TypeAdapter[T]:
    if isinstance(result, TypeAdapter):
        return result
    adapter: TypeAdapter[T] | None = _ADAPTERS.get(result)
    if adapter is None:
        adapter = _ADAPTERS[result] = TypeAdapter(result)
    return adapter


class TelegramApi:
    """Calls Bot API methods, retrying transient failures, returning parsed results."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        token: SecretStr,
        *,
        base_url: str = DEFAULT_BASE_URL,
        rng: random.Random | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_rate_limit_waits: int = MAX_RATE_LIMIT_WAITS,
        throttle: SendThrottle | None = None,
    ) -> None:
        if max_attempts < 1 or max_rate_limit_waits < 1:
            raise ValueError(
                f"max_attempts and max_rate_limit_waits must be at least 1,"
                f" got {max_attempts!r} and {max_rate_limit_waits!r}"
            )
        self._http = http
        self._token = token
        self._base_url = base_url.rstrip("/")
        self._rng = rng if rng is not None else random.Random()
        self._max_attempts = max_attempts
        self._max_rate_limit_waits = max_rate_limit_waits
        self._throttle = throttle
        _install_httpx_redaction()

    def __repr__(self) -> str:
        return f"TelegramApi(base_url={self._base_url!r}, token={self._token!r})"

    async def call(
        self,
        method: str,
        params: Mapping[str, object] | None = None,
        *,
        result: type[T] | TypeAdapter[T],
        files: UploadFiles | None = None,
        timeout: httpx.Timeout | None = None,  # noqa: ASYNC109 (httpx's per-phase limits)
        priority: Priority | None = None,
        on_sending: Callable[[], None] | None = None,
    ) -> T:
        """Call ``method`` and parse its result as ``result``.

        ``None`` values in ``params`` are left out. Without ``files`` the body is JSON;
        with ``files`` it is multipart and nested values become JSON strings
        (docs/telegram.md, T11). *priority* overrides the method's own class in the send
        budget (:data:`bot.telegram.send_budget.PRIORITY_OF`). *on_sending* is called when
        the request is about to leave: until then, cancelling the call sends nothing.

        Raises:
            TelegramError: a subclass from :mod:`bot.telegram.errors`, after retries;
                TelegramCallDropped for a cosmetic call the send budget dropped.
        """
        adapter = _adapter_for(result)
        params = params or {}
        budgeted = (
            classify(method, params, priority=priority) if self._throttle is not None else None
        )
        raw = await self._call_with_retries(
            method, params, files, http_timeout=timeout, budgeted=budgeted, on_sending=on_sending
        )
        try:
            return adapter.validate_python(raw)
        except ValidationError as exc:
            summary = f"{exc.error_count()} validation errors"
            raise TelegramServerError(method, f"unexpected result shape: {summary}") from None

    async def _call_with_retries(
        self,
        method: str,
        params: Mapping[str, object],
        files: UploadFiles | None,
        *,
        http_timeout: httpx.Timeout | None,
        budgeted: CallClass | None,
        on_sending: Callable[[], None] | None = None,
    ) -> object:
        delays = backoff_delays(rng=self._rng)
        error: TelegramError
        failures = rate_limits = 0
        while True:
            if budgeted is not None and self._throttle is not None:
                await self._throttle.wait_turn(method, budgeted)
            if on_sending is not None:
                on_sending()
            try:
                return await self._measured(method, params, files, http_timeout=http_timeout)
            except TelegramRetryAfter as exc:
                # Telegram says exactly when to come back: that is backpressure, not a
                # fault, so it has its own, larger budget than network errors. It is
                # also a verdict on the chat the call was about (or on the whole bot):
                # the send budget holds that chat's calls, never another chat's.
                if self._throttle is not None:
                    self._throttle.rate_limited(
                        exc.retry_after, chat=budgeted.holder if budgeted is not None else None
                    )
                rate_limits += 1
                if rate_limits >= self._max_rate_limit_waits:
                    raise
                delay, error = exc.retry_after, exc
            except RETRIED_ERRORS as exc:
                failures += 1
                if failures >= self._max_attempts:
                    raise
                delay, error = next(delays), exc
            log.warning(
                "telegram_retry",
                extra=fields(
                    method=method,
                    failures=f"{failures}/{self._max_attempts}",
                    rate_limited=rate_limits,
                    delay_s=round(delay, 3),
                    error=str(error),
                ),
            )
            held = budgeted is not None and budgeted.priority is not Priority.TOAST
            if held and isinstance(error, TelegramRetryAfter):
                continue  # the throttle holds this call, with its chat's others, until then
            await trio.sleep(delay)  # an answer is never held by the budget: it waits alone

    async def _measured(
        self,
        method: str,
        params: Mapping[str, object],
        files: UploadFiles | None,
        *,
        http_timeout: httpx.Timeout | None,
    ) -> object:
        """One request, counted by method and outcome in the metrics."""
        started = trio.current_time()
        try:
            result = await self._request(method, params, files, http_timeout=http_timeout)
        except TelegramError as exc:
            TELEGRAM_REQUESTS.labels(method=method, outcome=request_outcome(exc)).inc()
            raise
        TELEGRAM_REQUESTS.labels(method=method, outcome="ok").inc()
        if method != "getUpdates":  # a long poll waits for updates by design
            TELEGRAM_SECONDS.observe(trio.current_time() - started)
        return result

    async def _request(
        self,
        method: str,
        params: Mapping[str, object],
        files: UploadFiles | None,
        *,
        http_timeout: httpx.Timeout | None,
    ) -> object:
        secret = self._token.get_secret_value()
        url = f"{self._base_url}/bot{secret}/{method}"
        send_timeout = httpx.USE_CLIENT_DEFAULT if http_timeout is None else http_timeout
        try:
            if files:
                response = await self._http.post(
                    url, data=_form_fields(params), files=files, timeout=send_timeout
                )
            else:
                response = await self._http.post(
                    url, json=_json_fields(params), timeout=send_timeout
                )
        except httpx.RequestError as exc:
            # The httpx exception carries the URL: keep only its type and redacted text,
            # and raise outside the handler so it is not even the implicit context.
            description = redact_token(f"{type(exc).__name__}: {exc}", secret)
        else:
            return parse_response(method, response.status_code, response.content, token=secret)
        raise TelegramNetworkError(method, description)

    # Typed methods, one per Bot API method the bot uses.

    async def get_me(self) -> User:
        """Return the bot's own user; a cheap check that the token works."""
        return await self.call("getMe", result=User)

    async def get_updates(
        self,
        *,
        offset: int | None,
        timeout_s: int,
        allowed_updates: Sequence[str],
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Long-poll for updates; raw dicts, so one malformed update cannot spoil a batch."""
        params = {
            "offset": offset,
            "timeout": timeout_s,
            "limit": limit,
            "allowed_updates": list(allowed_updates),
        }
        timeout = httpx.Timeout(CONNECT_TIMEOUT_S, read=timeout_s + LONG_POLL_MARGIN_S)
        return await self.call("getUpdates", params, result=list[dict[str, Any]], timeout=timeout)

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        reply_markup: InlineKeyboardMarkup | None = None,
        reply_to_message_id: int | None = None,
        disable_notification: bool = False,
        priority: Priority | None = None,
        parse_mode: Literal["HTML"] | None = None,
    ) -> Message:
        """Send plain text, without parse_mode, so user text needs no escaping; with
        ``parse_mode="HTML"`` the caller has escaped what is not markup.

        See docs/telegram.md, T13; *priority* as in :meth:`call`.
        """
        params = {
            "chat_id": chat_id,
            "text": text,
            "parse_mode": parse_mode,
            "reply_markup": reply_markup,
            "reply_parameters": _reply_parameters(reply_to_message_id),
            "disable_notification": disable_notification or None,
        }
        return await self.call("sendMessage", params, result=Message, priority=priority)

    async def send_message_draft(
        self, chat_id: int, draft_id: int, text: str, *, priority: Priority | None = None
    ) -> bool:
        """Show *text* as a reply still being written in a private chat; the same
        *draft_id* animates the changes. Ephemeral: the reply is sent with
        :meth:`send_message` at the end (docs/telegram.md, T19)."""
        params = {"chat_id": chat_id, "draft_id": draft_id, "text": text}
        return await self.call("sendMessageDraft", params, result=bool, priority=priority)

    async def answer_callback_query(
        self, callback_query_id: str, *, text: str | None = None, show_alert: bool = False
    ) -> bool:
        """Stop the button's spinner, optionally with a toast or an alert (docs/telegram.md, T8)."""
        params = {"callback_query_id": callback_query_id, "text": text, "show_alert": show_alert}
        return await self.call("answerCallbackQuery", params, result=bool)

    async def send_chat_action(self, chat_id: int, action: str = "upload_photo") -> bool:
        """Show "sending a photo" (or another action) for up to 5 seconds (docs/telegram.md, T9)."""
        params = {"chat_id": chat_id, "action": action}
        return await self.call("sendChatAction", params, result=bool)

    async def edit_message_text(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        *,
        reply_markup: InlineKeyboardMarkup | None = None,
        priority: Priority | None = None,
        on_sending: Callable[[], None] | None = None,
    ) -> None:
        """Replace a message's text; an edit to identical content counts as done.

        ``priority=Priority.COSMETIC`` lets the send budget thin or drop the edit;
        *on_sending* as in :meth:`call`.
        """
        params = {
            "chat_id": chat_id,
            "message_id": message_id,
            "text": text,
            "reply_markup": reply_markup,
        }
        await self._edit("editMessageText", params, priority=priority, on_sending=on_sending)

    async def edit_message_caption(
        self,
        chat_id: int,
        message_id: int,
        caption: str,
        *,
        reply_markup: InlineKeyboardMarkup | None = None,
        priority: Priority | None = None,
        on_sending: Callable[[], None] | None = None,
    ) -> None:
        """Replace a photo's caption (a photo has no text for ``editMessageText``); an edit
        to identical content counts as done. *priority*, *on_sending* as in :meth:`call`."""
        params = {
            "chat_id": chat_id,
            "message_id": message_id,
            "caption": caption,
            "reply_markup": reply_markup,
        }
        await self._edit("editMessageCaption", params, priority=priority, on_sending=on_sending)

    async def edit_message_reply_markup(
        self, chat_id: int, message_id: int, *, reply_markup: InlineKeyboardMarkup | None = None
    ) -> None:
        """Replace (or with ``None`` remove) a message's inline keyboard."""
        params = {"chat_id": chat_id, "message_id": message_id, "reply_markup": reply_markup}
        await self._edit("editMessageReplyMarkup", params)

    async def _edit(
        self,
        method: str,
        params: Mapping[str, object],
        *,
        priority: Priority | None = None,
        on_sending: Callable[[], None] | None = None,
    ) -> None:
        try:
            await self.call(method, params, result=object, priority=priority, on_sending=on_sending)
        except TelegramBadRequest as exc:
            if _NOT_MODIFIED not in exc.description.lower():
                raise

    async def delete_message(
        self, chat_id: int, message_id: int, *, priority: Priority | None = None
    ) -> bool:
        """Delete a message the bot may delete; *priority* as in :meth:`call`."""
        params = {"chat_id": chat_id, "message_id": message_id}
        return await self.call("deleteMessage", params, result=bool, priority=priority)

    async def set_my_commands(
        self,
        commands: Sequence[BotCommand],
        *,
        language_code: str | None = None,
        chat_id: int | None = None,
    ) -> bool:
        """Set the command menu, for all users or for one language; with *chat_id*, for
        that one chat only (``BotCommandScopeChat``: an admin's own menu)."""
        scope = {"type": "chat", "chat_id": chat_id} if chat_id is not None else None
        params = {"commands": list(commands), "language_code": language_code, "scope": scope}
        return await self.call("setMyCommands", params, result=bool)

    async def set_my_description(self, description: str, *, language_code: str | None) -> bool:
        """What an empty chat with the bot shows, up to 512 characters."""
        params = {"description": description, "language_code": language_code}
        return await self.call("setMyDescription", params, result=bool)

    async def set_my_short_description(
        self, short_description: str, *, language_code: str | None
    ) -> bool:
        """The bot's profile line and share text, up to 120 characters."""
        params = {"short_description": short_description, "language_code": language_code}
        return await self.call("setMyShortDescription", params, result=bool)

    async def delete_webhook(self, *, drop_pending_updates: bool = False) -> bool:
        """Remove the webhook so that getUpdates works (docs/telegram.md, T6)."""
        params = {"drop_pending_updates": drop_pending_updates}
        return await self.call("deleteWebhook", params, result=bool)

    async def get_webhook_info(self) -> WebhookInfo:
        """Return the webhook state; an empty ``url`` means long polling may run."""
        return await self.call("getWebhookInfo", result=WebhookInfo)

    async def send_invoice(
        self,
        chat_id: int,
        *,
        title: str,
        description: str,
        payload: str,
        price: LabeledPrice,
    ) -> Message:
        """An invoice in Telegram Stars: currency XTR, no provider token, one price line.

        See docs/telegram.md, T15.
        """
        params = {
            "chat_id": chat_id,
            "title": title,
            "description": description,
            "payload": payload,
            "currency": STARS_CURRENCY,
            "prices": [price],
        }
        return await self.call("sendInvoice", params, result=Message)

    async def create_invoice_link(
        self,
        *,
        title: str,
        description: str,
        payload: str,
        price: LabeledPrice,
        subscription_period: int | None = None,
    ) -> str:
        """A link to an invoice; the only way to sell a subscription (docs/telegram.md, T15)."""
        params = {
            "title": title,
            "description": description,
            "payload": payload,
            "currency": STARS_CURRENCY,
            "prices": [price],
            "subscription_period": subscription_period,
        }
        return await self.call("createInvoiceLink", params, result=str)

    async def answer_pre_checkout_query(
        self, pre_checkout_query_id: str, *, ok: bool, error_message: str | None = None
    ) -> bool:
        """Let the payment go on, or stop it with a sentence the buyer reads."""
        params = {
            "pre_checkout_query_id": pre_checkout_query_id,
            "ok": ok,
            "error_message": None if ok else error_message,
        }
        return await self.call("answerPreCheckoutQuery", params, result=bool)

    async def refund_star_payment(self, user_id: int, telegram_payment_charge_id: str) -> bool:
        """Give the stars of one payment back to the buyer."""
        params = {"user_id": user_id, "telegram_payment_charge_id": telegram_payment_charge_id}
        return await self.call("refundStarPayment", params, result=bool)

    async def edit_user_star_subscription(
        self, user_id: int, telegram_payment_charge_id: str, *, is_canceled: bool
    ) -> bool:
        """Stop (or allow again) the renewal of a subscription; it runs to its paid end."""
        params = {
            "user_id": user_id,
            "telegram_payment_charge_id": telegram_payment_charge_id,
            "is_canceled": is_canceled,
        }
        return await self.call("editUserStarSubscription", params, result=bool)

    async def send_photo(
        self,
        chat_id: int,
        photo: bytes | str,
        *,
        filename: str = "image.png",
        reply_to_message_id: int | None = None,
        caption: str | None = None,
        reply_markup: InlineKeyboardMarkup | None = None,
    ) -> Message:
        """Send a photo: ``bytes`` are uploaded, a ``str`` re-sends a known ``file_id``."""
        params = _file_params(chat_id, reply_to_message_id, caption, reply_markup)
        return await self._send_file("sendPhoto", "photo", photo, filename, params)

    async def send_document(
        self,
        chat_id: int,
        document: bytes | str,
        *,
        filename: str = "image.png",
        reply_to_message_id: int | None = None,
        caption: str | None = None,
        reply_markup: InlineKeyboardMarkup | None = None,
    ) -> Message:
        """Send a file as a document (no recompression, no photo size limits)."""
        params = _file_params(chat_id, reply_to_message_id, caption, reply_markup)
        return await self._send_file("sendDocument", "document", document, filename, params)

    async def edit_message_media(
        self,
        chat_id: int,
        message_id: int,
        content: bytes,
        *,
        kind: Literal["photo", "document"] = "photo",
        filename: str = "image.png",
        caption: str | None = None,
        reply_markup: InlineKeyboardMarkup | None = None,
        priority: Priority | None = None,
        on_sending: Callable[[], None] | None = None,
    ) -> Message:
        """Turn message *message_id* (a text message too) into an uploaded photo or
        document; without *reply_markup* its buttons go, without *caption* its caption
        (docs/telegram.md, T17). *priority*, *on_sending* as in :meth:`call`."""
        mime_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        media: dict[str, object] = {"type": kind, "media": f"attach://{MEDIA_FIELD}"}
        if caption is not None:
            media["caption"] = caption
        params = {
            "chat_id": chat_id,
            "message_id": message_id,
            "media": media,
            "reply_markup": reply_markup,
        }
        files = {MEDIA_FIELD: (filename, content, mime_type)}
        return await self.call(
            "editMessageMedia",
            params,
            result=Message,
            files=files,
            timeout=UPLOAD_TIMEOUT,
            priority=priority,
            on_sending=on_sending,
        )

    async def _send_file(
        self,
        method: str,
        field: str,
        content: bytes | str,
        filename: str,
        params: Mapping[str, object],
    ) -> Message:
        if isinstance(content, str):
            return await self.call(method, {**params, field: content}, result=Message)
        mime_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        files = {field: (filename, content, mime_type)}
        return await self.call(method, params, result=Message, files=files, timeout=UPLOAD_TIMEOUT)


def request_outcome(error: TelegramError) -> str:
    """A failed request's outcome label in the metrics (a closed set)."""
    if isinstance(error, TelegramRetryAfter):
        return "rate_limited"
    if isinstance(error, TelegramNetworkError):
        return "network"
    if isinstance(error, TelegramServerError):
        return "server_error"
    return "refused"  # a 4xx: bad request, forbidden, unauthorized, conflict


def _file_params(
    chat_id: int,
    reply_to_message_id: int | None,
    caption: str | None,
    reply_markup: InlineKeyboardMarkup | None,
) -> dict[str, object]:
    return {
        "chat_id": chat_id,
        "caption": caption,
        "reply_markup": reply_markup,
        "reply_parameters": _reply_parameters(reply_to_message_id),
    }


def _reply_parameters(message_id: int | None) -> dict[str, object] | None:
    if message_id is None:
        return None
    return {"message_id": message_id, "allow_sending_without_reply": True}


def _json_fields(params: Mapping[str, object]) -> dict[str, object]:
    return {
        key: to_jsonable_python(value, exclude_none=True)
        for key, value in params.items()
        if value is not None
    }


def _form_fields(params: Mapping[str, object]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, value in _json_fields(params).items():
        if isinstance(value, str):
            fields[key] = value
        else:  # numbers, booleans and nested objects alike are JSON text in a form
            fields[key] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return fields
