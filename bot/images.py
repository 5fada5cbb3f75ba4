"""``request_image_on_demand``: a press on «👁️ Посмотреть», and «✖ Отмена» (SPEC §3, §7).

A press is answered at once. In order: the press must be genuine (a text this bot sent,
in this private chat, to this user); a picture already delivered is sent again by its
``file_id``, free; a picture being made is not started twice; then the feature must be
on, one image is reserved, ``image_requested`` is logged and the job is queued. The
prompt is built by the worker, so an LLM call never holds up this user's chat.

Every genuine press that is refused on the spot (``disabled``, ``no_quota``, ``busy``)
logs ``image_requested`` and then ``image_failed`` with that reason, so the invariant
``requested = generated + failed`` holds for every press.
"""

from __future__ import annotations

import logging
import uuid

from bot.analytics import EventName, Reason, log_event
from bot.delivery import resend
from bot.deps import Deps, ImageRuntime
from bot.handlers import answer_query, ensure_user
from bot.jobs_end import finish_failed
from bot.keyboards import cancel_keyboard
from bot.pool import QueueFull, Ticket
from bot.routing import CancelPress, ImagePress
from bot.telegram_errors import TelegramError
from bot.texts import t
from store import NewJob, Refusal, SentMessage

__all__ = ["handle_cancel", "request_image_on_demand"]

log = logging.getLogger(__name__)


def _genuine(deps: Deps, press: ImagePress) -> SentMessage | None:
    """The stored text under the pressed button, if this user may ask for its picture."""
    if not press.ctx.private or press.ctx.chat_id != press.ctx.user_id:
        return None
    sent = deps.store.sent.get(chat_id=press.ctx.chat_id, message_id=press.message_id)
    if sent is None or sent.user_id != press.ctx.user_id:
        return None
    return sent


async def request_image_on_demand(deps: Deps, press: ImagePress) -> None:
    """Handle one press on «👁️ Посмотреть»."""
    ctx, lang = press.ctx, press.ctx.lang
    sent = _genuine(deps, press)
    if sent is None:
        log.warning(
            "ignored press on a message this bot did not send to this user"
            " user=%s chat=%s message=%s",
            ctx.user_id,
            ctx.chat_id,
            press.message_id,
        )
        await answer_query(deps, press.query_id, text=t("toast_stale", lang))
        return
    if sent.photo_file_id is not None:
        await answer_query(deps, press.query_id, text=t("toast_resent", lang))
        await resend(deps, sent)
        return
    if deps.store.jobs.active_for_message(chat_id=ctx.chat_id, message_id=press.message_id):
        await answer_query(deps, press.query_id, text=t("toast_in_flight", lang))
        return
    ensure_user(deps, ctx)
    runtime = deps.images
    if not deps.settings.images_available or runtime is None:
        await _refuse(deps, press, sent, Reason.DISABLED, "fail_disabled", "images are off")
        return
    await _reserve_and_queue(deps, runtime, press, sent)


async def _reserve_and_queue(
    deps: Deps, runtime: ImageRuntime, press: ImagePress, sent: SentMessage
) -> None:
    ctx, lang = press.ctx, press.ctx.lang
    job_id = uuid.uuid4().hex
    reserved = deps.store.quota.reserve(
        NewJob(
            job_id=job_id,
            prompt_id=str(uuid.uuid4()),
            user_id=ctx.user_id,
            chat_id=ctx.chat_id,
            message_id=press.message_id,
            persona_key=sent.persona_key,
            language=lang,
        ),
        now=deps.now(),
        daily_limit=deps.settings.subscription_daily_images,
    )
    if reserved is Refusal.IN_FLIGHT:
        await answer_query(deps, press.query_id, text=t("toast_in_flight", lang))
        return
    if reserved is Refusal.NO_QUOTA:
        await _refuse(deps, press, sent, Reason.NO_QUOTA, "fail_no_quota", "no images left")
        return
    log_event(
        deps.store,
        EventName.IMAGE_REQUESTED,
        now=deps.now,
        user_id=ctx.user_id,
        chat_id=ctx.chat_id,
        persona=sent.persona_key,
        job_id=job_id,
    )
    try:
        position = runtime.pool.submit_nowait(Ticket(job_id))
    except QueueFull as exc:
        finish_failed(deps, reserved, Reason.BUSY, str(exc))
        await answer_query(deps, press.query_id, text=t("fail_busy", lang), show_alert=True)
        return
    await answer_query(deps, press.query_id, text=t("toast_started", lang))
    await _post_status(
        deps, job_id, chat_id=ctx.chat_id, reply_to=press.message_id, lang=lang, position=position
    )


async def _post_status(
    deps: Deps, job_id: str, *, chat_id: int, reply_to: int, lang: str, position: int
) -> None:
    """The job's status message; if the job already ended meanwhile, take it back."""
    try:
        message = await deps.api.send_message(
            chat_id,
            t("status_queued", lang, position=position),
            reply_markup=cancel_keyboard(job_id, lang),
            reply_to_message_id=reply_to,
            disable_notification=True,
        )
    except TelegramError as exc:
        log.info("status message not sent job=%s: %s", job_id, exc)
        return
    job = deps.store.jobs.get(job_id)
    if job is not None and job.active:
        deps.store.jobs.set_status_message(job_id, message.message_id)
        return
    try:
        await deps.api.delete_message(chat_id, message.message_id)
    except TelegramError as exc:
        log.debug("late status message not deleted job=%s: %s", job_id, exc)


async def _refuse(
    deps: Deps, press: ImagePress, sent: SentMessage, reason: Reason, text_key: str, detail: str
) -> None:
    """A genuine press refused on the spot: one alert sentence and the two events."""
    ctx = press.ctx
    for event in (EventName.IMAGE_REQUESTED, EventName.IMAGE_FAILED):
        failed = event is EventName.IMAGE_FAILED
        log_event(
            deps.store,
            event,
            now=deps.now,
            user_id=ctx.user_id,
            chat_id=ctx.chat_id,
            persona=sent.persona_key,
            reason=reason if failed else None,
            detail=detail if failed else None,
        )
    await answer_query(deps, press.query_id, text=t(text_key, ctx.lang), show_alert=True)


async def handle_cancel(deps: Deps, press: CancelPress) -> None:
    """«✖ Отмена»: cancel this user's own job, wherever it is; nothing is charged."""
    lang = press.ctx.lang
    job = deps.store.jobs.get(press.job_id)
    if job is None or job.user_id != press.ctx.user_id or not job.active:
        await answer_query(deps, press.query_id, text=t("toast_nothing_to_cancel", lang))
        return
    runtime = deps.images
    if runtime is not None and runtime.pool.cancel(job.job_id):
        # The worker sees its scope cancelled, cleans up on ComfyUI and releases.
        await answer_query(deps, press.query_id, text=t("toast_cancelled", lang))
        return
    if runtime is not None and runtime.pool.position(job.job_id) is None:
        # Not waiting and not cancellable: the picture is being delivered right now.
        await answer_query(deps, press.query_id, text=t("toast_nothing_to_cancel", lang))
        return
    finish_failed(deps, job, Reason.CANCELLED, "cancelled while waiting in the queue")
    if runtime is not None:
        runtime.pool.discard(job.job_id)
    await answer_query(deps, press.query_id, text=t("toast_cancelled", lang))
    if job.status_message_id is not None:
        try:
            await deps.api.delete_message(job.chat_id, job.status_message_id)
        except TelegramError as exc:
            log.debug("status message not deleted job=%s: %s", job.job_id, exc)
