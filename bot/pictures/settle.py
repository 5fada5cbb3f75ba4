"""How a job ends: what :data:`~bot.pictures.lifecycle.ENDS` says for its exit, done once.

:func:`settle` moves the money (charge or release) and writes the exit's final event in
one SQLite transaction, so every ``image_requested`` ends in exactly one
``image_generated`` or ``image_failed``, whatever point a crash or a cancel lands at. The
quota operations are guarded state changes, so settling a job a second time changes
nothing and returns False. A database locked elsewhere is waited out (``store/patience.py``);
a cancel during that wait leaves the job unsettled and active, for the next start.
:func:`tell_user` sends the exit's sentence, if it has one, after the settling.
"""

from __future__ import annotations

import logging
from typing import Final

import trio

from bot.core.deps import Deps
from bot.core.events import event_record
from bot.core.texts import t
from bot.pictures.lifecycle import ENDS, Exit, Settle
from bot.telegram.errors import TelegramError
from common.logfields import fields
from store import EventRecord, Job
from store.patience import FOREVER

__all__ = ["MAX_DETAIL_CHARS", "NOTICE_DEADLINE_S", "settle", "tell_user"]

log = logging.getLogger(__name__)

MAX_DETAIL_CHARS: Final = 500  # of an event's detail, whitespace collapsed
NOTICE_DEADLINE_S: Final = 10.0  # a failure notice is sent within this, even during a stop


def _duration_ms(deps: Deps, job: Job) -> int:
    return max(0, int((deps.now() - job.created_at).total_seconds() * 1000))


async def settle(
    deps: Deps,
    job: Job,
    exit_: Exit,
    *,
    detail: str = "",
    file_id: str = "",
    patience_s: float = FOREVER,
    after_upload: bool = False,
) -> bool:
    """Charge or release *job* as its exit says, with its final event; False if it was
    settled already, or its upload has begun (a release without *after_upload*), or the
    exit keeps the job for the next start.

    *after_upload*: the worker's own upload failed (or was cut short), so the job may be
    released from ``delivering``; nobody else passes it.
    """
    end = ENDS[exit_]
    if end.settle in (Settle.KEEP, Settle.NOTHING):
        return False
    detail = " ".join(detail.split())[:MAX_DETAIL_CHARS]
    event: EventRecord | None = None
    if end.event is not None:
        event = event_record(
            end.event,
            now=deps.now,
            user_id=job.user_id,
            chat_id=job.chat_id,
            persona=job.persona_key,
            job_id=job.job_id,
            reason=end.reason,
            detail=detail if end.settle is Settle.RELEASE else None,
            duration_ms=_duration_ms(deps, job),
        )
    if end.settle is Settle.CHARGE:
        settled = await deps.write(
            f"charge job {job.job_id}",
            lambda: deps.store.quota.consume(
                job.job_id, file_id=file_id, now=deps.now(), event=event
            ),
            patience_s=patience_s,
        )
        if not settled:
            log.warning("job_already_settled", extra=fields(job=job.job_id))
    else:
        assert end.reason is not None
        reason = end.reason.value
        settled = await deps.write(
            f"release job {job.job_id}",
            lambda: deps.store.quota.release(
                job.job_id,
                reason=reason,
                detail=detail,
                now=deps.now(),
                event=event,
                after_upload=after_upload,
            ),
            patience_s=patience_s,
        )
    return settled


async def tell_user(deps: Deps, job: Job, exit_: Exit) -> None:
    """The exit's one sentence, as a reply to the text the picture was for.

    Shielded and bounded: a job ended by a stop in progress still says why.
    """
    notice = ENDS[exit_].notice
    if notice is None:
        return
    with trio.move_on_after(NOTICE_DEADLINE_S, shield=True):
        try:
            await deps.api.send_message(
                job.chat_id, t(notice, job.language), reply_to_message_id=job.message_id
            )
        except TelegramError as exc:
            log.info("job_notice_not_sent", extra=fields(job=job.job_id, error=str(exc)))
