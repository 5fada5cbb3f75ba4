"""The generation workers: each takes a job, has it drawn, delivers it, settles the quota.

A job's steps, each recorded in its row before the next begins (SPEC §9):

1. build the prompt graph (persona, scene, fresh seed) and store it → ``running``;
2. ``Comfy.generate`` under ``COMFYUI_TIMEOUT_SECONDS`` (submit, wait, download);
3. keep the picture on disk (``data/spool``) → ``downloaded``;
4. send it (photo, else document), then charge it → ``delivered``.

Any failure releases the reservation → ``failed``, with one short sentence to the user.
What a cancel means depends on who cancels. The user's «✖ Отмена» cancels the job's own
scope (registered in the pool until delivery starts): ComfyUI cleans up, the job is
released as ``cancelled``. A shutdown cancels from outside: the row stays active and the
next start resumes it from the step it reached (``bot.recovery``).
"""

from __future__ import annotations

import json
import logging
import mimetypes
from pathlib import Path
from typing import Any, Final

import trio

from bot.analytics import Reason
from bot.delivery import DeliveryFailed, send_picture
from bot.deps import Deps, ImageRuntime
from bot.jobs_end import finish_delivered, finish_failed
from bot.pool import Ticket
from bot.prompts import describe_scene, prompt_params
from bot.status import StatusReporter
from bot.telegram_errors import TelegramError
from bot.texts import t
from comfy import ComfyError, WorkflowError
from store import Job, JobState

__all__ = ["JobFailed", "run_job", "run_workers"]

log = logging.getLogger(__name__)

SCENE_TIMEOUT_S: Final = 20.0
NOTICE_DEADLINE_S: Final = 10.0
_FAILURE_TEXT: Final = {Reason.GENERATION_ERROR: "fail_generation", Reason.SEND_ERROR: "fail_send"}


class JobFailed(Exception):
    """A job ended without a picture; *reason* is one of SPEC §7's closed set."""

    def __init__(self, reason: Reason, detail: str, *, tell_user: bool = True) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.tell_user = tell_user


