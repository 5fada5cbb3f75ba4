"""Update → command: what the user asked for, decided without any I/O.

Every Telegram update becomes exactly one :data:`Command`. The handlers act on commands;
nothing here awaits, so the whole table is tested with plain functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from bot.core.buttons import Button, decode
from bot.core.texts import Lang, lang_of
from bot.telegram.types import (
    CallbackQuery,
    Message,
    PreCheckoutQuery,
    RefundedPayment,
    SuccessfulPayment,
    Update,
    User,
)

__all__ = [
    "ADMIN_COMMANDS",
    "MAX_USER_TEXT_CHARS",
    "AdminCmd",
    "BalanceCmd",
    "BlockedChange",
    "BuyCmd",
    "ChatText",
    "Command",
    "Context",
    "ForgetCmd",
    "HelpCmd",
    "Ignored",
    "NonText",
    "PayInfoCmd",
    "PaymentReceived",
    "PaymentRefunded",
    "PersonaCmd",
    "PreCheckout",
    "Press",
    "PrivacyCmd",
    "ResetCmd",
    "StartCmd",
    "UnknownCallback",
    "UnknownCmd",
    "route",
]

MAX_USER_TEXT_CHARS: Final = 2000  # what reaches the LLM; Telegram allows 4096
# A deep link's payload (t.me/<bot>?start=<payload>): Telegram allows up to 64 of these
# characters (docs/telegram.md, T16); anything else is not a payload we made.
_START_PAYLOAD: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class Context:
    """Who is talking, where."""

    chat_id: int
    chat_type: str
    user_id: int
    first_name: str
    language_code: str | None
    update_id: int  # what a handler's effects are applied once for (``UpdateInbox.claim``)

    @property
    def private(self) -> bool:
        return self.chat_type == "private"

    @property
    def lang(self) -> Lang:
        return lang_of(self.language_code)


@dataclass(frozen=True, slots=True)
class StartCmd:
    """``/start``, or ``/start <payload>`` from a deep link (``t.me/<bot>?start=vera``)."""

    ctx: Context
    payload: str | None = None


@dataclass(frozen=True, slots=True)
class HelpCmd:
    ctx: Context


@dataclass(frozen=True, slots=True)
class PersonaCmd:
    ctx: Context


@dataclass(frozen=True, slots=True)
class ResetCmd:
    """``/reset``: the conversation with the current persona starts over."""

    ctx: Context


@dataclass(frozen=True, slots=True)
class BalanceCmd:
    ctx: Context


@dataclass(frozen=True, slots=True)
class ForgetCmd:
    """``/forget``: delete my conversation and the texts the bot keeps of it."""

    ctx: Context


@dataclass(frozen=True, slots=True)
class PrivacyCmd:
    """``/privacy``: what the bot keeps of a user, for how long, and how to erase it."""

    ctx: Context


@dataclass(frozen=True, slots=True)
class BuyCmd:
    ctx: Context


@dataclass(frozen=True, slots=True)
class PayInfoCmd:
    """``/paysupport`` or ``/terms``: a text the operator keeps in the personas file."""

    ctx: Context
    name: str  # "paysupport" or "terms"


@dataclass(frozen=True, slots=True)
class AdminCmd:
    """``/grant <user_id> <n>``, ``/subscribe <user_id> <days>``, ``/stats [7d]``; args unparsed."""

    ctx: Context
    name: str
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UnknownCmd:
    ctx: Context


@dataclass(frozen=True, slots=True)
class ChatText:
    ctx: Context
    message_id: int
    text: str  # already cut to MAX_USER_TEXT_CHARS


@dataclass(frozen=True, slots=True)
class NonText:
    """A sticker, photo, voice…: the bot only understands text."""

    ctx: Context


B = TypeVar("B", bound=Button)


@dataclass(frozen=True, slots=True)
class Press(Generic[B]):
    """A press on one of the bot's inline buttons, *button* its decoded payload."""

    ctx: Context
    query_id: str
    message_id: int  # the message the button sits under
    button: B


@dataclass(frozen=True, slots=True)
class PreCheckout:
    """Telegram asks whether a checkout may go on; answered within 10 seconds."""

    query: PreCheckoutQuery
    lang: Lang


@dataclass(frozen=True, slots=True)
class PaymentReceived:
    ctx: Context
    payment: SuccessfulPayment


@dataclass(frozen=True, slots=True)
class PaymentRefunded:
    ctx: Context
    refund: RefundedPayment


