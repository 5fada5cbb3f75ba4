"""``Comfy.generate``: one picture from a graph, under one time budget, cleaned up on exit.

The budget (``COMFYUI_TIMEOUT_SECONDS``) is one cancel scope around submit → wait →
download (docs/product.md, P11). Whatever ends the prompt early, the timeout or the
caller's cancel (the user's "cancel" button, shutdown), a shielded cleanup with its own
short deadline removes the prompt from ComfyUI's queue and interrupts it only if GET /queue
shows it is the one running, so the GPU does not keep working for nobody and nobody else's
prompt is stopped (docs/comfyui.md, C16, C17).

``Comfy`` draws; it does not decide *when*. How many prompts a server takes at once, and
how long a job waits for a server whose websocket is down, are the caller's to decide
(the bot's server pool owns both): a prompt submitted while the websocket is down would
send its messages to nobody, so ``generate`` then refuses with :class:`NotConnected` at
once, before anything reaches ComfyUI.
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
    NotConnected,
    PromptRejected,
)
from comfy.events import Preview
from comfy.follower import Follower, PromptWatch
from comfy.messages import ImageRef
from comfy.protocol import PromptState, PromptTracker, PromptUpdate, probe_from_history
from common.logfields import fields

__all__ = [
    "CLEANUP_TIMEOUT_S",
    "RESUBMIT_MIN_REMAINING_S",
    "Comfy",
    "GeneratedImage",
    "ProgressStage",
    "PromptProgress",
]

log = logging.getLogger(__name__)

CLEANUP_TIMEOUT_S: Final = 5.0  # shielded queue delete / interrupt, and history delete
RESUBMIT_MIN_REMAINING_S: Final = 10.0  # a vanished prompt is resubmitted only with this left


class ProgressStage(enum.Enum):
    WAITING_FOR_SERVER = "waiting_for_server"
    WAITING_FOR_SLOT = "waiting_for_slot"  # the caller's own wait for a free slot
    QUEUED = "queued"
    RUNNING = "running"
    DOWNLOADING = "downloading"


@dataclass(frozen=True, slots=True)
class PromptProgress:
    """What a status line can show: ``RUNNING`` 12/25, ``QUEUED`` with 3 in ComfyUI's queue."""

    stage: ProgressStage
    value: int = 0
    maximum: int = 0
    queue_remaining: int | None = None
    place: int | None = None  # WAITING_FOR_SLOT: 1-based, among the jobs waiting for one
    # RUNNING: the forming picture, when ComfyUI sent a new one (previews are on); the
    # latest only, never a backlog. Its step is 0 of 0 when no progress came before it.
    preview: Preview | None = None


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    data: bytes
    filename: str
    content_type: str
    # What the run tells about the server's cache (the bot's warm-model placement): the
    # node ids ComfyUI did not re-run, and seconds from execution start to the outcome.
    # None when this process did not see them (a prompt recovered after a restart).
    cached: tuple[str, ...] | None = None
    execution_s: float | None = None


@dataclass(slots=True)
class _Prompt:
    prompt_id: str
    graph: dict[str, Any]
    report: Callable[[PromptProgress], None]
    watch: PromptWatch | None = None
    on_server: bool = False  # POST /prompt was sent (a failed POST may still have queued it)
    ended: bool = False  # ComfyUI finished with it: nothing left to cancel there
    running_at: float | None = None  # trio time its execution was first seen
    execution_s: float | None = None
    preview_method: str | None = None


def _ignore(_: PromptProgress) -> None:
    pass