async def run_workers(
    deps: Deps,
    runtime: ImageRuntime,
    *,
    count: int,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run *count* workers over the pool until cancelled (or the pool is closed)."""
    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(_work, deps, runtime, index, name=f"generation-worker-{index}")
        task_status.started()


async def _work(deps: Deps, runtime: ImageRuntime, index: int) -> None:
    async for ticket in runtime.pool.tickets():
        log.debug("worker %s takes job=%s", index, ticket.job_id)
        await run_job(deps, runtime, ticket)


async def run_job(deps: Deps, runtime: ImageRuntime, ticket: Ticket) -> None:
    """Take one job from its current step to its end (or leave it for a restart)."""
    job = deps.store.jobs.get(ticket.job_id)
    if job is None or not job.active:
        return  # cancelled while it waited
    reporter = StatusReporter(
        deps.api, deps.store, job_id=job.job_id, chat_id=job.chat_id, lang=job.language
    )
    reporter.show(t("status_waiting_gpu", job.language))  # out of our queue, not yet drawn
    failure: JobFailed | None = None
    with runtime.pool.running(job.job_id) as own_scope:
        async with trio.open_nursery() as side:
            await side.start(reporter.run)
            try:
                await _produce_and_deliver(deps, runtime, job, ticket, reporter)
            except JobFailed as exc:
                failure = exc
            except Exception as exc:
                log.exception("job crashed job=%s", job.job_id)
                failure = JobFailed(Reason.GENERATION_ERROR, f"internal error: {exc!r}")
            finally:
                side.cancel_scope.cancel()
    if own_scope.cancelled_caught:
        failure = JobFailed(Reason.CANCELLED, "cancelled by the user", tell_user=False)
    if failure is not None:
        await _settle_failure(deps, job, failure)
    await reporter.remove()


async def _settle_failure(deps: Deps, job: Job, failure: JobFailed) -> None:
    log.info("job failed job=%s reason=%s: %s", job.job_id, failure.reason, failure.detail)
    if not finish_failed(deps, job, failure.reason, failure.detail) or not failure.tell_user:
        return
    text_key = _FAILURE_TEXT.get(failure.reason)
    if text_key is None:
        return
    with trio.move_on_after(NOTICE_DEADLINE_S, shield=True):
        try:
            await deps.api.send_message(
                job.chat_id, t(text_key, job.language), reply_to_message_id=job.message_id
            )
        except TelegramError as exc:
            log.info("failure notice not sent job=%s: %s", job.job_id, exc)


async def _produce_and_deliver(
    deps: Deps, runtime: ImageRuntime, job: Job, ticket: Ticket, reporter: StatusReporter
) -> None:
    spool = Path(job.spool_path) if job.spool_path else None
    if job.state is JobState.DOWNLOADED and spool is not None and spool.is_file():
        data = spool.read_bytes()
    else:
        data, spool = await _generate(deps, runtime, job, ticket, reporter)
    runtime.pool.stop_cancelling(job.job_id)
    reporter.show(t("status_sending", job.language), cancellable=False)
    try:
        file_id = await send_picture(
            deps, chat_id=job.chat_id, reply_to=job.message_id, data=data, filename=spool.name
        )
    except DeliveryFailed as exc:
        if exc.blocked:
            deps.store.users.set_blocked(job.user_id, blocked=True, now=deps.now())
        raise JobFailed(Reason.SEND_ERROR, exc.detail, tell_user=not exc.blocked) from None
    finish_delivered(deps, job, file_id=file_id)
    spool.unlink(missing_ok=True)


async def _generate(
    deps: Deps, runtime: ImageRuntime, job: Job, ticket: Ticket, reporter: StatusReporter
) -> tuple[bytes, Path]:
    """Steps 1-3: the graph, ComfyUI, the spool file."""
    graph = json.loads(job.graph) if job.graph else await _build_graph(deps, runtime, job)
    deps.store.jobs.advance(
        job.job_id, to=JobState.RUNNING, now=deps.now(), graph=json.dumps(graph)
    )
    # A job that was already running before a restart may have reached ComfyUI: check
    # there before submitting, so a prompt is never run twice (NOTES §4.8).
    recover = ticket.resumed and job.state is not JobState.QUEUED
    try:
        image = await runtime.comfy.generate(
            graph,
            prompt_id=job.prompt_id,
            timeout_s=deps.settings.comfyui_timeout_seconds,
            on_progress=reporter.on_progress,
            recover=recover,
        )
    except ComfyError as exc:
        raise JobFailed(Reason.GENERATION_ERROR, f"{type(exc).__name__}: {exc.detail}") from None
    extension = mimetypes.guess_extension(image.content_type) or Path(image.filename).suffix
    spool = runtime.spool_dir / f"{job.job_id}{extension or '.png'}"
    # A few MB written synchronously: shorter than a thread hop, and it keeps the job's
    # steps in order with no await between the file and its row.
    spool.write_bytes(image.data)
    deps.store.jobs.advance(
        job.job_id, to=JobState.DOWNLOADED, now=deps.now(), spool_path=str(spool)
    )
    return image.data, spool


async def _build_graph(deps: Deps, runtime: ImageRuntime, job: Job) -> dict[str, Any]:
    """Persona core + style + the reply's scene, into the workflow template."""
    persona = deps.personas.get(job.persona_key)
    config = deps.personas.image_config(persona)
    sent = deps.store.sent.get(chat_id=job.chat_id, message_id=job.message_id)
    scene = None
    if sent is not None:
        with trio.move_on_after(SCENE_TIMEOUT_S):
            scene = await describe_scene(deps.llm, sent.text)
    params = prompt_params(
        config,
        scene=scene,
        default_checkpoint=deps.settings.comfyui_default_checkpoint,
        rng=deps.rng,
    )
    try:
        return runtime.template.build(params)
    except WorkflowError as exc:
        raise JobFailed(Reason.GENERATION_ERROR, f"workflow: {exc}") from None
