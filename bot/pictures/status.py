"""The one owner of every job's status message: queue place, then progress, then the picture.

A job's small status message (a reply to the text it illustrates, with «✖ Отмена») is
written by this module alone. Everyone else says what the message *should* show:

* the press opens a line with the job's place in the queue (:meth:`StatusBoard.open`);
* the queue reports new places as jobs move up (:meth:`StatusBoard.show_places`);
* the worker reports waiting for the GPU, ComfyUI's progress, then "almost done"
  (:meth:`StatusBoard.show`), and the forming picture when ComfyUI sends previews
  (:meth:`StatusBoard.show_progress`);
* the delivery takes the message over, to turn it into the picture
  (:meth:`StatusBoard.hand_over`); whoever ends a job otherwise closes the line, which
  deletes the message (:meth:`StatusBoard.close`).

One task (:meth:`StatusBoard.run`) turns the difference between what a line should show
and what it shows into Bot API calls. The rules are a pure function,
:func:`next_action`: post at once; edit only when the wanted text differs, at most once
every ``MIN_EDIT_INTERVAL_S`` per message and never sooner than that after the change
(quick successive changes collapse into one edit, Telegram's flood limits count edits);
delete at once when the line is closed, after a post still in flight has landed.

Previews: the latest forming picture of a line waits on it, one at a time (older ones are
simply replaced). It turns the message into a photo with the status as its caption
(``editMessageMedia``), at most every ``PREVIEW_INTERVAL_S`` in a private chat and every
``GROUP_PREVIEW_INTERVAL_S`` in a group (Telegram's group budget is 20 a minute), and
never sooner than that after the message's last edit. From then on the status is the
photo's caption (``editMessageCaption``); a message adopted after a restart learns it is
a photo from Telegram's "there is no text in the message to edit". Previews are the
budget's last class (``Priority.PREVIEW``): under load they are dropped first. A preview
Telegram refuses (photos not allowed in the chat, the message gone) ends previews for
that line, never the job.

The message id lives here, in memory, with the line. SQLite keeps a copy only for
recovery: a job resumed after a restart adopts its old message (:meth:`StatusBoard.adopt`),
and a message left behind by a job that ended just before a stop is deleted at the next
start. A failed call is logged and forgotten: a status line is never worth failing a
picture for. In Telegram's send budget (bot/telegram/send_budget.py) posts and deletes
are never dropped but wait behind replies and photos when the budget is short; edits are
cosmetic, so under load the budget thins them, and an edit it drops is tried again by
the same rules.
"""

from __future__ import annotations

import enum
import logging
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import trio

from bot.core.buttons import Cancel, encode
from bot.core.texts import t
from bot.pictures.queue import Place
from bot.telegram.client import TelegramApi
from bot.telegram.errors import (
    TelegramBadRequest,
    TelegramCallDropped,
    TelegramError,
    TelegramForbidden,
)
from bot.telegram.send_budget import Priority
from bot.telegram.types import InlineKeyboardButton, InlineKeyboardMarkup
from comfy import Preview, ProgressStage, PromptProgress
from common.logfields import fields
from common.metrics import PREVIEWS
from store import Jobs

__all__ = [
    "CLEANUP_DEADLINE_S",
    "GROUP_PREVIEW_INTERVAL_S",
    "HAND_OVER_WAIT_S",
    "MIN_EDIT_INTERVAL_S",
    "PREVIEW_INTERVAL_S",
    "Action",
    "Drawing",
    "Queued",
    "Sending",
    "Status",
    "StatusBoard",
    "StatusLine",
    "StatusView",
    "Waiting",
    "cancel_keyboard",
    "next_action",
    "render",
    "status_of",
]

log = logging.getLogger(__name__)

