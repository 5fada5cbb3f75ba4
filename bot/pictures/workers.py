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
import sqlite3
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from bot.core.deps import Deps
from bot.pictures.delivery import DeliveryFailed, send_picture, variant_keyboard
from bot.pictures.lifecycle import ENDS, STEPS, Exit, Step, start_of
from bot.pictures.prompts import describe_scene
from bot.pictures.queue import Ticket
from bot.pictures.runtime import PicturesRuntime
from bot.pictures.settle import settle, tell_user
from bot.pictures.spool import discard
from bot.pictures.status import Waiting
from bot.pictures.uploading import showing_upload
from comfy import ComfyError, WorkflowError
from common.bodies import describe_body, picture_format
from common.logfields import fields
from store import Job, JobState, is_transient
from store.patience import FOREVER

__all__ = ["DEFAULT_IMAGE_EXTENSION", "JobEnded", "run_job", "run_workers"]

log = logging.getLogger(__name__)

SCENE_TIMEOUT_S: Final = 20.0  # the LLM's scene description; without it, core + style
DEFAULT_IMAGE_EXTENSION: Final = ".png"
SPOOL_HEAD_BYTES: Final = 16  # enough for every picture signature


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
    server: str | None = None  # the ComfyUI server it was last handed to
    uploading: bool = False  # its row says ``delivering``: only a failed upload releases it


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
        log.debug("job_taken", extra=fields(worker=index, job=ticket.job_id))
        await run_job(deps, runtime, ticket)


async def run_job(deps: Deps, runtime: PicturesRuntime, ticket: Ticket) -> None:
    """Take one job from its current step to its end (or, on a stop, leave it be)."""
    job = deps.store.jobs.get(ticket.job_id)
    if job is None or not job.active:
        return  # cancelled while it waited
    runtime.board.show(job.job_id, Waiting())  # out of our queue, not yet drawn
    exit_, detail = Exit.DELIVERED, ""
    work = _Work(job, json.loads(job.graph) if job.graph else None, _spool_of(job))
    work.server = job.server
    work.uploading = job.state is JobState.DELIVERING
    with runtime.queue.drawing(job.job_id) as own_scope:
        try:
            await _run_steps(deps, runtime, work, resumed=ticket.resumed)
        except JobEnded as exc:
            exit_, detail = exc.exit, exc.detail
        except Exception as exc:
            log.exception("job_crashed", extra=fields(job=job.job_id, server=work.server))
            exit_, detail = Exit.CRASHED, f"internal error: {exc!r}"
    if own_scope.cancelled_caught:
        exit_, detail = Exit.CANCELLED, "cancelled by the user"
    if exit_ is Exit.DELIVERED:
        log.info("job_delivered", extra=fields(job=job.job_id, server=work.server))
    else:
        # A stop in progress can surface as an error first (its connections close under
        # the job): such a job is kept for the next start (SHUTDOWN), not settled as failed.
        # A delivered picture is charged at once, stop or not.
        await trio.lowlevel.checkpoint_if_cancelled()
        log.info(
            "job_failed",
            extra=fields(job=job.job_id, server=work.server, exit=exit_.value, detail=detail),
        )
    settled = await settle(
        deps, job, exit_, detail=detail, file_id=work.file_id, after_upload=work.uploading
    )
    if settled:
        await tell_user(deps, job, exit_)
    runtime.board.close(job.job_id)
    if ENDS[exit_].final:  # delivered or failed: the picture on disk has no use left
        discard(work.spool)


def _spool_of(job: Job) -> Path | None:
    return Path(job.spool_path) if job.spool_path else None


def _holds_picture(spool: Path) -> bool:
    """Whether the spool file starts like a picture. One that does not (damaged, or kept
    by a version that did not check what /view returned) is never sent: the job draws
    again, looking the prompt up on ComfyUI first (lifecycle ``START``)."""
    try:
        with spool.open("rb") as file:
            return picture_format(file.read(SPOOL_HEAD_BYTES)) is not None
    except OSError:
        return False


async def _run_steps(deps: Deps, runtime: PicturesRuntime, work: _Work, *, resumed: bool) -> None:
    job = work.job
    if work.spool is None:
        has_data = work.graph is not None
    else:
        has_data = _holds_picture(work.spool)
        if not has_data:
            work.spool.unlink(missing_ok=True)
    start = start_of(job.state, holds_its_data=has_data, resumed=resumed)
    step: Step | None = start.step
    while step is not None:
        match step:
            case Step.PREPARE:
                work.graph = await _prepare(deps, runtime, job)
                graph = json.dumps(work.graph)
                await _record(deps, job, step, graph=graph)
            case Step.GENERATE:
                assert work.graph is not None
                work.spool, work.picture = await _generate(
                    deps, runtime, work, work.graph, look_up_first=start.look_up_first
                )
                await _record(deps, job, step, spool_path=str(work.spool))
            case Step.DELIVER:
                assert work.spool is not None
                picture = work.picture if work.picture is not None else work.spool.read_bytes()
                work.file_id = await _deliver(deps, runtime, work, picture, work.spool.name)
        step = STEPS[step].then


async def _record(
    deps: Deps, job: Job, step: Step, *, graph: str | None = None, spool_path: str | None = None
) -> None:
    """The row state *step* reached, before the next step begins (waits out a lock).

    Raises:
        JobEnded: the job was released meanwhile (a cancel, a refund): it stops here.
    """
    advanced = await deps.write(
        f"job {job.job_id} {step.value} done",
        lambda: deps.store.jobs.advance(
            job.job_id,
            to=STEPS[step].records,
            now=deps.now(),
            graph=graph,
            spool_path=spool_path,
        ),
        patience_s=FOREVER,
    )
    if not advanced:
        raise JobEnded(Exit.ENDED_ELSEWHERE, f"released before {step.value} was recorded")


