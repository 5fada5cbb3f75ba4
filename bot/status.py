"""The one small status message of a job: queue place, then progress, then gone.

Edits honour Telegram's flood limits (ENGINEERING E5): at most one every
``MIN_EDIT_INTERVAL_S`` per job, only when the text changed, and a failed edit is
logged and forgotten — a status line is never worth failing a picture for.
"""

from __future__ import annotations

import logging
import math
from typing import Final

import trio

from bot.deps import Deps, ImageRuntime
from bot.keyboards import cancel_keyboard
from bot.telegram_api import TelegramApi
from bot.telegram_errors import TelegramError
from bot.texts import t
from comfy import JobProgress, ProgressStage
from store import Store

__all__ = ["MIN_EDIT_INTERVAL_S", "StatusReporter", "progress_text", "run_queue_positions"]

log = logging.getLogger(__name__)

MIN_EDIT_INTERVAL_S: Final = 3.0
CLEANUP_DEADLINE_S: Final = 5.0


def progress_text(progress: JobProgress, lang: str) -> str:
    """What the status message says for *progress* (pure)."""
    if progress.stage is ProgressStage.RUNNING and progress.maximum > 0:
        percent = min(100, int(100 * progress.value / progress.maximum))
        return t("status_running", lang, percent=percent)
    if progress.stage is ProgressStage.RUNNING:
        return t("status_running", lang, percent=0)
    if progress.stage is ProgressStage.DOWNLOADING:
        return t("status_sending", lang)
    return t("status_waiting_gpu", lang)


class StatusReporter:
    """Keeps one job's status message in step with its progress."""

    def __init__(self, api: TelegramApi, store: Store, *, job_id: str, chat_id: int, lang: str):
        self._api = api
        self._store = store
        self._job_id = job_id
        self._chat_id = chat_id
        self._lang = lang
        self._wanted: str | None = None
        self._shown: tuple[str, bool] | None = None
        self._cancellable = True
        self._changed = trio.Event()

    def show(self, text: str, *, cancellable: bool = True) -> None:
        """Ask for *text* to be shown (sync: called from ComfyUI progress callbacks).

        Once the picture is being delivered the job can no longer be cancelled, and the
        «✖ Отмена» button goes away with the next edit.
        """
        if text != self._wanted or cancellable != self._cancellable:
            self._wanted = text
            self._cancellable = cancellable
            self._changed.set()

    def on_progress(self, progress: JobProgress) -> None:
        self.show(progress_text(progress, self._lang))

    def _message_id(self) -> int | None:
        job = self._store.jobs.get(self._job_id)
        return job.status_message_id if job else None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Apply wanted texts, throttled, until cancelled."""
        task_status.started()
        last_edit = -math.inf
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            await trio.sleep_until(last_edit + MIN_EDIT_INTERVAL_S)
            wanted, message_id = self._wanted, self._message_id()
            if wanted is None or message_id is None:
                continue
            shown = (wanted, self._cancellable)
            if shown == self._shown:
                continue
            last_edit = trio.current_time()
            try:
                await self._api.edit_message_text(
                    self._chat_id,
                    message_id,
                    wanted,
                    reply_markup=(
                        cancel_keyboard(self._job_id, self._lang) if self._cancellable else None
                    ),
                )
                self._shown = shown
            except TelegramError as exc:
                log.debug("status edit failed job=%s: %s", self._job_id, exc)

    async def remove(self) -> None:
        """Delete the status message, even while the job is being cancelled."""
        message_id = self._message_id()
        if message_id is None:
            return
        with trio.move_on_after(CLEANUP_DEADLINE_S, shield=True):
            try:
                await self._api.delete_message(self._chat_id, message_id)
            except TelegramError as exc:
                log.debug("status delete failed job=%s: %s", self._job_id, exc)
        self._store.jobs.set_status_message(self._job_id, None)


async def run_queue_positions(
    deps: Deps,
    runtime: ImageRuntime,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep each waiting job's status message at its current place in the queue.

    Changes are gathered for ``MIN_EDIT_INTERVAL_S`` before the edits go out, so a job's
    message is edited at most that often however fast the queue moves.
    """
    task_status.started()
    shown: dict[str, int] = {}
    while True:
        await runtime.pool.wait_changed(timeout_s=math.inf)
        await trio.sleep(MIN_EDIT_INTERVAL_S)
        positions = runtime.pool.positions()
        for job_id, place, first_place in positions:
            if shown.get(job_id, first_place) != place:
                await _show_place(deps, job_id, place)
                shown[job_id] = place
        waiting = {job_id for job_id, _, _ in positions}
        shown = {job_id: place for job_id, place in shown.items() if job_id in waiting}


async def _show_place(deps: Deps, job_id: str, place: int) -> None:
    job = deps.store.jobs.get(job_id)
    if job is None or not job.active or job.status_message_id is None:
        return
    try:
        await deps.api.edit_message_text(
            job.chat_id,
            job.status_message_id,
            t("status_queued", job.language, position=place),
            reply_markup=cancel_keyboard(job.job_id, job.language),
        )
    except TelegramError as exc:
        log.debug("queue place not shown job=%s: %s", job_id, exc)