@dataclass(frozen=True, slots=True)
class UnknownCallback:
    """Forged, stale or foreign callback data: answered, otherwise ignored."""

    query_id: str
    user_id: int
    lang: Lang


@dataclass(frozen=True, slots=True)
class BlockedChange:
    user_id: int
    blocked: bool


@dataclass(frozen=True, slots=True)
class Ignored:
    why: str


Command = (
    StartCmd
    | HelpCmd
    | PersonaCmd
    | BalanceCmd
    | BuyCmd
    | PayInfoCmd
    | ForgetCmd
    | PrivacyCmd
    | ResetCmd
    | AdminCmd
    | UnknownCmd
    | ChatText
    | NonText
    | Press[Button]
    | PreCheckout
    | PaymentReceived
    | PaymentRefunded
    | UnknownCallback
    | BlockedChange
    | Ignored
)

_SIMPLE_COMMANDS: Final[
    dict[
        str,
        type[HelpCmd | PersonaCmd | BalanceCmd | BuyCmd | ForgetCmd | PrivacyCmd | ResetCmd],
    ]
] = {
    "buy": BuyCmd,
    "help": HelpCmd,
    "persona": PersonaCmd,
    "balance": BalanceCmd,
    "quota": BalanceCmd,
    "forget": ForgetCmd,
    "privacy": PrivacyCmd,
    "reset": ResetCmd,
}
PAY_INFO_COMMANDS: Final = frozenset({"paysupport", "terms"})
ADMIN_COMMANDS: Final = frozenset({"grant", "subscribe", "stats", "refund", "stoprenewal"})


def route(update: Update, *, bot_username: str | None = None) -> Command:
    """Decide what *update* asks for."""
    if update.message is not None:
        return _route_message(update.update_id, update.message, bot_username=bot_username)
    if update.callback_query is not None:
        return _route_callback(update.update_id, update.callback_query)
    if update.pre_checkout_query is not None:
        query = update.pre_checkout_query
        return PreCheckout(query, lang_of(query.from_.language_code))
    if update.my_chat_member is not None:
        member = update.my_chat_member
        if member.chat.type != "private":
            return Ignored("membership change outside a private chat")
        status = member.new_chat_member.status
        return BlockedChange(user_id=member.from_.id, blocked=status in {"kicked", "left"})
    return Ignored("update type not handled")


def _context(update_id: int, message: Message, user: User) -> Context:
    return Context(
        chat_id=message.chat.id,
        chat_type=message.chat.type,
        user_id=user.id,
        first_name=user.first_name,
        language_code=user.language_code,
        update_id=update_id,
    )


def _route_message(update_id: int, message: Message, *, bot_username: str | None) -> Command:
    user = message.from_
    if user is None or user.is_bot:
        return Ignored("message without a human sender")
    ctx = _context(update_id, message, user)
    if message.successful_payment is not None:
        return PaymentReceived(ctx, message.successful_payment)
    if message.refunded_payment is not None:
        return PaymentRefunded(ctx, message.refunded_payment)
    text = message.text
    if text is None:
        return NonText(ctx) if ctx.private else Ignored("non-text message in a group")
    if text.startswith("/"):
        return _route_command(ctx, text, bot_username=bot_username)
    if not text.strip():
        return Ignored("blank text")
    return ChatText(ctx, message_id=message.message_id, text=text[:MAX_USER_TEXT_CHARS])


def _route_command(ctx: Context, text: str, *, bot_username: str | None) -> Command:
    head, *args = text.split()
    name, _, addressee = head[1:].partition("@")
    if addressee and bot_username and addressee.lower() != bot_username.lower():
        return Ignored("command for another bot")
    name = name.lower()
    if name == "start":
        payload = args[0] if args and _START_PAYLOAD.fullmatch(args[0]) else None
        return StartCmd(ctx, payload=payload)
    if name in _SIMPLE_COMMANDS:
        return _SIMPLE_COMMANDS[name](ctx)
    if name in PAY_INFO_COMMANDS:
        return PayInfoCmd(ctx, name=name)
    if name in ADMIN_COMMANDS:
        return AdminCmd(ctx, name=name, args=tuple(args))
    return UnknownCmd(ctx)


def _route_callback(update_id: int, query: CallbackQuery) -> Command:
    user = query.from_
    button = decode(query.data)
    message = query.message
    if button is None or message is None or not message.is_accessible:
        return UnknownCallback(query.id, user.id, lang_of(user.language_code))
    return Press(_context(update_id, message, user), query.id, message.message_id, button)