MIN_EDIT_INTERVAL_S: Final = 3.0
# A status message is deleted within this, or left; long enough to wait out a busy send
# budget, where deletes queue behind the pictures (bot/telegram/send_budget.py).
CLEANUP_DEADLINE_S: Final = 30.0
# Status edits in flight (or waiting in the send budget) at once: a queue moving up edits
# every waiting job's message, and a burst of them must not crowd out the chat's replies
# on the shared HTTP client. Posts and deletes never queue behind edits.
MAX_CONCURRENT_CALLS: Final = 2
# The forming picture, at most this often per chat: private chats, then groups (whose
# whole budget is about 20 messages a minute, docs/telegram.md, T7).
PREVIEW_INTERVAL_S: Final = 2.0
GROUP_PREVIEW_INTERVAL_S: Final = 10.0
# How long the finished picture waits for a status call still in flight (a preview
# upload) before it goes as a message of its own; the call's HTTP timeout bounds it too.
HAND_OVER_WAIT_S: Final = 15.0
# Telegram's answer to editMessageText on a photo (docs/telegram.md, T17).
_NO_TEXT: Final = "there is no text in the message to edit"
_PREVIEW_NAMES: Final = {
    "image/jpeg": "preview.jpg",
    "image/png": "preview.png",
    "image/webp": "preview.webp",
}


@dataclass(frozen=True, slots=True)
class Queued:
    place: int  # 1-based place in our queue


@dataclass(frozen=True, slots=True)
class Waiting:
    """A worker has the job; ComfyUI has not started drawing it. *place*: where it stands
    among the jobs waiting for a GPU, when that is known."""

    place: int | None = None


@dataclass(frozen=True, slots=True)
class Drawing:
    percent: int


@dataclass(frozen=True, slots=True)
class Sending:
    """The picture is downloaded and being sent: it can no longer be cancelled."""


Status = Queued | Waiting | Drawing | Sending


@dataclass(frozen=True, slots=True)
class StatusView:
    """What the message shows: its text, and whether «✖ Отмена» is under it."""

    text: str
    cancellable: bool


def render(status: Status, lang: str) -> StatusView:
    """The message for *status* in *lang* (pure)."""
    match status:
        case Queued(place):
            return StatusView(t("status_queued", lang, position=place), cancellable=True)
        case Waiting(place=int(place)):
            return StatusView(t("status_queued", lang, position=place), cancellable=True)
        case Waiting():
            return StatusView(t("status_waiting_gpu", lang), cancellable=True)
        case Drawing(percent):
            return StatusView(t("status_running", lang, percent=percent), cancellable=True)
        case Sending():
            return StatusView(t("status_sending", lang), cancellable=False)


def status_of(progress: PromptProgress) -> Status:
    """What ComfyUI's progress means for the status message (pure)."""
    if progress.stage is ProgressStage.RUNNING:
        if progress.maximum <= 0:
            return Drawing(0)
        return Drawing(min(100, int(100 * progress.value / progress.maximum)))
    if progress.stage is ProgressStage.DOWNLOADING:
        return Sending()
    if progress.stage is ProgressStage.WAITING_FOR_SLOT:
        return Waiting(progress.place)
    # In ComfyUI's own queue the place is not known: its queue_remaining also counts the
    # prompts other clients queued behind ours.
    return Waiting()


def cancel_keyboard(job_id: str, lang: str) -> InlineKeyboardMarkup:
    button = InlineKeyboardButton(
        text=t("cancel_button", lang), callback_data=encode(Cancel(job_id))
    )
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


@dataclass(slots=True)
class StatusLine:
    """One job's status message: what it should show, what it shows."""

    job_id: str
    chat_id: int
    reply_to: int
    lang: str
    wanted: StatusView
    closed: bool = False  # the job ended: the message should be gone
    shown: StatusView | None = None
    message_id: int | None = None
    changed_at: float | None = None  # when ``wanted`` first differed from ``shown``
    written_at: float = -math.inf
    busy: bool = False  # a Bot API call for this line is in flight
    settled: trio.Event | None = None  # set when the call in flight ends
    edit_scope: trio.CancelScope | None = None  # around an edit or preview in flight
    sending: bool = False  # that call left the send budget: it may reach Telegram
    given_up: bool = False  # the post failed: this job has no status message
    preview: Preview | None = None  # the latest forming picture, not shown yet
    photo: bool = False  # a preview made the message a photo: the status is its caption
    previews_off: bool = False  # Telegram refused a preview here: no more for this line
    handed: bool = False  # the picture is taking the message over: no more calls


