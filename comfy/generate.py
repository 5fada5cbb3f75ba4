"""``Comfy.generate``: one picture from a graph, under one time budget, cleaned up on exit.

The budget (``COMFYUI_TIMEOUT_SECONDS``) is one cancel scope around submit → wait →
download (SPEC §2, §7). Whatever ends the job early, the timeout or the caller's cancel
(the user's "cancel" button, shutdown), a shielded cleanup with its own short deadline
removes the prompt from ComfyUI's queue and interrupts it only if GET /queue shows it is
the one running, so the GPU does not keep working for nobody and nobody else's job is
stopped (NOTES §4.9, §4.10). At most ``concurrency`` jobs of this process are on ComfyUI
at once; the limiter is taken before the budget starts, since waiting in our own pool is
bounded by the pool's queue, not by this timeout (SPEC §7).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import trio

from comfy.client import ComfyClient
from comfy.errors import (
    ComfyError,
    ComfyUnavailable,
    GenerationFailed,
    GenerationInterrupted,
    GenerationTimedOut,
    PromptRejected,
)
from comfy.follower import Follower, JobWatch, probe_prompt
from comfy.messages import ImageRef
from comfy.protocol import JobState, JobTracker, JobUpdate, probe_from_history

__all__ = [
    "CLEANUP_TIMEOUT_S",
    "RESUBMIT_MIN_REMAINING_S",
    "WAIT_CONNECTED_S",
    "Comfy",
    "GeneratedImage",
    "JobProgress",
    "ProgressStage",
]

log = logging.getLogger(__name__)

WAIT_CONNECTED_S: Final = 10.0  # how long a job waits for the websocket before giving up
CLEANUP_TIMEOUT_S: Final = 5.0  # shielded queue delete / interrupt, and history delete
RESUBMIT_MIN_REMAINING_S: Final = 10.0  # a vanished prompt is resubmitted only with this left


class ProgressStage(enum.Enum):
    WAITING_FOR_SERVER = "waiting_for_server"
    QUEUED = "queued"
    RUNNING = "running"
    DOWNLOADING = "downloading"


@dataclass(frozen=True, slots=True)
class JobProgress:
    """What a status line can show: ``RUNNING`` 12/25, ``QUEUED`` with 3 in ComfyUI's queue."""

    stage: ProgressStage
    value: int = 0
    maximum: int = 0
    queue_remaining: int | None = None


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    data: bytes
    filename: str
    content_type: str


@dataclass(slots=True)
class _Job:
    prompt_id: str
    graph: dict[str, Any]
    report: Callable[[JobProgress], None]
    watch: JobWatch | None = None
    on_server: bool = False  # POST /prompt was sent (a failed POST may still have queued it)
    ended: bool = False  # ComfyUI finished with it: nothing left to cancel there


def _ignore(_: JobProgress) -> None:
    pass


