"""A fake Telegram Bot API server for ``httpx.MockTransport`` (or a loopback socket).

It speaks the real protocol (docs/telegram.md): ``/bot<token>/<method>`` URLs, JSON,
urlencoded or multipart bodies, the ``{"ok": ...}`` envelope with the HTTP status equal
to ``error_code``, and Telegram's own error descriptions. Tests play the users
(:meth:`FakeTelegram.user_says`, :meth:`~FakeTelegram.user_presses`, ...), read what the
bot sent (``sent``, ``edits``, ``callback_answers``, ...) and inject faults
(:meth:`~FakeTelegram.fail_next`, :meth:`~FakeTelegram.network_error_next`,
``refuse_photos``, ``latency_s``, and ``interpose`` for faults decided call by call).
Long polling really waits (with ``trio.sleep``), so the autojump clock makes idle polls
instant.
"""

from __future__ import annotations

import dataclasses
import html
import inspect
import itertools
import json
import re
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import parse_qsl

import httpx
import trio

__all__ = [
    "BOT_USER_ID",
    "CHARGE_NOT_FOUND",
    "DEFAULT_USER_ID",
    "FAKE_BASE_URL",
    "TEST_TOKEN",
    "CallbackAnswer",
    "Charge",
    "ChatAction",
    "CheckoutAnswer",
    "EditRecord",
    "FakeTelegram",
    "Invoice",
    "MemoryInbox",
    "RecordedRequest",
    "SentRecord",
    "UploadedFile",
    "too_many_requests",
]

TEST_TOKEN: Final = "123456:TEST-token-for-the-fake-api"
BOT_USER_ID: Final = 123456
DEFAULT_USER_ID: Final = 5_000_000_001  # above 2**32, as real ids can be
FAKE_BASE_URL: Final = "https://api.telegram.test"
EPOCH: Final = 1_750_000_000  # unix time of the fake's virtual time zero
DEFAULT_WAIT_S: Final = 30.0

MESSAGE_NOT_MODIFIED: Final = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD: Final = (
    "Bad Request: query is too old and response timeout expired or query ID is invalid"
)
CONFLICT_OTHER_POLL: Final = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
CONFLICT_WEBHOOK: Final = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
BLOCKED: Final = "Forbidden: bot was blocked by the user"
WRONG_FILE_ID: Final = "Bad Request: wrong file identifier/HTTP URL specified"
CHARGE_NOT_FOUND: Final = "Bad Request: CHARGE_NOT_FOUND"
CHARGE_ALREADY_REFUNDED: Final = "Bad Request: CHARGE_ALREADY_REFUNDED"
SUBSCRIPTION_PERIOD_S: Final = 2_592_000


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A multipart file part as the fake received it."""

    filename: str
    content: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request: method, decoded parameters, httpx read timeout, virtual time."""

    method: str
    params: dict[str, Any]
    content_type: str
    read_timeout: float | None
    at: float


@dataclass(frozen=True, slots=True)
class SentRecord:
    """A message the bot sent (text, photo or document)."""

    kind: Literal["message", "photo", "document"]
    chat_id: int
    message_id: int
    text: str | None
    caption: str | None
    reply_markup: dict[str, Any] | None
    reply_to_message_id: int | None
    content: bytes | None  # uploaded bytes; None when re-sent by file_id
    file_id: str | None
    filename: str | None
    disable_notification: bool
    at: float

    def buttons(self) -> list[tuple[str, str | None]]:
        """(text, callback_data) of every inline button, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [(button["text"], button.get("callback_data")) for row in rows for button in row]


@dataclass(frozen=True, slots=True)
class DraftRecord:
    chat_id: int
    draft_id: int
    text: str
    at: float


@dataclass(frozen=True, slots=True)
class EditRecord:
    chat_id: int
    message_id: int
    text: str | None  # None for a reply-markup-only edit
    reply_markup: dict[str, Any] | None
    at: float


@dataclass(frozen=True, slots=True)
class CallbackAnswer:
    text: str | None
    show_alert: bool
    at: float


@dataclass(frozen=True, slots=True)
class CheckoutAnswer:
    """``answerPreCheckoutQuery``: ok, or the sentence the buyer reads."""

    ok: bool
    error_message: str | None
    at: float


@dataclass(frozen=True, slots=True)
class Invoice:
    """``sendInvoice`` or ``createInvoiceLink`` as the fake received it (validated)."""

    method: str
    chat_id: int | None
    title: str
    description: str
    payload: str
    amount: int
    subscription_period: int | None
    link: str | None


@dataclass(frozen=True, slots=True)
class Charge:
    """A payment the fake made: the user paid *amount* stars for *payload*."""

    charge_id: str
    user_id: int
    payload: str
    amount: int
    refunded: bool = False


@dataclass(frozen=True, slots=True)
class ChatAction:
    chat_id: int
    action: str
    at: float


@dataclass(slots=True)
class _Fault:
    status: int
    description: str
    retry_after: float | None
    html: bool


class _ApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


@dataclass
class MemoryInbox:
    """An in-memory ``bot.telegram.inbox.Inbox`` with the store's semantics."""

    offset: int | None = None
    inbox: dict[int, str] = field(default_factory=dict)
    done: list[int] = field(default_factory=list)
    parked: list[tuple[int, str]] = field(default_factory=list)

    def next_offset(self) -> int | None:
        return self.offset

    def save_batch(self, updates: Sequence[tuple[int, str]], *, next_offset: int) -> None:
        for update_id, raw in updates:
            self.inbox.setdefault(update_id, raw)
        self.offset = max(next_offset, self.offset or 0)

    def pending(self) -> list[tuple[int, str]]:
        return sorted(self.inbox.items())

    def mark_done(self, update_id: int) -> None:
        self.inbox.pop(update_id, None)
        self.done.append(update_id)

    def park(self, update_id: int, reason: str) -> None:
        self.inbox.pop(update_id, None)
        self.parked.append((update_id, reason))


