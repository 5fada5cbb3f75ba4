"""How a job ends: exactly one charge or one release, and exactly one final event.

Both functions are synchronous on purpose: no await means no cancel can land between
the money moving and the event being written (SPEC §7: every ``image_requested`` ends in
exactly one ``image_generated`` or ``image_failed``). The quota operations are guarded
state changes, so a second call for the same job is a no-op that returns False.
"""

from __future__ import annotations

import logging

from bot.analytics import EventName, Reason, log_event
from bot.deps import Deps
from store import Job

__all__ = ["finish_delivered", "finish_failed"]

log = logging.getLogger(__name__)


def _duration_ms(deps: Deps, job: Job) -> int:
    return max(0, int((deps.now() - job.created_at).total_seconds() * 1000))


def finish_delivered(deps: Deps, job: Job, *, file_id: str) -> bool:
    """Charge the reservation (``consume_image``) and log ``image_generated``."""
    if not deps.store.quota.consume(job.job_id, file_id=file_id, now=deps.now()):
        log.warning("job already finished, not charged again job=%s", job.job_id)
        return False
    log_event(
        deps.store,
        EventName.IMAGE_GENERATED,
        now=deps.now,
        user_id=job.user_id,
        chat_id=job.chat_id,
        persona=job.persona_key,
        job_id=job.job_id,
        duration_ms=_duration_ms(deps, job),
    )
    return True


def finish_failed(deps: Deps, job: Job, reason: Reason, detail: str) -> bool:
    """Release the reservation and log ``image_failed`` with *reason* and *detail*."""
    detail = " ".join(detail.split())[:500]
    if not deps.store.quota.release(job.job_id, reason=reason.value, detail=detail, now=deps.now()):
        return False
    log_event(
        deps.store,
        EventName.IMAGE_FAILED,
        now=deps.now,
        user_id=job.user_id,
        chat_id=job.chat_id,
        persona=job.persona_key,
        job_id=job.job_id,
        reason=reason,
        detail=detail,
        duration_ms=_duration_ms(deps, job),
    )
    return True