class Comfy:
    """The facade the bot uses: ``await comfy.generate(graph, prompt_id=..., timeout_s=...)``."""

    def __init__(self, client: ComfyClient, follower: Follower, *, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency!r}")
        self._client = client
        self._follower = follower
        self._limiter = trio.CapacityLimiter(concurrency)

    async def generate(
        self,
        graph: dict[str, Any],
        *,
        prompt_id: str,
        timeout_s: float,
        on_progress: Callable[[JobProgress], None] | None = None,
        recover: bool = False,
    ) -> GeneratedImage:
        """Run *graph* on ComfyUI as *prompt_id* (chosen and stored by the caller).

        Args:
            recover: the prompt may already be on ComfyUI (the bot crashed after storing
                it). It is looked up first and submitted only if ComfyUI holds it nowhere
                (or it was interrupted, e.g. by the previous process's shutdown).
            on_progress: called from this task, never from the reader; must be cheap.

        Raises:
            GenerationTimedOut: *timeout_s* ran out; the prompt was cancelled on ComfyUI.
            PromptRejected, GenerationFailed, GenerationInterrupted, ComfyUnavailable,
            ComfyProtocolError: see ``comfy.errors``.
            trio.Cancelled: the caller cancelled; the prompt was cancelled on ComfyUI first.
        """
        job = _Job(prompt_id, graph, on_progress or _ignore)
        async with self._limiter:
            try:
                with trio.fail_after(timeout_s) as budget:
                    image = await self._run(job, recover=recover, deadline=budget.deadline)
            except trio.TooSlowError:
                log.warning("comfy prompt timed out prompt_id=%s after %g s", prompt_id, timeout_s)
                cancelled = "; cancelled on ComfyUI" if job.on_server and not job.ended else ""
                raise GenerationTimedOut(
                    f"no picture within {timeout_s:g} s (prompt {prompt_id}){cancelled}"
                ) from None
            finally:
                if job.watch is not None:
                    self._follower.forget(job.watch)
                if job.on_server and not job.ended:
                    await self._cancel_on_server(prompt_id)
        # Outside the limiter: tidying ComfyUI's history must not delay the next prompt.
        await self._forget_history(prompt_id)
        return image

    async def _run(self, job: _Job, *, recover: bool, deadline: float) -> GeneratedImage:
        outcome = await self._recover(job) if recover else None
        resubmits_left = 1
        while outcome is None or outcome.state is JobState.VANISHED:
            if outcome is not None:  # ComfyUI restarted or someone deleted the prompt
                job.on_server = False
                remaining_s = deadline - trio.current_time()
                if resubmits_left == 0 or remaining_s < RESUBMIT_MIN_REMAINING_S:
                    why = "again" if resubmits_left == 0 else f"with {remaining_s:.0f} s left"
                    raise ComfyUnavailable(
                        f"prompt {job.prompt_id} vanished from ComfyUI (restarted or deleted) {why}"
                    )
                resubmits_left -= 1
                log.warning("comfy prompt vanished prompt_id=%s; submitting again", job.prompt_id)
            outcome = await self._submit_and_wait(job)
        job.ended = True
        if outcome.state is JobState.FAILED:
            failure = outcome.failure
            node = f"node {failure.node_id} ({failure.node_type})" if failure else "a node"
            raise GenerationFailed(node, failure.message if failure else "unknown error")
        if outcome.state is JobState.INTERRUPTED:
            raise GenerationInterrupted(f"prompt {job.prompt_id} was interrupted on ComfyUI")
        return await self._fetch_image(job, outcome)

    async def _recover(self, job: _Job) -> JobUpdate | None:
        """Finished → its outcome; queued/running → wait for it; nowhere → None (submit).

        An *interrupted* prompt is submitted again too: the likeliest interrupter is this
        bot's own shutdown cleanup, it made no picture, and ComfyUI no longer holds it, so
        a new submission cannot run it twice.
        """
        probe = await probe_prompt(self._client, job.prompt_id)
        tracker = JobTracker()
        tracker.add(job.prompt_id)
        updates = tracker.reconcile(job.prompt_id, probe)
        state = tracker.state(job.prompt_id)
        log.info("comfy recover prompt_id=%s: %s", job.prompt_id, probe.signal.value)
        if state in (JobState.VANISHED, JobState.INTERRUPTED):
            return None
        if updates and updates[-1].terminal:
            return updates[-1]
        # Submitted by a process that is gone: its clientId's messages reach nobody, so
        # the follower reconciles it by polling (RECONCILE_INTERVAL_S).
        job.on_server = True
        job.watch = self._follower.watch(job.prompt_id, client_id=None, submitted=True)
        outcome = await self._wait(job, job.watch)
        if outcome.state is JobState.INTERRUPTED:  # the old process's cleanup landed late
            job.on_server = False
            return None
        return outcome

    async def _submit_and_wait(self, job: _Job) -> JobUpdate:
        job.report(JobProgress(ProgressStage.WAITING_FOR_SERVER))
        with trio.move_on_after(WAIT_CONNECTED_S) as waiting:
            client_id = await self._follower.wait_connected()
        if waiting.cancelled_caught:
            raise ComfyUnavailable(
                f"ComfyUI websocket not connected within {WAIT_CONNECTED_S:g} s "
                f"({self._follower.last_error})"
            )
        if job.watch is not None:
            self._follower.forget(job.watch)
        job.watch = self._follower.watch(job.prompt_id, client_id=client_id)
        job.on_server = True
        try:
            await self._client.submit(job.graph, prompt_id=job.prompt_id, client_id=client_id)
        except PromptRejected:
            job.on_server = False
            raise
        self._follower.mark_submitted(job.watch)
        log.info("comfy prompt submitted prompt_id=%s client_id=%s", job.prompt_id, client_id)
        job.report(JobProgress(ProgressStage.QUEUED))
        return await self._wait(job, job.watch)

    async def _wait(self, job: _Job, watch: JobWatch) -> JobUpdate:
        async for update in watch.updates:
            if update.state is JobState.QUEUED:
                job.report(
                    JobProgress(ProgressStage.QUEUED, queue_remaining=update.queue_remaining)
                )
            else:
                job.report(JobProgress(ProgressStage.RUNNING, update.value, update.maximum))
        await watch.done.wait()
        if watch.outcome is None:  # unreachable: the channel closes only with an outcome
            raise ComfyUnavailable(f"prompt {job.prompt_id}: follower ended without an outcome")
        return watch.outcome

    async def _fetch_image(self, job: _Job, outcome: JobUpdate) -> GeneratedImage:
        images: tuple[ImageRef, ...] = outcome.images
        if not images:  # the executed message was missed, or an old server: ask /history
            entry = await self._client.get_history(job.prompt_id)
            images = probe_from_history(entry).images if entry is not None else ()
        image = next((i for i in images if i.type == "output"), images[0] if images else None)
        if image is None:
            raise GenerationFailed(
                "the workflow", "finished without saving an image (no SaveImage?)"
            )
        job.report(JobProgress(ProgressStage.DOWNLOADING))
        downloaded = await self._client.download(image)
        return GeneratedImage(downloaded.data, image.filename, downloaded.content_type)

    async def _cancel_on_server(self, prompt_id: str) -> None:
        """Shielded: delete the prompt if pending; interrupt it only if it is running."""
        with trio.move_on_after(CLEANUP_TIMEOUT_S, shield=True) as cleanup:
            try:
                await self._client.delete_queued(prompt_id)
                queue = await self._client.get_queue()
                if prompt_id in queue.pending:  # a second copy, or it was being dequeued
                    await self._client.delete_queued(prompt_id)
                    queue = await self._client.get_queue()
                if prompt_id in queue.running:
                    await self._client.interrupt(prompt_id)
                    log.info("comfy prompt interrupted prompt_id=%s", prompt_id)
                else:
                    log.info("comfy prompt removed from queue prompt_id=%s", prompt_id)
            except ComfyError as exc:
                log.warning("comfy cleanup failed prompt_id=%s: %s", prompt_id, exc.detail)
        if cleanup.cancelled_caught:
            log.warning(
                "comfy cleanup gave up after %g s prompt_id=%s", CLEANUP_TIMEOUT_S, prompt_id
            )

    async def _forget_history(self, prompt_id: str) -> None:
        with trio.move_on_after(CLEANUP_TIMEOUT_S):
            try:
                await self._client.delete_history(prompt_id)
            except ComfyError as exc:
                log.info("comfy history delete failed prompt_id=%s: %s", prompt_id, exc.detail)