def _envelope_error(status: int, description: str, **parameters: object) -> httpx.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return httpx.Response(status, json=body)


def _html_error(status: int) -> httpx.Response:
    page = f"<html><head><title>{status} Bad Gateway</title></head><body>nginx</body></html>"
    return httpx.Response(status, text=page, headers={"content-type": "text/html"})


_PATH: Final = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>[A-Za-z]+)$")
_DISPOSITION_PARAM: Final = re.compile(r';\s*(?P<key>name|filename)="(?P<value>[^"]*)"')


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    match = re.search(r"boundary=\"?([^\";]+)\"?", content_type)
    if match is None:
        raise _ApiError(400, "Bad Request: multipart body without a boundary")
    fields: dict[str, Any] = {}
    for section in body.split(b"--" + match.group(1).encode())[1:]:
        if section.startswith(b"--"):
            break
        head, _, content = section.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        content = content.removesuffix(b"\r\n")
        lines = (line.partition(":") for line in head.decode().split("\r\n"))
        headers = {name.strip().lower(): value.strip() for name, _, value in lines}
        params = {
            m["key"]: m["value"]
            for m in _DISPOSITION_PARAM.finditer(headers["content-disposition"])
        }
        if "filename" in params:
            kind = headers.get("content-type", "application/octet-stream")
            fields[params["name"]] = UploadedFile(params["filename"], content, kind)
        else:
            fields[params["name"]] = content.decode()
    return fields


async def _read_params(request: httpx.Request) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = dict(request.url.params)
    content_type = request.headers.get("content-type", "")
    body = await request.aread()
    if content_type.startswith("application/json"):
        params.update(json.loads(body or b"{}"))
    elif content_type.startswith("application/x-www-form-urlencoded"):
        params.update(parse_qsl(body.decode()))
    elif content_type.startswith("multipart/form-data"):
        params.update(_parse_multipart(content_type, body))
    return content_type.partition(";")[0], params


def _int(params: dict[str, Any], key: str, default: int | None = None) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or value is None:
        raise _ApiError(400, f"Bad Request: parameter {key!r} is required")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _ApiError(400, f"Bad Request: invalid {key} specified") from None


def _bool(params: dict[str, Any], key: str) -> bool:
    return params.get(key) in (True, "true", "True", "1", 1)


def _json(params: dict[str, Any], key: str) -> Any:
    value = params.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise _ApiError(400, f"Bad Request: can't parse {key} JSON object") from None
    return value


def _check_markup(markup: Any) -> dict[str, Any] | None:
    if markup is None:
        return None
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _ApiError(400, "Bad Request: can't parse inline keyboard button")
    for button in itertools.chain.from_iterable(rows):
        if not isinstance(button, dict) or not button.get("text"):
            raise _ApiError(400, "Bad Request: can't parse inline keyboard button")
        data = button.get("callback_data")
        if data is not None and not 1 <= len(str(data).encode()) <= 64:
            raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
    checked: dict[str, Any] = markup
    return checked


