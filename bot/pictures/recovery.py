"""At start, every job a previous run left unfinished is resumed or closed.

Each one goes back into the queue marked ``resumed``; its worker begins where
:func:`~bot.pictures.lifecycle.start_of` says for the step its row recorded: a picture on
disk is delivered, a job that may have reached ComfyUI is looked up there before anything
is submitted, a job that never left our queue is run. Without ComfyUI configured any more,
they end as :attr:`~bot.pictures.lifecycle.Exit.NO_COMFYUI`, and their pictures on disk
are deleted. Before anything is queued, ``spool/`` is swept of every file no unfinished
job refers to. A status message left behind by a job that ended just before the stop is
deleted.
"""

from __future__ import annotations

import logging
from functools import partial

import trio

from bot.core.deps import Deps
from bot.pictures.lifecycle import Exit
from bot.pictures.queue import Ticket
from bot.pictures.runtime import PicturesRuntime
from bot.pictures.settle import settle, tell_user
from bot.pictures.spool import discard, spool_folder, sweep
from bot.telegram.errors import TelegramError
from common.logfields import fields
from store import MEMORY, JobState

__all__ = ["resume_unfinished"]

log = logging.getLogger(__name__)


async def resume_unfinished(
    deps: Deps,
    runtime: PicturesRuntime | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Queue (or close) every unfinished job; waits for room in the queue as needed."""
    jobs = deps.store.jobs.unfinished()
    if str(deps.settings.database_path) != MEMORY:
        # Before any worker can write a file of its own (no await since the read).
        sweep(spool_folder(deps.settings.database_path), keep=[job.spool_path for job in jobs])
    task_status.started()
    await _delete_left_over_status_messages(deps)
    if jobs:
        log.info("jobs_resuming", extra=fields(count=len(jobs)))
    for job in jobs:
        if runtime is None:
            notify = await settle(
                deps,
                job,
                Exit.NO_COMFYUI,
                detail="COMFYUI_BASE_URL is not set",
                after_upload=job.state is JobState.DELIVERING,  # its upload was cut short
            )
            discard(job.spool_path)
            if notify:
                await tell_user(deps, job, Exit.NO_COMFYUI)
            continue
        log.info(
            "job_resuming",
            extra=fields(
                job=job.job_id, state=job.state.value, prompt_id=job.prompt_id, server=job.server
            ),
        )
        if job.status_message_id is not None:
            runtime.board.adopt(
                job.job_id,
                chat_id=job.chat_id,
                reply_to=job.message_id,
                lang=job.language,
                message_id=job.status_message_id,
            )
        await runtime.queue.submit(Ticket(job.job_id, resumed=True))


async def _delete_left_over_status_messages(deps: Deps) -> None:
    for job in deps.store.jobs.finished_with_status_message():
        assert job.status_message_id is not None
        try:
            await deps.api.delete_message(job.chat_id, job.status_message_id)
        except TelegramError as exc:
            log.debug(
                "status_old_message_not_deleted", extra=fields(job=job.job_id, error=str(exc))
            )
        await deps.write(
            f"status message of job {job.job_id} gone",
            partial(deps.store.jobs.set_status_message, job.job_id, None),
        )
