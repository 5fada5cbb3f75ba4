"""``request_image_on_demand``: a press on «👁️ Посмотреть», and «✖ Отмена».

Both handlers are thin: they read the facts, ask the pure rules what to do
(:func:`~bot.pictures.decision.decide_press`, :data:`~bot.pictures.lifecycle.CANCEL`) and
do it. A press is answered at once; the prompt is built later by a worker, so an LLM call
never holds up this user's chat.

Every genuine press that is refused on the spot (``disabled``, ``no_quota``, ``busy``)
logs ``image_requested`` and then ``image_failed`` with that reason, so the invariant
``requested = generated + failed`` holds for every press.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from typing import Final

from bot.core.buttons import Cancel, Look, Variant
from bot.core.commands import Press
from bot.core.deps import Deps
from bot.core.events import EventName, Reason, event_record
from bot.core.texts import t
from bot.pictures.decision import (
    REFUSALS,
    AlreadyDrawing,
    Handled,
    PressDecision,
    PressFacts,
    Queue,
    Refuse,
    Resend,
    Reserve,
    Stale,
    after_reserve,
    decide_press,
)
from bot.pictures.delivery import resend
from bot.pictures.lifecycle import CANCEL, CancelLanding, Exit
from bot.pictures.queue import QueueFull, Ticket
from bot.pictures.runtime import PicturesRuntime
from bot.pictures.settle import settle
from bot.pictures.spool import discard
from bot.pictures.status import Queued
from common.logfields import fields
from store import Job, JobState, NewJob
from store.patience import STORE_PATIENCE_S

__all__ = ["handle_cancel", "request_image_on_demand"]

log = logging.getLogger(__name__)

VARIANT_DETAIL: Final = "variant"  # image_requested's detail for «🔄 Ещё вариант»


@dataclass(frozen=True, slots=True)
class _Asked:
    """A press on «👁️ Посмотреть» or «🔄 Ещё вариант», read once."""

    press: Press[Look | Variant]
    message_id: int  # the text the picture illustrates
    variant: bool

    @classmethod
    def of(cls, press: Press[Look | Variant]) -> _Asked:
        # A variant's button sits under the photo; the text is named in its payload.
        button = press.button
        if isinstance(button, Variant):
            return cls(press, button.message_id, variant=True)
        return cls(press, press.message_id, variant=False)


async def request_image_on_demand(
    deps: Deps, pictures: PicturesRuntime | None, press: Press[Look | Variant]
) -> None:
    """Handle one press on «👁️ Посмотреть» or «🔄 Ещё вариант».

    A variant is a new job for the same text, reserved, queued, shown and ended exactly
    like the first picture; only its ``image_requested`` says ``detail=variant``.
    """
    asked = _Asked.of(press)
    ctx = press.ctx
    facts = PressFacts(
        private_chat=ctx.private,
        chat_id=ctx.chat_id,
        user_id=ctx.user_id,
        sent=deps.store.sent.get(chat_id=ctx.chat_id, message_id=asked.message_id),
        job_active=deps.store.jobs.active_for_message(
            chat_id=ctx.chat_id, message_id=asked.message_id
        )
        is not None,
        pictures_on=deps.settings.images_available and pictures is not None,
        variant=asked.variant,
    )
    decision: PressDecision = decide_press(facts)
    if isinstance(decision, Reserve):
        await deps.ensure_user(ctx)
        decision = await _reserve(deps, asked, decision)
    elif isinstance(decision, Refuse):
        await deps.ensure_user(ctx)
    await _perform(deps, pictures, asked, decision)


async def _reserve(deps: Deps, asked: _Asked, reserve: Reserve) -> PressDecision:
    """One transaction: the picture reserved, the queued job and its ``image_requested``."""
    ctx = asked.press.ctx
    new = NewJob(
        job_id=_random_uuid(deps.rng).hex,
        prompt_id=str(_random_uuid(deps.rng)),
        user_id=ctx.user_id,
        chat_id=ctx.chat_id,
        message_id=asked.message_id,
        persona_key=reserve.sent.persona_key,
        language=ctx.lang,
    )
    requested = event_record(
        EventName.IMAGE_REQUESTED,
        now=deps.now,
        user_id=new.user_id,
        chat_id=new.chat_id,
        persona=new.persona_key,
        job_id=new.job_id,
        detail=VARIANT_DETAIL if asked.variant else None,
    )
    result = await deps.write(
        f"reserve a picture for user {ctx.user_id}",
        lambda: deps.store.quota.reserve(
            new,
            now=deps.now(),
            daily_limit=deps.settings.subscription_daily_images,
            event=requested,
            update_id=ctx.update_id,
        ),
    )
    return after_reserve(result)


async def _perform(
    deps: Deps, pictures: PicturesRuntime | None, asked: _Asked, decision: PressDecision
) -> None:
    press = asked.press
    lang = press.ctx.lang
    match decision:
        case Stale():
            log.warning(
                "press_on_foreign_message_ignored",
                extra=fields(
                    user=press.ctx.user_id, chat=press.ctx.chat_id, message=asked.message_id
                ),
            )
            await deps.answer_query(press.query_id, text=t("toast_stale", lang))
        case Resend(sent, file_id):
            await deps.answer_query(press.query_id, text=t("toast_resent", lang))
            await resend(deps, sent, file_id, update_id=press.ctx.update_id)
        case AlreadyDrawing():
            await deps.answer_query(press.query_id, text=t("toast_in_flight", lang))
        case Handled():
            await deps.answer_query(press.query_id)
        case Refuse(reason):
            if not await _log_refused(deps, asked, reason):
                await deps.answer_query(press.query_id)  # refused before: said already
                return
            refusal = REFUSALS[reason]
            offers = deps.offers(lang) if reason is Reason.NO_QUOTA else None
            contact = deps.settings.support_contact
            if offers is None and reason is Reason.NO_QUOTA and contact:
                alert = t("fail_no_quota_contact", lang, contact=contact)
                await deps.answer_query(press.query_id, text=alert, show_alert=True)
            elif offers is None:
                alert = t(refusal.text_key, lang)
                await deps.answer_query(press.query_id, text=alert, show_alert=True)
            else:
                # An alert cannot carry buttons: the offers follow as a message.
                await deps.answer_query(press.query_id)
                text = t("fail_no_quota_buy", lang)
                await deps.api.send_message(press.ctx.chat_id, text, reply_markup=offers)
        case Queue(job):
            assert pictures is not None  # reserved only while pictures are on
            await _queue(deps, pictures, press, job)
        case Reserve():  # decided above, never performed as such
            raise AssertionError("a press must be reserved before it is performed")


async def _queue(
    deps: Deps, runtime: PicturesRuntime, press: Press[Look | Variant], job: Job
) -> None:
    lang = press.ctx.lang
    try:
        place = runtime.queue.submit_nowait(Ticket(job.job_id))
    except QueueFull as exc:
        await settle(deps, job, Exit.QUEUE_FULL, detail=str(exc), patience_s=STORE_PATIENCE_S)
        alert = t(REFUSALS[Reason.BUSY].text_key, lang)
        await deps.answer_query(press.query_id, text=alert, show_alert=True)
        return
    # The jobs waiting in the pool for a GPU slot are ahead of every queued one.
    status = Queued(runtime.servers.waiting + place)
    runtime.board.open(
        job.job_id, chat_id=job.chat_id, reply_to=job.message_id, lang=lang, status=status
    )
    await deps.answer_query(press.query_id, text=t("toast_started", lang))


async def _log_refused(deps: Deps, asked: _Asked, reason: Reason) -> bool:
    """A genuine press refused before any job existed: both events, one transaction, once
    per press (False: this press's update was handled before)."""
    ctx = asked.press.ctx
    sent = deps.store.sent.get(chat_id=ctx.chat_id, message_id=asked.message_id)
    persona = sent.persona_key if sent is not None else None
    records = [
        event_record(
            event,
            now=deps.now,
            user_id=ctx.user_id,
            chat_id=ctx.chat_id,
            persona=persona,
            reason=reason if event is EventName.IMAGE_FAILED else None,
            detail=REFUSALS[reason].detail if event is EventName.IMAGE_FAILED else None,
        )
        for event in (EventName.IMAGE_REQUESTED, EventName.IMAGE_FAILED)
    ]
    return await deps.write(
        f"refused press of user {ctx.user_id}",
        lambda: deps.store.apply_once(
            ctx.update_id, lambda: deps.store.events.add_all(records), now=deps.now()
        ),
    )


async def handle_cancel(deps: Deps, runtime: PicturesRuntime | None, press: Press[Cancel]) -> None:
    """«✖ Отмена»: cancel this user's own job, wherever :data:`CANCEL` says it lands."""
    lang = press.ctx.lang
    job = deps.store.jobs.get(press.button.job_id)
    if job is None or job.user_id != press.ctx.user_id or not job.active or runtime is None:
        await deps.answer_query(press.query_id, text=t("toast_nothing_to_cancel", lang))
        return
    match CANCEL[runtime.queue.phase(job.job_id)]:
        case CancelLanding.CANCEL_WORKER:
            # The worker sees its scope cancelled, cleans up on ComfyUI and settles.
            runtime.queue.cancel(job.job_id)
        case CancelLanding.RELEASE_NOW:
            released = await settle(
                deps,
                job,
                Exit.CANCELLED,
                detail="cancelled while waiting in the queue",
                patience_s=STORE_PATIENCE_S,
            )
            if not released:  # while the store was busy, a worker got it to its upload
                await deps.answer_query(press.query_id, text=_too_late(deps, job.job_id, lang))
                return
            runtime.queue.discard(job.job_id)
            # A worker may have taken the ticket meanwhile: it stops drawing for nobody
            # (and finds the job released before any upload).
            runtime.queue.cancel(job.job_id)
            discard(job.spool_path)  # a resumed job may wait with its picture on disk
            runtime.board.close(job.job_id)
        case CancelLanding.TOO_LATE:
            await deps.answer_query(press.query_id, text=_too_late(deps, job.job_id, lang))
            return
    await deps.answer_query(press.query_id, text=t("toast_cancelled", lang))


def _random_uuid(rng: random.Random) -> uuid.UUID:
    """A version-4 UUID from the process's Random (a seeded run chooses the same ids)."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _too_late(deps: Deps, job_id: str, lang: str) -> str:
    """What a cancel that found nothing to release tells: the upload has begun, or the
    job has ended."""
    job = deps.store.jobs.get(job_id)
    on_its_way = job is not None and job.state is JobState.DELIVERING
    return t("toast_cancel_too_late" if on_its_way else "toast_nothing_to_cancel", lang)
