"""Getting a finished picture to the user: in place of its status message, else as a
new photo, else as a document.

The picture lands in the job's status message (``editMessageMedia``, which may turn a
text message into a photo): one message per picture, no separate photo and delete. If
that edit is refused (the user deleted the message, or Telegram will not edit it), the
picture goes as a new photo replying to the text it illustrates, and the status message
is deleted. Telegram refuses some photos (over 10 MB, sides over 10000 px in total, a
side ratio over 20) with a 400; the same bytes then go as a document, which has no such
limits. Either way the picture is delivered once: only one of these calls succeeds.
"""

from __future__ import annotations

import logging

import trio

from bot.core.buttons import Variant, encode
from bot.core.deps import Deps
from bot.core.events import EventName, event_record
from bot.core.texts import t
from bot.pictures.status import CLEANUP_DEADLINE_S  # the status message's own deadline
from bot.telegram.errors import TelegramBadRequest, TelegramError, TelegramForbidden
from bot.telegram.send_budget import Priority
from bot.telegram.types import InlineKeyboardButton, InlineKeyboardMarkup, Message
from common.logfields import fields
from store import SentMessage

__all__ = ["DeliveryFailed", "file_id_of", "resend", "send_picture", "variant_keyboard"]

log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """Telegram took neither the photo nor the document; ``detail`` says why."""

    def __init__(self, detail: str, *, blocked: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.blocked = blocked


def file_id_of(message: Message) -> str:
    """The ``file_id`` to send the same picture again later."""
    if message.photo:
        return max(message.photo, key=lambda size: size.width * size.height).file_id
    if message.document is not None:
        return message.document.file_id
    raise DeliveryFailed("Telegram's answer carries no photo or document")


def variant_keyboard(message_id: int, lang: str) -> InlineKeyboardMarkup:
    """«🔄 Ещё вариант» under a picture of the text *message_id*."""
    button = InlineKeyboardButton(
        text=t("variant_button", lang), callback_data=encode(Variant(message_id))
    )
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


async def send_picture(
    deps: Deps,
    *,
    chat_id: int,
    reply_to: int,
    data: bytes,
    filename: str,
    reply_markup: InlineKeyboardMarkup | None = None,
    in_place_of: int | None = None,
) -> str:
    """Deliver *data*: into message *in_place_of* (the job's status message) when given,
    else as a reply to the text it illustrates; its ``file_id``.

    Raises:
        DeliveryFailed: Telegram refused it every way, or the user blocked the bot.
    """
    try:
        if in_place_of is not None:
            message = await _in_place(
                deps, chat_id, in_place_of, data, filename=filename, reply_markup=reply_markup
            )
            if message is not None:
                return file_id_of(message)
        message = await _photo_else_document(
            deps, chat_id, data, filename=filename, reply_to=reply_to, reply_markup=reply_markup
        )
    except TelegramForbidden as exc:
        raise DeliveryFailed(f"user blocked the bot: {exc.description}", blocked=True) from None
    except TelegramError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc.description}") from None
    return file_id_of(message)


async def resend(deps: Deps, sent: SentMessage, file_id: str, *, update_id: int) -> None:
    """A press after delivery: the same picture again by its ``file_id``, free; once per
    press (*update_id*: the press's update handled again sends nothing).

    A picture delivered as a document has a document's ``file_id``, which ``sendPhoto``
    refuses: it goes as a document again.
    """
    resent = event_record(
        EventName.IMAGE_RESENT,
        now=deps.now,
        user_id=sent.user_id,
        chat_id=sent.chat_id,
        persona=sent.persona_key,
    )
    claimed = await deps.write(
        "picture resent",
        lambda: deps.store.apply_once(
            update_id, lambda: deps.store.events.add(resent), now=deps.now()
        ),
    )
    if not claimed:
        return
    try:
        await _photo_else_document(deps, sent.chat_id, file_id, reply_to=sent.message_id)
    except TelegramError as exc:
        log.warning(
            "picture_resend_failed",
            extra=fields(chat=sent.chat_id, message=sent.message_id, error=str(exc)),
        )


async def _in_place(
    deps: Deps,
    chat_id: int,
    message_id: int,
    data: bytes,
    *,
    filename: str,
    reply_markup: InlineKeyboardMarkup | None,
) -> Message | None:
    """The picture into the status message; None (and that message deleted) when
    Telegram refuses the edit, so the caller sends it as a new message."""
    try:
        return await deps.api.edit_message_media(
            chat_id, message_id, data, filename=filename, reply_markup=reply_markup
        )
    except TelegramBadRequest as exc:
        log.info(
            "picture_not_in_place_sending_new",
            extra=fields(chat=chat_id, message=message_id, error=exc.description),
        )
    with trio.move_on_after(CLEANUP_DEADLINE_S):
        try:
            await deps.api.delete_message(chat_id, message_id, priority=Priority.STATUS)
        except TelegramError as exc:  # gone already, most likely: nothing to tidy
            log.debug("status_delete_failed", extra=fields(chat=chat_id, error=exc.description))
    return None


async def _photo_else_document(
    deps: Deps,
    chat_id: int,
    content: bytes | str,
    *,
    reply_to: int,
    filename: str = "image.png",
    reply_markup: InlineKeyboardMarkup | None = None,
) -> Message:
    """*content* (bytes to upload, or a known ``file_id``) as a photo; a photo Telegram
    refuses with a 400 goes as a document."""
    try:
        return await deps.api.send_photo(
            chat_id,
            content,
            filename=filename,
            reply_to_message_id=reply_to,
            reply_markup=reply_markup,
        )
    except TelegramBadRequest as exc:
        log.info(
            "picture_photo_refused_sending_document",
            extra=fields(chat=chat_id, error=exc.description),
        )
    return await deps.api.send_document(
        chat_id, content, filename=filename, reply_to_message_id=reply_to, reply_markup=reply_markup
    )