async def _prepare(deps: Deps, runtime: PicturesRuntime, job: Job) -> dict[str, Any]:
    """Persona core + style + the reply's scene, into the workflow template."""
    persona = deps.personas.get(job.persona_key)
    config = deps.personas.image_config(persona)
    sent = deps.store.sent.get(chat_id=job.chat_id, message_id=job.message_id)
    scene = None
    if sent is not None:
        with trio.move_on_after(SCENE_TIMEOUT_S):
            scene = await describe_scene(deps.llm, sent.text)
    params = config.prompt_params(
        scene=scene,
        default_checkpoint=deps.settings.comfyui_default_checkpoint,
        rng=deps.rng,
    )
    try:
        return runtime.template.build(params)
    except WorkflowError as exc:
        raise JobEnded(Exit.WORKFLOW_FAILED, f"workflow: {exc}") from None


async def _generate(
    deps: Deps, runtime: PicturesRuntime, work: _Work, graph: dict[str, Any], *, look_up_first: bool
) -> tuple[Path, bytes]:
    """ComfyUI draws the picture; it is kept on disk before the row says ``downloaded``."""
    job = work.job
    # Previews cost sampling time: asked for only while the user sees the status message.
    previews = deps.settings.comfyui_previews
    watched = previews != "off" and runtime.board.watching(job.job_id)
    try:
        image = await runtime.servers.generate(
            graph,
            prompt_id=job.prompt_id,
            timeout_s=deps.settings.comfyui_timeout_seconds,
            on_progress=lambda progress: runtime.board.show_progress(job.job_id, progress),
            recover=look_up_first,
            last_server=job.server,
            on_server=lambda server: _handed_to(deps, work, server),
            preview_method=previews if watched else None,
        )
    except ComfyError as exc:
        raise JobEnded(Exit.GENERATION_FAILED, f"{type(exc).__name__}: {exc.detail}") from None
    if picture_format(image.data) is None:  # comfy.Comfy checks too; any generator is held to it
        found = describe_body(image.data, content_type=image.content_type)
        raise JobEnded(Exit.GENERATION_FAILED, f"the generator returned {found}, not a picture")
    extension = mimetypes.guess_extension(image.content_type) or Path(image.filename).suffix
    spool = runtime.spool_dir / f"{job.job_id}{extension or DEFAULT_IMAGE_EXTENSION}"
    # A few MB written synchronously: shorter than a thread hop, and it keeps the job's
    # steps in order with no await between the file and its row.
    spool.write_bytes(image.data)
    return spool, image.data


def _handed_to(deps: Deps, work: _Work, server: str) -> None:
    """Recorded before the prompt reaches *server*: a restart looks for it there first.

    Only a hint for recovery, which otherwise looks on every server: a database locked
    at this moment is logged, not waited for (this runs inside the placement, no await).
    """
    work.server = server
    try:
        deps.store.jobs.set_server(work.job.job_id, server)
    except sqlite3.Error as exc:
        if not is_transient(exc):
            raise
        log.warning(
            "job_server_not_recorded",
            extra=fields(job=work.job.job_id, server=server, error=str(exc)),
        )
    log.info("job_handed_to_server", extra=fields(job=work.job.job_id, server=server))


async def _deliver(
    deps: Deps, runtime: PicturesRuntime, work: _Work, picture: bytes, filename: str
) -> str:
    """Send the picture, once the row says ``delivering``; from here on a cancel press
    finds nothing to cancel, and a stop lets the upload finish within its grace
    (:mod:`bot.pictures.deliveries`).

    Raises:
        JobEnded: the job was released before its upload could begin, or the upload failed.
    """
    job = work.job
    runtime.queue.delivering(job.job_id)
    started = await deps.write(
        f"job {job.job_id} delivering",
        lambda: deps.store.quota.start_delivering(job.job_id, now=deps.now()),
        patience_s=FOREVER,
    )
    if not started:  # a cancel (or a refund) released it: never upload a released job
        raise JobEnded(Exit.ENDED_ELSEWHERE, "released before its upload began")
    work.uploading = True
    # The picture lands in the status message; the board lets go of it first.
    status_message = await runtime.board.hand_over(job.job_id)
    with runtime.deliveries.shielded():
        try:
            return await showing_upload(
                deps,
                job.chat_id,
                partial(
                    send_picture,
                    deps,
                    chat_id=job.chat_id,
                    reply_to=job.message_id,
                    data=picture,
                    filename=filename,
                    reply_markup=variant_keyboard(job.message_id, job.language),
                    in_place_of=status_message,
                ),
            )
        except DeliveryFailed as exc:
            if exc.blocked:
                await deps.write(
                    f"blocked flag of user {job.user_id}",
                    lambda: deps.store.users.set_blocked(job.user_id, blocked=True, now=deps.now()),
                )
                raise JobEnded(Exit.USER_BLOCKED, exc.detail) from None
            raise JobEnded(Exit.SEND_REFUSED, exc.detail) from None
    # Only a stop bounds a delivery: its grace ran out mid-upload. The job stays active
    # and the next start sends the picture again (docs/decisions.md, D8).
    log.warning(
        "job_upload_cut_short",
        extra=fields(job=job.job_id, hint="it is sent again at the next start"),
    )
    await trio.lowlevel.checkpoint()  # the stop's cancel lands here
    raise RuntimeError(f"delivery of job {job.job_id} cut short without a stop")
