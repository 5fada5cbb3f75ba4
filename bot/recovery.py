"""At start, every job a previous run left unfinished is resumed or closed (SPEC §9).

Each one goes back into the pool marked ``resumed``; the worker continues from the step
its row records: a picture on disk is delivered, a job that may have reached ComfyUI is
looked up there before anything is submitted, a job that never left our queue is run.
Without ComfyUI configured any more, they are released with a clear failure.
"""

from __future__ import annotations

import logging

import trio

from bot.analytics import Reason
from bot.deps import Deps
from bot.jobs_end import finish_failed
from bot.pool import Ticket
from bot.telegram_errors import TelegramError
from bot.texts import t

__all__ = ["resume_unfinished"]

log = logging.getLogger(__name__)


async def resume_unfinished(
    deps: Deps, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Queue (or close) every unfinished job; waits for room in the pool as needed."""
    jobs = deps.store.jobs.unfinished()
    task_status.started()
    if jobs:
        log.info("resuming %d unfinished image job(s)", len(jobs))
    for job in jobs:
        if deps.images is None:
            if finish_failed(deps, job, Reason.GENERATION_ERROR, "COMFYUI_BASE_URL is not set"):
                try:
                    await deps.api.send_message(
                        job.chat_id,
                        t("fail_generation", job.language),
                        reply_to_message_id=job.message_id,
                    )
                except TelegramError as exc:
                    log.info("failure notice not sent job=%s: %s", job.job_id, exc)
            continue
        log.info("resuming job=%s state=%s prompt_id=%s", job.job_id, job.state, job.prompt_id)
        await deps.images.pool.submit(Ticket(job.job_id, resumed=True))
