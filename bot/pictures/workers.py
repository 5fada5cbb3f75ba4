"""The generation workers: each takes a job from the queue and walks it through its steps.

The steps, where a job starts, and how each exit ends it are the tables of
:mod:`bot.pictures.lifecycle`; this module performs them:

* PREPARE: persona core + style + the reply's scene, a fresh seed, the template filled in;
* GENERATE: ``generate`` under ``COMFYUI_TIMEOUT_SECONDS`` (submit, wait, download), then
  the picture is kept on disk (``spool/`` beside the database);
* DELIVER: photo, else document, as a reply to the text it illustrates; then the charge.

Each step records the row state it reached before the next one starts. What a cancel
means depends on who cancels: the user's «✖ Отмена» cancels the job's own scope
(registered in the queue until delivery starts), ComfyUI is cleaned up and the job ends
as ``CANCELLED``. A stop cancels from outside: nothing is settled, the row stays active
(``SHUTDOWN``) and the next start resumes it.
"""

from __future__ import annotations

import json
import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio

from bot.deps import Deps
from bot.pictures.delivery import DeliveryFailed, send_picture
from bot.pictures.lifecycle import STEPS, Exit, Step, start_of
from bot.pictures.prompts import describe_scene, prompt_params
from bot.pictures.queue import Ticket
from bot.pictures.runtime import PicturesRuntime
from bot.pictures.settle import settle, tell_user
from bot.pictures.status import Sending, Waiting
from comfy import ComfyError, WorkflowError
from comfy.logfields import fields
from store import Job

__all__ = ["DEFAULT_IMAGE_EXTENSION", "JobEnded", "run_job", "run_workers"]

log = logging.getLogger(__name__)

SCENE_TIMEOUT_S: Final = 20.0  # the LLM's scene description; without it, core + style
DEFAULT_IMAGE_EXTENSION: Final = ".png"


class JobEnded(Exception):
    """A step ended the job early; *exit* says how (see ``lifecycle.ENDS``)."""

    def __init__(self, exit_: Exit, detail: str) -> None:
        super().__init__(detail)
        self.exit = exit_
        self.detail = detail


@dataclass(slots=True)
class _Work:
    """What the steps hand each other."""

    job: Job
    graph: dict[str, Any] | None
    spool: Path | None
    picture: bytes | None = None  # in memory once drawn by this process
    file_id: str = ""


