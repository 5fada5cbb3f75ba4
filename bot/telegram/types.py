"""Pydantic models for the part of the Telegram Bot API this bot uses.

Telegram adds fields to its objects with every Bot API release, so every inbound model
ignores unknown fields and is frozen: a new field never crashes the bot, and a parsed
update cannot be changed by the code that handles it. Outbound models (keyboards,
commands) are serialised with ``model_dump(mode="json", exclude_none=True)``.

Identifiers (``User.id``, ``Chat.id``) can exceed 32 bits; Python's ``int`` holds them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BotCommand",
    "CallbackQuery",
    "Chat",
    "ChatMember",
    "ChatMemberUpdated",
    "Document",
    "InlineKeyboardButton",
    "InlineKeyboardMarkup",
    "LabeledPrice",
    "Message",
    "PhotoSize",
    "PreCheckoutQuery",
    "RefundedPayment",
    "RepliedMessage",
    "ResponseParameters",
    "SuccessfulPayment",
    "Update",
    "User",
    "WebhookInfo",
]


class _Inbound(BaseModel):
    model_config = ConfigDict(
        extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True
    )


class User(_Inbound):
    """A Telegram user or bot (``from`` of a message or callback query)."""

    id: int
    is_bot: bool = False
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


class Chat(_Inbound):
    """A chat; ``type`` is "private", "group", "supergroup" or "channel"."""

    id: int
    type: str
    title: str | None = None
    username: str | None = None
    first_name: str | None = None


class PhotoSize(_Inbound):
    """One size of a photo; Telegram lists sizes from the smallest to the largest."""

    file_id: str
    file_unique_id: str
    width: int
    height: int
    file_size: int | None = None


class Document(_Inbound):
    """A general file sent as a document."""

    file_id: str
    file_unique_id: str
    file_name: str | None = None
    mime_type: str | None = None
    file_size: int | None = None


class InlineKeyboardButton(BaseModel):
    """One inline button; ``callback_data`` is 1-64 bytes of UTF-8 (docs/telegram.md, T8)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    text: str
    callback_data: str | None = None
    url: str | None = None


class InlineKeyboardMarkup(BaseModel):
    """Rows of inline buttons under a message."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    inline_keyboard: list[list[InlineKeyboardButton]]


class BotCommand(BaseModel):
    """A command shown in the client's menu (``setMyCommands``)."""

    model_config = ConfigDict(frozen=True)

    command: str
    description: str


class LabeledPrice(BaseModel):
    """One price line of an invoice; in Telegram Stars, whole stars (docs/telegram.md, T15)."""

    model_config = ConfigDict(frozen=True)

    label: str
    amount: int


class SuccessfulPayment(_Inbound):
    """The service message that a payment went through: the only moment to credit (T15).

    ``subscription_expiration_date`` (Unix time) and the recurring flags are set for
    subscription payments only.
    """

    currency: str
    total_amount: int
    invoice_payload: str
    telegram_payment_charge_id: str
    provider_payment_charge_id: str = ""
    subscription_expiration_date: int | None = None
    is_recurring: bool = False
    is_first_recurring: bool = False


class RefundedPayment(_Inbound):
    """The service message that a payment was refunded (docs/telegram.md, T15)."""

    currency: str
    total_amount: int
    invoice_payload: str
    telegram_payment_charge_id: str
    provider_payment_charge_id: str | None = None


class PreCheckoutQuery(_Inbound):
    """A buyer pressed "Pay": answer within 10 seconds or Telegram cancels (T15)."""

    id: str
    from_: User = Field(alias="from")
    currency: str
    total_amount: int
    invoice_payload: str


class _MessageFields(_Inbound):
    message_id: int
    date: int
    chat: Chat
    from_: User | None = Field(default=None, alias="from")
    text: str | None = None
    caption: str | None = None
    photo: list[PhotoSize] | None = None
    document: Document | None = None
    reply_markup: InlineKeyboardMarkup | None = None
    successful_payment: SuccessfulPayment | None = None
    refunded_payment: RefundedPayment | None = None


class RepliedMessage(_MessageFields):
    """The message a message replies to; Telegram never nests replies further."""


class Message(_MessageFields):
    """A message; also parses an "inaccessible message" (``date == 0``, no content)."""

    reply_to_message: RepliedMessage | None = None

    @property
    def is_accessible(self) -> bool:
        """False for the stub Telegram sends when the message is no longer available."""
        return self.date != 0


class CallbackQuery(_Inbound):
    """A press on an inline button; ``message`` is absent for inline-mode messages."""

    id: str
    from_: User = Field(alias="from")
    message: Message | None = None
    data: str | None = None
    chat_instance: str = ""


class ChatMember(_Inbound):
    """A member's status: "member", "kicked" (blocked the bot), "left", ..."""

    status: str
    user: User


class ChatMemberUpdated(_Inbound):
    """``my_chat_member``: in a private chat, the user blocked or unblocked the bot.

    See docs/telegram.md, T14.
    """

    chat: Chat
    from_: User = Field(alias="from")
    date: int
    old_chat_member: ChatMember | None = None
    new_chat_member: ChatMember


class Update(_Inbound):
    """One incoming update; at most one of the optional fields is set."""

    update_id: int
    message: Message | None = None
    edited_message: Message | None = None
    callback_query: CallbackQuery | None = None
    my_chat_member: ChatMemberUpdated | None = None
    pre_checkout_query: PreCheckoutQuery | None = None

    @property
    def kind(self) -> str:
        """The name of the field that is set, or "unknown" for a type we do not read."""
        for name in (
            "message",
            "edited_message",
            "callback_query",
            "my_chat_member",
            "pre_checkout_query",
        ):
            if getattr(self, name) is not None:
                return name
        return "unknown"

    @property
    def chat(self) -> Chat | None:
        """The chat the update belongs to, when it names one."""
        if self.message is not None:
            return self.message.chat
        if self.edited_message is not None:
            return self.edited_message.chat
        if self.callback_query is not None and self.callback_query.message is not None:
            return self.callback_query.message.chat
        if self.my_chat_member is not None:
            return self.my_chat_member.chat
        return None

    @property
    def user(self) -> User | None:
        """The user who caused the update, when known."""
        for source in (
            self.message,
            self.edited_message,
            self.callback_query,
            self.my_chat_member,
            self.pre_checkout_query,
        ):
            if source is not None:
                return source.from_
        return None


class WebhookInfo(_Inbound):
    """``getWebhookInfo``: an empty ``url`` means no webhook is set."""

    url: str
    has_custom_certificate: bool = False
    pending_update_count: int = 0
    last_error_date: int | None = None
    last_error_message: str | None = None


class ResponseParameters(_Inbound):
    """``parameters`` of a failed call: how long to wait, or where a group moved."""

    retry_after: float | None = None
    migrate_to_chat_id: int | None = None