class Action(enum.Enum):
    POST = "post"
    EDIT = "edit"
    PREVIEW = "preview"  # the forming picture, with the status as its caption
    DELETE = "delete"
    FORGET = "forget"  # the line is closed and has no message: drop it


def next_action(
    line: StatusLine,
    now: float,
    *,
    min_interval_s: float = MIN_EDIT_INTERVAL_S,
    preview_interval_s: float = PREVIEW_INTERVAL_S,
    chat_preview_at: float = -math.inf,
) -> Action | float | None:
    """The next call for *line*: an :class:`Action`, a time to look again, or None.

    *chat_preview_at*: when the line's chat last got a preview (any of its lines).
    """
    if line.busy or line.handed:
        return None
    if line.closed:
        return Action.DELETE if line.message_id is not None else Action.FORGET
    if line.given_up:
        return None
    if line.message_id is None:
        return Action.POST
    wake_at = math.inf
    if line.preview is not None:
        due = max(line.written_at, chat_preview_at) + preview_interval_s
        if now >= due:
            return Action.PREVIEW
        wake_at = due
    if line.wanted == line.shown:
        return None if wake_at == math.inf else wake_at
    changed_at = line.changed_at if line.changed_at is not None else now
    due = max(line.written_at, changed_at) + min_interval_s
    return Action.EDIT if now >= due else min(due, wake_at)