class FakeTelegram:
    """The Bot API as one bot sees it: users who act, and a record of what the bot did."""

    def __init__(self, token: str = TEST_TOKEN) -> None:
        self.token = token
        self.bot_user = {
            "id": BOT_USER_ID,
            "is_bot": True,
            "first_name": "Persona",
            "username": "persona_test_bot",
        }
        self.webhook_url = ""
        self.refuse_photos: str | None = None  # a description: sendPhoto → 400 with it
        self.latency_s: dict[str, float] = {}  # method -> seconds each call takes
        # Asked first about every call: a response to answer instead (a 429, a 5xx), or
        # None to answer as usual; it may raise an httpx error (the network).
        self.interpose: Callable[[str, httpx.Request], httpx.Response | None] | None = None
        self.allowed_updates: list[str] | None = None
        self.sent: list[SentRecord] = []
        self.edits: list[EditRecord] = []
        self.chat_commands: dict[tuple[int, str], list[Any]] = {}  # (chat, language) → menu
        self.drafts: list[DraftRecord] = []
        self.drafts_supported = True  # False: an older Bot API server (404 for the method)
        self.descriptions: dict[tuple[str, str], str] = {}  # (field, language) → text
        # Messages turned into a photo or document by editMessageMedia; ``sent`` holds
        # them as they look now (the same message_id, kind "photo" or "document").
        self.media_edits: list[SentRecord] = []
        self.caption_edits: list[EditRecord] = []  # editMessageCaption, caption as text
        self.deleted: list[tuple[int, int]] = []
        self.callback_answers: dict[str, CallbackAnswer] = {}
        self.chat_actions: list[ChatAction] = []
        self.commands: dict[str, list[dict[str, Any]]] = {}  # language_code ("" = all)
        self.calls: list[str] = []
        self.requests: list[RecordedRequest] = []
        self.blocked: set[int] = set()
        self.invoices: list[Invoice] = []
        self.checkout_answers: dict[str, CheckoutAnswer] = {}
        self.charges: dict[str, Charge] = {}
        self.subscription_cancels: list[tuple[int, str, bool]] = []
        self._charge_ids = itertools.count(1)
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(700_000_001)
        self._query_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = defaultdict(lambda: itertools.count(1))
        self._chats: dict[int, dict[str, Any]] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._files: dict[str, bytes] = {}
        self._open_queries: set[str] = set()
        self._faults: dict[str, deque[_Fault]] = defaultdict(deque)
        self._network_errors: dict[str, int] = defaultdict(int)
        self._poll_generation = 0
        self._changed = trio.Event()
        self._methods: dict[str, Callable[[dict[str, Any]], Any]] = {
            "getMe": lambda _: self.bot_user,
            "getUpdates": self._get_updates,
            "getWebhookInfo": self._get_webhook_info,
            "deleteWebhook": self._delete_webhook,
            "sendMessage": self._send_message,
            "sendPhoto": lambda p: self._send_file(p, "photo"),
            "sendDocument": lambda p: self._send_file(p, "document"),
            "sendChatAction": self._send_chat_action,
            "sendMessageDraft": self._send_message_draft,
            "answerCallbackQuery": self._answer_callback_query,
            "editMessageText": lambda p: self._edit(p, with_text=True),
            "editMessageReplyMarkup": lambda p: self._edit(p, with_text=False),
            "editMessageMedia": self._edit_media,
            "editMessageCaption": self._edit_caption,
            "deleteMessage": self._delete_message,
            "setMyCommands": self._set_my_commands,
            "setMyDescription": lambda p: self._set_description(p, "description", 512),
            "setMyShortDescription": lambda p: self._set_description(p, "short_description", 120),
            "sendInvoice": self._send_invoice,
            "createInvoiceLink": self._create_invoice_link,
            "answerPreCheckoutQuery": self._answer_pre_checkout_query,
            "refundStarPayment": self._refund_star_payment,
            "editUserStarSubscription": self._edit_user_star_subscription,
        }

    # What users do.

    def user_says(
        self,
        text: str,
        *,
        user_id: int = DEFAULT_USER_ID,
        chat_id: int | None = None,
        chat_type: str = "private",
        language_code: str = "ru",
        first_name: str = "Аня",
        reply_to_message_id: int | None = None,
    ) -> int:
        """A user writes ``text``; returns the new update's ``update_id``."""
        user = self._user(user_id, language_code, first_name)
        chat = self._chat(user_id if chat_id is None else chat_id, chat_type, user)
        message = self._new_message(chat, user, text=text)
        if reply_to_message_id is not None:
            replied = self._messages.get((chat["id"], reply_to_message_id))
            if replied is not None:
                message["reply_to_message"] = replied
        return self.add_raw_update({"message": message})

    def user_presses(
        self,
        message_id: int,
        callback_data: str,
        *,
        user_id: int = DEFAULT_USER_ID,
        chat_id: int | None = None,
        language_code: str = "ru",
    ) -> str:
        """A user presses a button under ``message_id``; returns the callback query id."""
        user = self._user(user_id, language_code, "Аня")
        chat_key = user_id if chat_id is None else chat_id
        message = self._messages.get((chat_key, message_id))
        if message is None:  # what Telegram sends for a message it no longer shows
            chat = self._chats.get(chat_key, {"id": chat_key, "type": "private"})
            message = {"chat": chat, "message_id": message_id, "date": 0}
        query_id = f"{next(self._query_ids)}{user_id % 10_000:04d}"
        self._open_queries.add(query_id)
        query = {
            "id": query_id,
            "from": user,
            "message": message,
            "chat_instance": f"ci{chat_key}",
            "data": callback_data,
        }
        self.add_raw_update({"callback_query": query})
        return query_id

    def user_blocks_bot(self, user_id: int = DEFAULT_USER_ID) -> int:
        """The user blocks the bot: sends to them fail with 403; a my_chat_member update."""
        self.blocked.add(user_id)
        user = self._user(user_id, "ru", "Аня")
        chat = self._chat(user_id, "private", user)
        member_update = {
            "chat": chat,
            "from": user,
            "date": self._now(),
            "old_chat_member": {"status": "member", "user": self.bot_user},
            "new_chat_member": {"status": "kicked", "user": self.bot_user, "until_date": 0},
        }
        return self.add_raw_update({"my_chat_member": member_update})

    def user_checks_out(
        self,
        payload: str,
        total_amount: int,
        *,
        user_id: int = DEFAULT_USER_ID,
        currency: str = "XTR",
        language_code: str = "ru",
    ) -> str:
        """The user presses "Pay" on an invoice: a ``pre_checkout_query``; its id."""
        user = self._user(user_id, language_code, "Аня")
        query_id = f"pcq{next(self._query_ids)}"
        query = {
            "id": query_id,
            "from": user,
            "currency": currency,
            "total_amount": total_amount,
            "invoice_payload": payload,
        }
        self.add_raw_update({"pre_checkout_query": query})
        return query_id

    def payment_succeeds(
        self,
        payload: str,
        total_amount: int,
        *,
        user_id: int = DEFAULT_USER_ID,
        charge_id: str | None = None,
        subscription_expiration_date: int | None = None,
        is_recurring: bool = False,
        is_first_recurring: bool = False,
        language_code: str = "ru",
    ) -> str:
        """Telegram's ``successful_payment`` service message; the charge id.

        Pass the same *charge_id* again to redeliver the same payment.
        """
        charge_id = charge_id or f"stxCharge{next(self._charge_ids):06d}"
        self.charges.setdefault(charge_id, Charge(charge_id, user_id, payload, total_amount))
        paid: dict[str, Any] = {
            "currency": "XTR",
            "total_amount": total_amount,
            "invoice_payload": payload,
            "telegram_payment_charge_id": charge_id,
            "provider_payment_charge_id": "",
        }
        if subscription_expiration_date is not None:
            paid["subscription_expiration_date"] = subscription_expiration_date
        if is_recurring:
            paid["is_recurring"] = True
        if is_first_recurring:
            paid["is_first_recurring"] = True
        self._service_message(user_id, language_code, {"successful_payment": paid})
        return charge_id

    def payment_refunded(self, charge_id: str, *, language_code: str = "ru") -> int:
        """Telegram's ``refunded_payment`` service message for a known charge."""
        charge = self.charges[charge_id]
        self.charges[charge_id] = Charge(
            charge.charge_id, charge.user_id, charge.payload, charge.amount, refunded=True
        )
        refunded = {
            "currency": "XTR",
            "total_amount": charge.amount,
            "invoice_payload": charge.payload,
            "telegram_payment_charge_id": charge_id,
        }
        return self._service_message(charge.user_id, language_code, {"refunded_payment": refunded})

    async def user_buys(
        self, payload: str, total_amount: int, *, user_id: int = DEFAULT_USER_ID
    ) -> str | None:
        """Checkout, then (if the bot said ok) the payment; the charge id or None."""
        query_id = self.user_checks_out(payload, total_amount, user_id=user_id)
        await self.wait_for(lambda: query_id in self.checkout_answers)
        if not self.checkout_answers[query_id].ok:
            return None
        return self.payment_succeeds(payload, total_amount, user_id=user_id)

    def _service_message(self, user_id: int, language_code: str, fields: dict[str, Any]) -> int:
        user = self._user(user_id, language_code, "Аня")
        chat = self._chat(user_id, "private", user)
        message = self._new_message(chat, user, text=None)
        message.update(fields)
        return self.add_raw_update({"message": message})

    def add_raw_update(self, update: dict[str, Any]) -> int:
        """Queue any update as is (forged shapes too); an ``update_id`` is added if absent."""
        update = dict(update)
        update.setdefault("update_id", next(self._update_ids))
        self._updates.append(update)
        self._notify()
        return int(update["update_id"])

    # Fault injection.

    def fail_next(
        self,
        method: str,
        status: int,
        description: str,
        *,
        retry_after: float | None = None,
        times: int = 1,
        html: bool | None = None,
    ) -> None:
        """The next ``times`` calls of ``method`` fail; 502/504 answer an HTML page."""
        as_html = status in (502, 504) if html is None else html
        for _ in range(times):
            self._faults[method].append(_Fault(status, description, retry_after, as_html))

    def network_error_next(self, method: str, *, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` never get a reply (httpx.ConnectError)."""
        self._network_errors[method] += times

    # Reading the record.

    def texts_to(self, chat_id: int = DEFAULT_USER_ID) -> list[str]:
        """The texts (or captions) the bot sent to one chat, in order."""
        return [s.text or s.caption or "" for s in self.sent if s.chat_id == chat_id]

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """A message as the chat shows it now (after edits), or None if deleted."""
        return self._messages.get((chat_id, message_id))

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by a getUpdates offset."""
        return list(self._updates)

    async def wait_for(
        self, predicate: Callable[[], bool], *, timeout_s: float = DEFAULT_WAIT_S
    ) -> None:
        """Wait until ``predicate()`` over the fake's records is true; re-checked per call.

        Raises:
            trio.TooSlowError: not true within ``timeout_s``.
        """
        with trio.fail_after(timeout_s):
            while not predicate():
                await self._changed.wait()

    # The HTTP side.

    async def handler(self, request: httpx.Request) -> httpx.Response:
        """The ``httpx.MockTransport`` handler: one Bot API request → one reply."""
        match = _PATH.match(request.url.path)
        if match is None:
            return _envelope_error(404, "Not Found")
        method = match["method"]
        self.calls.append(method)
        if match["token"] != self.token:
            return _envelope_error(401, "Unauthorized")
        content_type, params = await _read_params(request)
        read_timeout = request.extensions.get("timeout", {}).get("read")
        self.requests.append(
            RecordedRequest(method, params, content_type, read_timeout, trio.current_time())
        )
        try:
            if self.latency_s.get(method):
                await trio.sleep(self.latency_s[method])
            return await self._answer(request, method, params)
        finally:
            self._notify()

    async def _answer(
        self, request: httpx.Request, method: str, params: dict[str, Any]
    ) -> httpx.Response:
        if self.interpose is not None:
            instead = self.interpose(method, request)
            if instead is not None:
                return instead
        if self._network_errors[method] > 0:
            self._network_errors[method] -= 1
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if self._faults[method]:
            fault = self._faults[method].popleft()
            if fault.html:
                return _html_error(fault.status)
            extra = {} if fault.retry_after is None else {"retry_after": fault.retry_after}
            return _envelope_error(fault.status, fault.description, **extra)
        implementation = self._methods.get(method)
        if implementation is None:
            return _envelope_error(404, "Not Found")
        try:
            result = implementation(params)
            if inspect.isawaitable(result):
                result = await result
        except _ApiError as exc:
            return _envelope_error(exc.status, exc.description)
        return httpx.Response(200, json={"ok": True, "result": result})

    # Methods.

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook_url:
            raise _ApiError(409, CONFLICT_WEBHOOK)
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()  # an older long poll wakes up and fails with 409
        if "allowed_updates" in params:
            self.allowed_updates = list(_json(params, "allowed_updates"))
        offset = params.get("offset")
        if offset is not None:
            self._updates = [u for u in self._updates if u["update_id"] >= int(offset)]
        limit = min(max(_int(params, "limit", 100), 1), 100)
        deadline = trio.current_time() + min(max(_int(params, "timeout", 0), 0), 50)
        while True:
            if generation != self._poll_generation:
                raise _ApiError(409, CONFLICT_OTHER_POLL)
            batch = [u for u in self._updates if self._allowed(u)][:limit]
            if batch or trio.current_time() >= deadline:
                return batch
            with trio.move_on_at(deadline):
                await self._changed.wait()

    def _allowed(self, update: dict[str, Any]) -> bool:
        if not self.allowed_updates:
            return True
        return any(kind in update for kind in self.allowed_updates)

    def _get_webhook_info(self, _: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    def _delete_webhook(self, params: dict[str, Any]) -> bool:
        self.webhook_url = ""
        if _bool(params, "drop_pending_updates"):
            self._updates.clear()
        return True

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._writable_chat(params)
        text = str(params.get("text", ""))
        if params.get("parse_mode") == "HTML":
            text = _visible_html(text)
        if not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            raise _ApiError(400, "Bad Request: message is too long")
        return self._deliver(chat, params, "message", text=text)

    def _send_file(self, params: dict[str, Any], kind: Literal["photo", "document"]) -> Any:
        chat = self._writable_chat(params)
        if kind == "photo" and self.refuse_photos:
            raise _ApiError(400, self.refuse_photos)
        caption = params.get("caption")
        if caption is not None and len(str(caption)) > 1024:
            raise _ApiError(400, "Bad Request: message caption is too long")
        value = params.get(kind)
        if isinstance(value, UploadedFile):
            if not value.content:
                raise _ApiError(400, "Bad Request: file must be non-empty")
            file_id = f"{kind}-file-{next(self._file_ids)}"
            self._files[file_id] = value.content
            upload: UploadedFile | None = value
        elif isinstance(value, str) and value in self._files:
            file_id, upload = value, None
        elif value is None:
            raise _ApiError(400, f"Bad Request: there is no {kind} in the request")
        else:
            raise _ApiError(400, WRONG_FILE_ID)
        return self._deliver(chat, params, kind, file_id=file_id, upload=upload)

    def _deliver(
        self,
        chat: dict[str, Any],
        params: dict[str, Any],
        kind: Literal["message", "photo", "document"],
        *,
        text: str | None = None,
        file_id: str | None = None,
        upload: UploadedFile | None = None,
    ) -> dict[str, Any]:
        markup = _check_markup(_json(params, "reply_markup"))
        reply_to = self._reply_target(chat, params)
        caption = None if params.get("caption") is None else str(params["caption"])
        message = self._new_message(chat, self.bot_user, text=text)
        if caption is not None:
            message["caption"] = caption
        if markup is not None:
            message["reply_markup"] = markup
        if reply_to is not None and (chat["id"], reply_to) in self._messages:
            message["reply_to_message"] = self._messages[(chat["id"], reply_to)]
        content = self._files.get(file_id) if file_id else None
        if kind == "photo" and file_id is not None:
            message["photo"] = _photo_sizes(file_id, len(content or b""))
        if kind == "document" and file_id is not None:
            name = upload.filename if upload else "file"
            message["document"] = {
                "file_id": file_id,
                "file_unique_id": f"u-{file_id}",
                "file_name": name,
                "file_size": len(content or b""),
            }
        self.sent.append(
            SentRecord(
                kind=kind,
                chat_id=chat["id"],
                message_id=message["message_id"],
                text=text,
                caption=caption,
                reply_markup=markup,
                reply_to_message_id=reply_to,
                content=upload.content if upload else None,
                file_id=file_id,
                filename=upload.filename if upload else None,
                disable_notification=_bool(params, "disable_notification"),
                at=trio.current_time(),
            )
        )
        return message

    def _reply_target(self, chat: dict[str, Any], params: dict[str, Any]) -> int | None:
        reply = _json(params, "reply_parameters")
        if reply is None and params.get("reply_to_message_id") is not None:
            reply = {"message_id": params["reply_to_message_id"]}
        if reply is None:
            return None
        message_id = _int(reply, "message_id")
        known = (chat["id"], message_id) in self._messages
        if not known and not reply.get("allow_sending_without_reply"):
            raise _ApiError(400, "Bad Request: message to be replied not found")
        return message_id

    def _send_message_draft(self, params: dict[str, Any]) -> bool:
        """sendMessageDraft (Bot API 9.5): private chats only, a non-zero draft_id."""
        if not self.drafts_supported:
            raise _ApiError(404, "Not Found")
        chat = self._writable_chat(params)
        if chat["type"] != "private":
            raise _ApiError(400, "Bad Request: the chat must be a private chat")
        draft_id = _int(params, "draft_id")
        if draft_id == 0:
            raise _ApiError(400, "Bad Request: draft_id must be non-zero")
        text = str(params.get("text", ""))
        if len(text) > 4096:
            raise _ApiError(400, "Bad Request: text is too long")
        self.drafts.append(DraftRecord(chat["id"], draft_id, text, trio.current_time()))
        return True

    def _send_chat_action(self, params: dict[str, Any]) -> bool:
        chat = self._writable_chat(params)
        self.chat_actions.append(
            ChatAction(chat["id"], str(params.get("action")), trio.current_time())
        )
        return True

    def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id"))
        if query_id not in self._open_queries:
            raise _ApiError(400, QUERY_TOO_OLD)
        self._open_queries.discard(query_id)
        text = params.get("text")
        self.callback_answers[query_id] = CallbackAnswer(
            None if text is None else str(text), _bool(params, "show_alert"), trio.current_time()
        )
        return True

    def _edit(self, params: dict[str, Any], *, with_text: bool) -> dict[str, Any]:
        chat = self._writable_chat(params)
        message_id = _int(params, "message_id")
        message = self._messages.get((chat["id"], message_id))
        if message is None or message["from"]["id"] != BOT_USER_ID:
            raise _ApiError(400, "Bad Request: message to edit not found")
        if with_text and "text" not in message:  # a photo's words are its caption
            raise _ApiError(400, "Bad Request: there is no text in the message to edit")
        markup = _check_markup(_json(params, "reply_markup"))
        text = str(params.get("text", "")) if with_text else message.get("text")
        if text == message.get("text") and markup == message.get("reply_markup"):
            raise _ApiError(400, MESSAGE_NOT_MODIFIED)
        edited = {k: v for k, v in message.items() if k != "reply_markup"}
        edited.update({"text": text, "edit_date": self._now()} if with_text else {})
        if markup is not None:
            edited["reply_markup"] = markup
        self._messages[(chat["id"], message_id)] = edited
        record_text = text if with_text else None
        self.edits.append(
            EditRecord(chat["id"], message_id, record_text, markup, trio.current_time())
        )
        return edited

    def _edit_caption(self, params: dict[str, Any]) -> dict[str, Any]:
        """editMessageCaption: only a photo or document has a caption to edit."""
        chat = self._writable_chat(params)
        message_id = _int(params, "message_id")
        message = self._messages.get((chat["id"], message_id))
        if message is None or message["from"]["id"] != BOT_USER_ID:
            raise _ApiError(400, "Bad Request: message to edit not found")
        if "photo" not in message and "document" not in message:
            raise _ApiError(400, "Bad Request: there is no caption in the message to edit")
        markup = _check_markup(_json(params, "reply_markup"))
        caption = str(params.get("caption", ""))
        if caption == message.get("caption", "") and markup == message.get("reply_markup"):
            raise _ApiError(400, MESSAGE_NOT_MODIFIED)
        edited = {k: v for k, v in message.items() if k != "reply_markup"}
        edited.update({"caption": caption, "edit_date": self._now()})
        if markup is not None:
            edited["reply_markup"] = markup
        self._messages[(chat["id"], message_id)] = edited
        self.caption_edits.append(
            EditRecord(chat["id"], message_id, caption, markup, trio.current_time())
        )
        return edited

    def _edit_media(self, params: dict[str, Any]) -> dict[str, Any]:
        """editMessageMedia: any of the bot's messages, a text one too, becomes the
        uploaded photo or document; buttons only if given (docs/telegram.md, T17)."""
        chat = self._writable_chat(params)
        message_id = _int(params, "message_id")
        message = self._messages.get((chat["id"], message_id))
        if message is None or message["from"]["id"] != BOT_USER_ID:
            raise _ApiError(400, "Bad Request: message to edit not found")
        media = _json(params, "media")
        if not isinstance(media, dict) or media.get("type") not in ("photo", "document"):
            raise _ApiError(400, "Bad Request: can't parse InputMedia: media type is invalid")
        kind: Literal["photo", "document"] = media["type"]
        if kind == "photo" and self.refuse_photos:
            raise _ApiError(400, self.refuse_photos)
        source = str(media.get("media", ""))
        upload = params.get(source.removeprefix("attach://"))
        if not source.startswith("attach://") or not isinstance(upload, UploadedFile):
            raise _ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        if not upload.content:
            raise _ApiError(400, "Bad Request: file must be non-empty")
        file_id = f"{kind}-file-{next(self._file_ids)}"
        self._files[file_id] = upload.content
        markup = _check_markup(_json(params, "reply_markup"))
        caption = None if media.get("caption") is None else str(media["caption"])
        if caption is not None and len(caption) > 1024:
            raise _ApiError(400, "Bad Request: message caption is too long")
        dropped = ("text", "reply_markup", "photo", "document", "caption")
        edited = {k: v for k, v in message.items() if k not in dropped}
        edited["edit_date"] = self._now()
        if caption is not None:
            edited["caption"] = caption
        if kind == "photo":
            edited["photo"] = _photo_sizes(file_id, len(upload.content))
        else:
            edited["document"] = {
                "file_id": file_id,
                "file_unique_id": f"u-{file_id}",
                "file_name": upload.filename,
                "file_size": len(upload.content),
            }
        if markup is not None:
            edited["reply_markup"] = markup
        self._messages[(chat["id"], message_id)] = edited
        index = next(i for i, r in enumerate(self.sent) if r.message_id == message_id
                     and r.chat_id == chat["id"])  # fmt: skip
        record = dataclasses.replace(
            self.sent[index],
            kind=kind,
            text=None,
            caption=caption,
            reply_markup=markup,
            content=upload.content,
            file_id=file_id,
            filename=upload.filename,
            at=trio.current_time(),
        )
        self.sent[index] = record
        self.media_edits.append(record)
        return edited

    def _delete_message(self, params: dict[str, Any]) -> bool:
        chat_id = _int(params, "chat_id")
        message_id = _int(params, "message_id")
        if self._messages.pop((chat_id, message_id), None) is None:
            raise _ApiError(400, "Bad Request: message to delete not found")
        self.deleted.append((chat_id, message_id))
        return True

    def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = _json(params, "commands")
        if not isinstance(commands, list):
            raise _ApiError(400, "Bad Request: parameter 'commands' is required")
        language = str(params.get("language_code") or "")
        scope = _json(params, "scope")
        if scope is None or scope.get("type") == "default":
            self.commands[language] = commands
        elif scope.get("type") == "chat" and isinstance(scope.get("chat_id"), int):
            self.chat_commands[(scope["chat_id"], language)] = commands
        else:
            raise _ApiError(400, "Bad Request: can't parse BotCommandScope")
        return True

    def _set_description(self, params: dict[str, Any], field: str, limit: int) -> bool:
        """setMyDescription / setMyShortDescription, per language."""
        text = str(params.get(field, ""))
        if len(text) > limit:
            raise _ApiError(400, f"Bad Request: {field} is too long")
        self.descriptions[(field, str(params.get("language_code") or ""))] = text
        return True

    def _check_invoice(self, params: dict[str, Any]) -> tuple[str, str, str, int]:
        title, description = str(params.get("title", "")), str(params.get("description", ""))
        payload = str(params.get("payload", ""))
        if not 1 <= len(title) <= 32:
            raise _ApiError(400, "Bad Request: invoice title length must be 1-32 characters")
        if not 1 <= len(description) <= 255:
            raise _ApiError(400, "Bad Request: invoice description length must be 1-255")
        if not 1 <= len(payload.encode()) <= 128:
            raise _ApiError(400, "Bad Request: invoice payload length must be 1-128 bytes")
        if params.get("currency") != "XTR":
            raise _ApiError(400, "Bad Request: CURRENCY_INVALID")
        if params.get("provider_token"):
            raise _ApiError(400, "Bad Request: PROVIDER_TOKEN_INVALID (Stars need none)")
        prices = _json(params, "prices")
        if not isinstance(prices, list) or len(prices) != 1:
            raise _ApiError(400, "Bad Request: STARS_INVOICE_INVALID (one price item)")
        amount = prices[0].get("amount") if isinstance(prices[0], dict) else None
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 1:
            raise _ApiError(400, "Bad Request: STARS_INVOICE_INVALID (whole stars)")
        return title, description, payload, amount

    def _send_invoice(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._writable_chat(params)
        if "subscription_period" in params:
            raise _ApiError(400, "Bad Request: subscription_period is for createInvoiceLink")
        title, description, payload, amount = self._check_invoice(params)
        self.invoices.append(
            Invoice("sendInvoice", chat["id"], title, description, payload, amount, None, None)
        )
        message = self._deliver(chat, params, "message")
        message["invoice"] = {
            "title": title,
            "description": description,
            "start_parameter": "",
            "currency": "XTR",
            "total_amount": amount,
        }
        return message

    def _create_invoice_link(self, params: dict[str, Any]) -> str:
        title, description, payload, amount = self._check_invoice(params)
        period = params.get("subscription_period")
        if period is not None:
            if int(period) != SUBSCRIPTION_PERIOD_S:
                raise _ApiError(400, "Bad Request: SUBSCRIPTION_PERIOD_INVALID")
            if amount > 10_000:
                raise _ApiError(400, "Bad Request: STARS_INVOICE_INVALID (at most 10000)")
        link = f"https://t.me/$invoice{len(self.invoices) + 1}"
        self.invoices.append(
            Invoice(
                "createInvoiceLink",
                None,
                title,
                description,
                payload,
                amount,
                None if period is None else int(period),
                link,
            )
        )
        return link

    def _answer_pre_checkout_query(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("pre_checkout_query_id"))
        if query_id in self.checkout_answers:
            raise _ApiError(400, QUERY_TOO_OLD)
        ok = _bool(params, "ok")
        error = params.get("error_message")
        if not ok and not error:
            raise _ApiError(400, "Bad Request: error_message is required when ok is false")
        self.checkout_answers[query_id] = CheckoutAnswer(
            ok, None if error is None else str(error), trio.current_time()
        )
        return True

    def _refund_star_payment(self, params: dict[str, Any]) -> bool:
        user_id = _int(params, "user_id")
        charge = self.charges.get(str(params.get("telegram_payment_charge_id")))
        if charge is None or charge.user_id != user_id:
            raise _ApiError(400, CHARGE_NOT_FOUND)
        if charge.refunded:
            raise _ApiError(400, CHARGE_ALREADY_REFUNDED)
        self.charges[charge.charge_id] = Charge(
            charge.charge_id, charge.user_id, charge.payload, charge.amount, refunded=True
        )
        return True

    def _edit_user_star_subscription(self, params: dict[str, Any]) -> bool:
        user_id = _int(params, "user_id")
        charge_id = str(params.get("telegram_payment_charge_id"))
        charge = self.charges.get(charge_id)
        if charge is None or charge.user_id != user_id:
            raise _ApiError(400, CHARGE_NOT_FOUND)
        self.subscription_cancels.append((user_id, charge_id, _bool(params, "is_canceled")))
        return True

    # Helpers.

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _now(self) -> int:
        return EPOCH + int(trio.current_time())

    def _user(self, user_id: int, language_code: str, first_name: str) -> dict[str, Any]:
        return {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name,
            "language_code": language_code,
        }

    def _chat(self, chat_id: int, chat_type: str, user: dict[str, Any]) -> dict[str, Any]:
        if chat_id not in self._chats:
            chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
            if chat_type == "private":
                chat["first_name"] = user["first_name"]
            else:
                chat["title"] = f"Group {chat_id}"
            self._chats[chat_id] = chat
        return self._chats[chat_id]

    def _writable_chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _int(params, "chat_id")
        chat = self._chats.get(chat_id)
        if chat is None:
            raise _ApiError(400, "Bad Request: chat not found")
        if chat["type"] == "private" and chat_id in self.blocked:
            raise _ApiError(403, BLOCKED)
        return chat

    def _new_message(
        self, chat: dict[str, Any], sender: dict[str, Any], *, text: str | None
    ) -> dict[str, Any]:
        message_id = next(self._message_ids[chat["id"]])
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": self._now(),
            "chat": chat,
            "from": sender,
        }
        if text is not None:
            message["text"] = text
        self._messages[(chat["id"], message_id)] = message
        return message


def _photo_sizes(file_id: str, size: int) -> list[dict[str, Any]]:
    return [
        {
            "file_id": f"{file_id}-thumb",
            "file_unique_id": f"u-{file_id}-t",
            "width": 90,
            "height": 90,
            "file_size": size // 50,
        },
        {
            "file_id": file_id,
            "file_unique_id": f"u-{file_id}",
            "width": 1024,
            "height": 1024,
            "file_size": size,
        },
    ]


_HTML_TAG = re.compile(r"</?([a-z-]+)[^>]*>")
_HTML_TAGS = frozenset({"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a",
                        "code", "pre", "tg-spoiler", "blockquote"})  # fmt: skip


def _visible_html(text: str) -> str:
    """What a client shows for an HTML-formatted text: the tags Telegram knows removed,
    entities decoded; any other tag is refused as Telegram refuses it."""
    for match in _HTML_TAG.finditer(text):
        if match.group(1) not in _HTML_TAGS:
            raise _ApiError(
                400, f'Bad Request: can\'t parse entities: Unsupported start tag "{match.group(1)}"'
            )
    return html.unescape(_HTML_TAG.sub("", text))


def too_many_requests(retry_after: int) -> httpx.Response:
    """Telegram's 429, as a fault hook answers a call with it."""
    return httpx.Response(
        429,
        json={
            "ok": False,
            "error_code": 429,
            "description": f"Too Many Requests: retry after {retry_after}",
            "parameters": {"retry_after": retry_after},
        },
    )