async def run_workers(
    deps: Deps,
    runtime: PicturesRuntime,
    *,
    count: int,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run *count* workers over the queue until cancelled (or the queue is closed)."""
    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(_work, deps, runtime, index, name=f"generation-worker-{index}")
        task_status.started()


async def _work(deps: Deps, runtime: PicturesRuntime, index: int) -> None:
    async for ticket in runtime.queue.tickets():
        log.debug("worker %s takes a job", index, extra=fields(job=ticket.job_id))
        await run_job(deps, runtime, ticket)


async def run_job(deps: Deps, runtime: PicturesRuntime, ticket: Ticket) -> None:
    """Take one job from its current step to its end (or, on a stop, leave it be)."""
    job = deps.store.jobs.get(ticket.job_id)
    if job is None or not job.active:
        return  # cancelled while it waited
    runtime.board.show(job.job_id, Waiting())  # out of our queue, not yet drawn
    exit_, detail = Exit.DELIVERED, ""
    work = _Work(job, json.loads(job.graph) if job.graph else None, _spool_of(job))
    with runtime.queue.drawing(job.job_id) as own_scope:
        try:
            await _run_steps(deps, runtime, work, resumed=ticket.resumed)
        except JobEnded as exc:
            exit_, detail = exc.exit, exc.detail
        except Exception as exc:
            log.exception("job crashed", extra=fields(job=job.job_id))
            exit_, detail = Exit.CRASHED, f"internal error: {exc!r}"
    if own_scope.cancelled_caught:
        exit_, detail = Exit.CANCELLED, "cancelled by the user"
    if exit_ is not Exit.DELIVERED:
        # A stop in progress can surface as an error first (its connections close under
        # the job): such a job is kept for the next start (SHUTDOWN), not settled as failed.
        # A delivered picture is charged at once, stop or not.
        await trio.lowlevel.checkpoint_if_cancelled()
    if exit_ is not Exit.DELIVERED:
        log.info("job failed", extra=fields(job=job.job_id, exit=exit_.value, detail=detail))
    if settle(deps, job, exit_, detail=detail, file_id=work.file_id):
        await tell_user(deps, job, exit_)
    runtime.board.close(job.job_id)
    if work.spool is not None and exit_ is Exit.DELIVERED:
        work.spool.unlink(missing_ok=True)


def _spool_of(job: Job) -> Path | None:
    return Path(job.spool_path) if job.spool_path else None


async def _run_steps(deps: Deps, runtime: PicturesRuntime, work: _Work, *, resumed: bool) -> None:
    job = work.job
    has_data = work.spool.is_file() if work.spool is not None else work.graph is not None
    start = start_of(job.state, holds_its_data=has_data, resumed=resumed)
    step: Step | None = start.step
    while step is not None:
        match step:
            case Step.PREPARE:
                work.graph = await _prepare(deps, runtime, job)
                deps.store.jobs.advance(
                    job.job_id,
                    to=STEPS[step].records,
                    now=deps.now(),
                    graph=json.dumps(work.graph),
                )
            case Step.GENERATE:
                assert work.graph is not None
                work.spool, work.picture = await _generate(
                    deps, runtime, job, work.graph, look_up_first=start.look_up_first
                )
                deps.store.jobs.advance(
                    job.job_id, to=STEPS[step].records, now=deps.now(), spool_path=str(work.spool)
                )
            case Step.DELIVER:
                assert work.spool is not None
                picture = work.picture if work.picture is not None else work.spool.read_bytes()
                work.file_id = await _deliver(deps, runtime, job, picture, work.spool.name)
        step = STEPS[step].then


async def _prepare(deps: Deps, runtime: PicturesRuntime, job: Job) -> dict[str, Any]:
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
        raise JobEnded(Exit.WORKFLOW_FAILED, f"workflow: {exc}") from None


async def _generate(
    deps: Deps, runtime: PicturesRuntime, job: Job, graph: dict[str, Any], *, look_up_first: bool
) -> tuple[Path, bytes]:
    """ComfyUI draws the picture; it is kept on disk before the row says ``downloaded``."""
    try:
        image = await runtime.generator.generate(
            graph,
            prompt_id=job.prompt_id,
            timeout_s=deps.settings.comfyui_timeout_seconds,
            on_progress=lambda progress: runtime.board.show_progress(job.job_id, progress),
            recover=look_up_first,
        )
    except ComfyError as exc:
        raise JobEnded(Exit.GENERATION_FAILED, f"{type(exc).__name__}: {exc.detail}") from None
    extension = mimetypes.guess_extension(image.content_type) or Path(image.filename).suffix
    spool = runtime.spool_dir / f"{job.job_id}{extension or DEFAULT_IMAGE_EXTENSION}"
    # A few MB written synchronously: shorter than a thread hop, and it keeps the job's
    # steps in order with no await between the file and its row.
    spool.write_bytes(image.data)
    return spool, image.data


async def _deliver(
    deps: Deps, runtime: PicturesRuntime, job: Job, picture: bytes, filename: str
) -> str:
    """Send the picture; from here on a cancel press finds nothing to cancel."""
    runtime.queue.delivering(job.job_id)
    runtime.board.show(job.job_id, Sending())
    try:
        return await send_picture(
            deps,
            chat_id=job.chat_id,
            reply_to=job.message_id,
            data=picture,
            filename=filename,
        )
    except DeliveryFailed as exc:
        if exc.blocked:
            deps.store.users.set_blocked(job.user_id, blocked=True, now=deps.now())
            raise JobEnded(Exit.USER_BLOCKED, exc.detail) from None
        raise JobEnded(Exit.SEND_REFUSED, exc.detail) from None