class StatusBoard:
    """Every live job's status line, and the task that writes them to Telegram."""

    def __init__(
        self,
        api: TelegramApi,
        jobs: Jobs,
        *,
        min_interval_s: float = MIN_EDIT_INTERVAL_S,
        previews: bool = True,
    ) -> None:
        self._api = api
        self._jobs = jobs
        self._min_interval_s = min_interval_s
        self._previews = previews
        self._lines: dict[str, StatusLine] = {}
        self._chat_preview_at: dict[int, float] = {}  # chat -> its last preview's start
        self._changed = trio.Event()
        self._calls = trio.CapacityLimiter(MAX_CONCURRENT_CALLS)

    # What the message should show (synchronous: called from any task).

    def open(self, job_id: str, *, chat_id: int, reply_to: int, lang: str, status: Status) -> None:
        """A new job's message, posted at once."""
        self._lines[job_id] = StatusLine(
            job_id, chat_id, reply_to, lang, wanted=render(status, lang)
        )
        self._wake()

    def adopt(
        self, job_id: str, *, chat_id: int, reply_to: int, lang: str, message_id: int
    ) -> None:
        """A message posted by an earlier process for a job resumed now."""
        self._lines[job_id] = StatusLine(
            job_id,
            chat_id,
            reply_to,
            lang,
            wanted=render(Waiting(), lang),
            message_id=message_id,
            changed_at=trio.current_time(),
        )
        self._wake()

    def show(self, job_id: str, status: Status) -> None:
        """Ask for *status*; a job without a line (its post failed, or it has none) is skipped."""
        line = self._lines.get(job_id)
        if line is None or line.closed:
            return
        view = render(status, line.lang)
        if not view.cancellable:
            line.preview = None  # the picture itself comes next
        if view != line.wanted:
            line.wanted = view
            if line.changed_at is None:
                line.changed_at = trio.current_time()
            self._wake()

    def show_places(self, places: Sequence[Place], *, ahead: int = 0) -> None:
        """The queue moved: every waiting job's new place, behind *ahead* jobs that wait
        for a GPU already."""
        for place in places:
            self.show(place.job_id, Queued(ahead + place.place))

    def show_progress(self, job_id: str, progress: PromptProgress) -> None:
        """ComfyUI's progress, and its forming picture when it sent one. A preview of the
        last step is skipped: the finished picture follows within moments."""
        preview = progress.preview
        if preview is None or progress.maximum > 0:
            self.show(job_id, status_of(progress))
        if preview is None or 0 < progress.maximum <= progress.value:
            return
        line = self._lines.get(job_id)
        if line is None or not (self._previews and self.watching(job_id)):
            return
        if line.wanted.cancellable and not line.previews_off:
            line.preview = preview
            self._wake()

    def watching(self, job_id: str) -> bool:
        """Whether a user sees this job's status message (posted, or being posted)."""
        line = self._lines.get(job_id)
        return line is not None and not (line.closed or line.given_up or line.handed)

    async def hand_over(self, job_id: str) -> int | None:
        """The finished picture takes the job's message over (``editMessageMedia``): the
        board lets go of it, neither editing nor deleting it any more, and forgets its id
        in SQLite first, so that no recovery ever deletes the picture it became.

        An edit or preview still waiting for its turn in the send budget is withdrawn
        (nothing was sent); one already on its way is waited for, up to
        ``HAND_OVER_WAIT_S``: landing after the picture, it would cover it (a preview) or
        put the status and «✖ Отмена» on it (a caption). None when the job has no message
        to take (its post failed or has not landed yet, or that call did not end in time;
        the line is then closed as usual)."""
        line = self._lines.get(job_id)
        if line is None or line.closed:
            return None
        if line.message_id is None:
            self.close(job_id)
            return None
        line.handed, line.preview = True, None
        if line.busy and line.settled is not None:
            if line.edit_scope is not None and not line.sending:
                line.edit_scope.cancel()  # still waiting for its turn: nothing was sent
            with trio.move_on_after(HAND_OVER_WAIT_S):
                await line.settled.wait()
            if line.busy:
                log.info("status_message_not_handed_over", extra=fields(job=job_id))
                line.handed = False
                self.close(job_id)
                return None
        del self._lines[job_id]
        self._remember(job_id, None)
        return line.message_id

    def close(self, job_id: str) -> None:
        """The job ended: delete its message."""
        line = self._lines.get(job_id)
        if line is not None:
            line.closed = True
            self._wake()

    def _wake(self) -> None:
        self._changed.set()

    # The writer.

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Apply every line's wanted state, forever."""
        async with trio.open_nursery() as calls:
            task_status.started()
            while True:
                self._changed = trio.Event()
                wake_at = math.inf
                now = trio.current_time()
                self._forget_old_previews(now)
                for line in list(self._lines.values()):
                    action = next_action(
                        line,
                        now,
                        min_interval_s=self._min_interval_s,
                        preview_interval_s=_preview_interval(line.chat_id),
                        chat_preview_at=self._chat_preview_at.get(line.chat_id, -math.inf),
                    )
                    if action is None:
                        continue
                    if isinstance(action, float):
                        wake_at = min(wake_at, action)
                    elif action is Action.FORGET:
                        del self._lines[line.job_id]
                    else:
                        line.busy, line.settled = True, trio.Event()
                        if action is Action.PREVIEW:  # the chat's interval starts now
                            self._chat_preview_at[line.chat_id] = now
                        calls.start_soon(self._perform, line, action)
                with trio.move_on_at(wake_at):
                    await self._changed.wait()

    def _forget_old_previews(self, now: float) -> None:
        """A chat's last preview constrains nothing once an interval has passed: it is
        dropped, so the map holds the chats with recent previews, not every chat ever
        (no more than the lines the loop looks at anyway)."""
        old = now - GROUP_PREVIEW_INTERVAL_S
        for chat in [c for c, at in self._chat_preview_at.items() if at <= old]:
            del self._chat_preview_at[chat]

    async def _perform(self, line: StatusLine, action: Action) -> None:
        try:
            if action in (Action.EDIT, Action.PREVIEW):
                # hand_over may withdraw it while it waits for its turn (nothing sent yet).
                with trio.CancelScope() as line.edit_scope:
                    async with self._calls:
                        await (self._edit if action is Action.EDIT else self._preview)(line)
            elif action is Action.POST:
                await self._post(line)
            else:
                await self._delete(line)
        finally:
            line.busy = line.sending = False
            line.edit_scope = None
            if line.settled is not None:
                line.settled.set()
            self._wake()

    async def _post(self, line: StatusLine) -> None:
        view = line.wanted
        try:
            message = await self._api.send_message(
                line.chat_id,
                view.text,
                reply_markup=self._markup(line, view),
                reply_to_message_id=line.reply_to,
                disable_notification=True,
                priority=Priority.STATUS,
            )
        except TelegramError as exc:
            log.info("status_message_not_sent", extra=fields(job=line.job_id, error=str(exc)))
            line.given_up = True
            return
        line.message_id = message.message_id
        line.written_at = trio.current_time()
        line.shown = view
        if line.wanted == view:
            line.changed_at = None
        self._remember(line.job_id, message.message_id)

    async def _edit(self, line: StatusLine) -> None:
        view, message_id = line.wanted, line.message_id
        assert message_id is not None
        line.written_at = trio.current_time()
        markup = self._markup(line, view)
        try:
            # Progress is cosmetic: under load the send budget thins it (docs/telegram.md, T7).
            edit = self._api.edit_message_caption if line.photo else self._api.edit_message_text
            await edit(
                line.chat_id,
                message_id,
                view.text,
                reply_markup=markup,
                priority=Priority.COSMETIC,
                on_sending=lambda: _sending(line),
            )
        except TelegramCallDropped:
            return  # never sent: the message still shows the old view; next_action retries
        except TelegramBadRequest as exc:
            if _NO_TEXT in exc.description.lower():  # adopted after a restart: a photo
                line.photo = True
                return  # the same view goes again, as a caption
            log.debug("status_edit_failed", extra=fields(job=line.job_id, error=str(exc)))
        except TelegramError as exc:
            log.debug("status_edit_failed", extra=fields(job=line.job_id, error=str(exc)))
        # Shown or not, this view is done with; the next change tries again.
        line.shown = view
        if line.wanted == view:
            line.changed_at = None

    async def _preview(self, line: StatusLine) -> None:
        view, preview, message_id = line.wanted, line.preview, line.message_id
        assert preview is not None
        assert message_id is not None
        line.preview = None
        line.written_at = trio.current_time()
        try:
            await self._api.edit_message_media(
                line.chat_id,
                message_id,
                preview.data,
                filename=_PREVIEW_NAMES.get(preview.content_type, "preview.jpg"),
                caption=view.text,
                reply_markup=self._markup(line, view),
                priority=Priority.PREVIEW,
                on_sending=lambda: _sending(line),
            )
        except trio.Cancelled:
            PREVIEWS.labels(outcome="withdrawn").inc()  # hand_over took the message first
            raise
        except TelegramCallDropped:
            PREVIEWS.labels(outcome="dropped").inc()
            return  # stale by now; a newer preview, if any, goes by the same rules
        except (TelegramBadRequest, TelegramForbidden) as exc:
            # Photos not allowed in the chat, the message gone, ...: text progress only.
            PREVIEWS.labels(outcome="refused").inc()
            log.info("status_preview_refused", extra=fields(job=line.job_id, error=str(exc)))
            line.previews_off = True
            return
        except TelegramError as exc:  # the network, a 5xx: the next preview may go
            PREVIEWS.labels(outcome="failed").inc()
            log.debug("status_preview_failed", extra=fields(job=line.job_id, error=str(exc)))
            return
        PREVIEWS.labels(outcome="shown").inc()
        line.photo = True
        line.shown = view
        if line.wanted == view:
            line.changed_at = None

    async def _delete(self, line: StatusLine) -> None:
        message_id = line.message_id
        assert message_id is not None
        with trio.move_on_after(CLEANUP_DEADLINE_S):
            try:
                await self._api.delete_message(line.chat_id, message_id, priority=Priority.STATUS)
            except TelegramError as exc:
                log.debug("status_delete_failed", extra=fields(job=line.job_id, error=str(exc)))
        self._lines.pop(line.job_id, None)
        self._remember(line.job_id, None)

    def _remember(self, job_id: str, message_id: int | None) -> None:
        """SQLite's copy of the message id, for recovery only: a failure costs at most a
        leftover status message after a restart, so it is logged, not waited out."""
        try:
            self._jobs.set_status_message(job_id, message_id)
        except sqlite3.Error as exc:
            log.warning("status_message_id_not_stored", extra=fields(job=job_id, error=str(exc)))

    @staticmethod
    def _markup(line: StatusLine, view: StatusView) -> InlineKeyboardMarkup | None:
        return cancel_keyboard(line.job_id, line.lang) if view.cancellable else None


def _sending(line: StatusLine) -> None:
    line.sending = True


def _preview_interval(chat_id: int) -> float:
    return GROUP_PREVIEW_INTERVAL_S if chat_id < 0 else PREVIEW_INTERVAL_S