class Comfy:
    """The facade the bot uses: ``await comfy.generate(graph, prompt_id=..., timeout_s=...)``."""

    def __init__(self, client: ComfyClient, follower: Follower) -> None:
        self._client = client
        self._follower = follower

    async def generate(
        self,
        graph: dict[str, Any],
        *,
        prompt_id: str,
        timeout_s: float,
        on_progress: Callable[[PromptProgress], None] | None = None,
        recover: bool = False,
        resubmits: int = 1,
        preview_method: str | None = None,
    ) -> GeneratedImage:
        """Run *graph* on ComfyUI as *prompt_id* (chosen and stored by the caller).

        Args:
            recover: the prompt may already be on ComfyUI (the bot crashed after storing
                it). It is looked up first and submitted only if ComfyUI holds it nowhere
                (or it was interrupted, e.g. by the previous process's shutdown).
            on_progress: called from this task, never from the reader; must be cheap.
            resubmits: how often a prompt that vanished (ComfyUI restarted) is submitted
                again; a caller trying again after ``NotConnected`` passes what that
                error's ``resubmits_left`` says.
            preview_method: asked of ComfyUI for this prompt (``latent2rgb``, ``taesd``,
                ``auto``): servers after 0.3.64 send previews per prompt; older ones
                ignore it and follow their ``--preview-method``. Previews, whoever asked
                for them, reach *on_progress* as ``PromptProgress.preview``.

        Raises:
            GenerationTimedOut: *timeout_s* ran out; the prompt was cancelled on ComfyUI.
            NotConnected: the websocket was down when the prompt was to be submitted.
            PromptRejected, GenerationFailed, GenerationInterrupted, ComfyUnavailable,
            ComfyProtocolError: see ``comfy.errors``.
            trio.Cancelled: the caller cancelled; the prompt was cancelled on ComfyUI first.
        """
        prompt = _Prompt(prompt_id, graph, on_progress or _ignore, preview_method=preview_method)
        try:
            with trio.fail_after(timeout_s) as budget:
                image = await self._run(
                    prompt, recover=recover, resubmits=resubmits, deadline=budget.deadline
                )
        except trio.TooSlowError:
            log.warning(
                "comfy_prompt_timed_out",
                extra=fields(prompt_id=prompt_id, server=self._client.server, after_s=timeout_s),
            )
            cancelled = "; cancelled on ComfyUI" if prompt.on_server and not prompt.ended else ""
            raise GenerationTimedOut(
                f"no picture within {timeout_s:g} s (prompt {prompt_id}){cancelled}"
            ) from None
        finally:
            if prompt.watch is not None:
                self._follower.forget(prompt.watch)
            if prompt.on_server and not prompt.ended:
                await self._cancel_on_server(prompt_id)
        return image

    async def _run(
        self, prompt: _Prompt, *, recover: bool, resubmits: int, deadline: float
    ) -> GeneratedImage:
        outcome = await self._recover(prompt) if recover else None
        resubmits_left = resubmits
        while outcome is None or outcome.state is PromptState.VANISHED:
            if outcome is not None:  # ComfyUI restarted or someone deleted the prompt
                prompt.on_server = False
                remaining_s = deadline - trio.current_time()
                if resubmits_left == 0 or remaining_s < RESUBMIT_MIN_REMAINING_S:
                    why = "again" if resubmits_left == 0 else f"with {remaining_s:.0f} s left"
                    raise ComfyUnavailable(
                        f"prompt {prompt.prompt_id} vanished from ComfyUI"
                        f" (restarted or deleted) {why}"
                    )
                resubmits_left -= 1
                log.warning(
                    "comfy_prompt_vanished_resubmitting",
                    extra=fields(prompt_id=prompt.prompt_id, server=self._client.server),
                )
            outcome = await self._submit_and_wait(prompt, resubmits_left=resubmits_left)
        prompt.ended = True
        if outcome.state is PromptState.FAILED:
            failure = outcome.failure
            node = f"node {failure.node_id} ({failure.node_type})" if failure else "a node"
            raise GenerationFailed(node, failure.message if failure else "unknown error")
        if outcome.state is PromptState.INTERRUPTED:
            raise GenerationInterrupted(f"prompt {prompt.prompt_id} was interrupted on ComfyUI")
        return await self._fetch_image(prompt, outcome)

    async def _recover(self, prompt: _Prompt) -> PromptUpdate | None:
        """Finished → its outcome; queued/running → wait for it; nowhere → None (submit).

        An *interrupted* prompt is submitted again too: the likeliest interrupter is this
        bot's own shutdown cleanup, it made no picture, and ComfyUI no longer holds it, so
        a new submission cannot run it twice.
        """
        probe = await self._follower.probe(prompt.prompt_id)
        tracker = PromptTracker()
        tracker.add(prompt.prompt_id)
        updates = tracker.reconcile(prompt.prompt_id, probe)
        state = tracker.state(prompt.prompt_id)
        log.info(
            "comfy_prompt_recovered",
            extra=fields(
                prompt_id=prompt.prompt_id,
                server=self._client.server,
                signal=probe.signal.value,
            ),
        )
        if state in (PromptState.VANISHED, PromptState.INTERRUPTED):
            return None
        if updates and updates[-1].terminal:
            return updates[-1]
        # Submitted by a process that is gone: its clientId's messages reach nobody, so
        # the follower reconciles it by polling (RECONCILE_INTERVAL_S).
        prompt.on_server = True
        prompt.watch = self._follower.watch(prompt.prompt_id, client_id=None, submitted=True)
        outcome = await self._wait(prompt, prompt.watch)
        if outcome.state is PromptState.INTERRUPTED:  # the old process's cleanup landed late
            prompt.on_server = False
            return None
        return outcome

    async def _submit_and_wait(self, prompt: _Prompt, *, resubmits_left: int) -> PromptUpdate:
        client_id = self._follower.client_id
        if client_id is None:
            raise NotConnected(
                f"ComfyUI websocket not connected ({self._follower.last_error});"
                f" prompt {prompt.prompt_id} not submitted",
                resubmits_left=resubmits_left,
            )
        if prompt.watch is not None:
            self._follower.forget(prompt.watch)
        prompt.watch = self._follower.watch(prompt.prompt_id, client_id=client_id)
        prompt.on_server = True
        try:
            await self._client.submit(
                prompt.graph,
                prompt_id=prompt.prompt_id,
                client_id=client_id,
                preview_method=prompt.preview_method,
            )
        except PromptRejected:
            prompt.on_server = False
            raise
        self._follower.mark_submitted(prompt.watch)
        log.info(
            "comfy_prompt_submitted",
            extra=fields(
                prompt_id=prompt.prompt_id, server=self._client.server, client_id=client_id
            ),
        )
        prompt.report(PromptProgress(ProgressStage.QUEUED))
        return await self._wait(prompt, prompt.watch)

    async def _wait(self, prompt: _Prompt, watch: PromptWatch) -> PromptUpdate:
        prompt.running_at = prompt.execution_s = None
        async for update in watch.updates:
            if update.state is PromptState.QUEUED:
                prompt.report(
                    PromptProgress(ProgressStage.QUEUED, queue_remaining=update.queue_remaining)
                )
                continue
            if prompt.running_at is None:
                prompt.running_at = trio.current_time()
            if update.preview is not None:  # a wake-up: the latest picture waits on the watch
                latest = watch.take_preview()
                if latest is None:
                    continue
                update = latest
            stage = ProgressStage.RUNNING
            prompt.report(
                PromptProgress(stage, update.value, update.maximum, preview=update.preview)
            )
        await watch.done.wait()
        if watch.outcome is None:  # unreachable: the channel closes only with an outcome
            raise ComfyUnavailable(f"prompt {prompt.prompt_id}: follower ended without an outcome")
        if prompt.running_at is not None:
            prompt.execution_s = trio.current_time() - prompt.running_at
        return watch.outcome

    async def _fetch_image(self, prompt: _Prompt, outcome: PromptUpdate) -> GeneratedImage:
        images: tuple[ImageRef, ...] = outcome.images
        if not images:  # the executed message was missed, or an old server: ask /history
            entry = await self._client.get_history(prompt.prompt_id)
            images = probe_from_history(entry).images if entry is not None else ()
        image = next((i for i in images if i.type == "output"), images[0] if images else None)
        if image is None:
            raise GenerationFailed(
                "the workflow", "finished without saving an image (no SaveImage?)"
            )
        prompt.report(PromptProgress(ProgressStage.DOWNLOADING))
        failed: ComfyError | None = None
        async with trio.open_nursery() as tidying:
            # The history entry is not needed to download the file: forgetting it beside
            # the download, not after it, takes one round trip off every picture.
            tidying.start_soon(self._forget_history, prompt.prompt_id)
            try:
                downloaded = await self._client.download(image)
            except ComfyError as exc:  # raised below, not as a nursery's ExceptionGroup
                failed = exc
                tidying.cancel_scope.cancel()
        if failed is not None:
            raise failed
        return GeneratedImage(
            downloaded.data,
            image.filename,
            downloaded.content_type,
            cached=outcome.cached,
            execution_s=prompt.execution_s,
        )

    async def _cancel_on_server(self, prompt_id: str) -> None:
        """Shielded: delete the prompt if pending; interrupt it only if it is running. A
        server with the jobs API does both in one atomic call."""
        server = self._client.server
        with trio.move_on_after(CLEANUP_TIMEOUT_S, shield=True) as cleanup:
            try:
                if await self._follower.jobs_api():
                    cancelled = await self._client.cancel_job(prompt_id)
                    log.info(
                        "comfy_prompt_cancelled",
                        extra=fields(prompt_id=prompt_id, server=server, found=cancelled),
                    )
                    return
                await self._client.delete_queued(prompt_id)
                queue = await self._client.get_queue()
                if prompt_id in queue.pending:  # a second copy, or it was being dequeued
                    await self._client.delete_queued(prompt_id)
                    queue = await self._client.get_queue()
                if prompt_id in queue.running:
                    await self._client.interrupt(prompt_id)
                    log.info(
                        "comfy_prompt_interrupted", extra=fields(prompt_id=prompt_id, server=server)
                    )
                else:
                    log.info(
                        "comfy_prompt_removed_from_queue",
                        extra=fields(prompt_id=prompt_id, server=server),
                    )
            except ComfyError as exc:
                log.warning(
                    "comfy_cleanup_failed",
                    extra=fields(prompt_id=prompt_id, server=server, error=exc.detail),
                )
        if cleanup.cancelled_caught:
            log.warning(
                "comfy_cleanup_gave_up",
                extra=fields(prompt_id=prompt_id, server=server, after_s=CLEANUP_TIMEOUT_S),
            )

    async def _forget_history(self, prompt_id: str) -> None:
        with trio.move_on_after(CLEANUP_TIMEOUT_S):
            try:
                await self._client.delete_history(prompt_id)
            except ComfyError as exc:
                log.info(
                    "comfy_history_delete_failed",
                    extra=fields(prompt_id=prompt_id, error=exc.detail),
                )
