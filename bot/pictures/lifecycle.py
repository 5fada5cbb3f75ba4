"""The life of a picture job, as tables of plain values (no I/O, no awaits).

A *job* is the bot's unit of work: born when a press reserves one picture, ended by exactly
one charge or one release. Its row in SQLite (``store.JobState``) moves::

    queued ──PREPARE──▶ running ──GENERATE──▶ downloaded ──DELIVER──▶ delivering ──▶ delivered
       └──────────────────┴─────────────────────┴────── any exit but DELIVERED ──▶ failed

``delivering`` is written, by a guarded update, before the upload begins: a job a cancel
(or a refund) released is never uploaded, and no cancel releases a job being uploaded
(only a failed upload does).

Each step records the state it reached before the next step begins, so a process killed
anywhere leaves a row the next start can continue from:

* :data:`STEPS` says which state each step records and which step follows it;
* :func:`start_of` (over :data:`START`) says where a worker begins with a row, fresh or
  left by an earlier process, and whether ComfyUI must be asked about the prompt first
  (it may already hold it: a prompt is never submitted twice);
* :data:`ENDS` says, for every way a job can end (:class:`Exit`), whether the picture is
  charged, released or kept for the next start, which event is logged with which reason,
  and which sentence (if any) the user reads;
* :data:`CANCEL` says where the user's «✖ Отмена» lands, by the job's :class:`Phase`.

The workers (:mod:`bot.pictures.workers`), the settling of a job (:mod:`bot.pictures.settle`),
the cancel press (:mod:`bot.pictures.press`) and the resumption at start
(:mod:`bot.pictures.recovery`) read these tables; the store only enforces that a row
leaves the active states once (``store.quota``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from bot.core.events import EventName, Reason
from store import JobState

__all__ = [
    "CANCEL",
    "ENDS",
    "START",
    "STEPS",
    "CancelLanding",
    "End",
    "Exit",
    "Phase",
    "Settle",
    "Start",
    "Step",
    "StepRule",
    "start_of",
]


class Step(enum.Enum):
    """What a worker does next with a job."""

    PREPARE = "prepare"  # build the graph (persona, scene, fresh seed) and store it
    GENERATE = "generate"  # ComfyUI under the timeout: submit (or find), wait, download, spool
    DELIVER = "deliver"  # send the spooled picture (photo, else document), then charge


@dataclass(frozen=True, slots=True)
class StepRule:
    records: JobState  # the row state written when the step succeeded
    then: Step | None  # the next step; None: the job is over (charged)


STEPS: Final[Mapping[Step, StepRule]] = {
    Step.PREPARE: StepRule(records=JobState.RUNNING, then=Step.GENERATE),
    Step.GENERATE: StepRule(records=JobState.DOWNLOADED, then=Step.DELIVER),
    Step.DELIVER: StepRule(records=JobState.DELIVERED, then=None),
}


@dataclass(frozen=True, slots=True)
class Start:
    step: Step
    look_up_first: bool  # ComfyUI may already hold the prompt: find it before submitting


# (row state, whether the row holds what that state promises: the graph for ``queued``
# and ``running``, the spool file for ``downloaded``) → where a job *resumed* from an
# earlier process begins. A fresh job is always (queued, no graph) → PREPARE.
START: Final[Mapping[tuple[JobState, bool], Start]] = {
    (JobState.QUEUED, False): Start(Step.PREPARE, look_up_first=False),
    # The graph and ``running`` are written together, so this row is not expected; the
    # prompt never reached ComfyUI either way.
    (JobState.QUEUED, True): Start(Step.GENERATE, look_up_first=False),
    # Submitted or about to be: ComfyUI may be drawing it, or may have finished it.
    (JobState.RUNNING, True): Start(Step.GENERATE, look_up_first=True),
    (JobState.RUNNING, False): Start(Step.PREPARE, look_up_first=False),
    (JobState.DOWNLOADED, True): Start(Step.DELIVER, look_up_first=False),
    # The spool file is gone (a wiped data folder): fetch the picture again.
    (JobState.DOWNLOADED, False): Start(Step.GENERATE, look_up_first=True),
    # The upload was cut short by the stop (or a crash): send it again. Telegram may have
    # taken it, so the user may see it twice, but it is charged once.
    (JobState.DELIVERING, True): Start(Step.DELIVER, look_up_first=False),
    (JobState.DELIVERING, False): Start(Step.GENERATE, look_up_first=True),
}


def start_of(state: JobState, *, holds_its_data: bool, resumed: bool) -> Start:
    """Where a worker begins with a job in *state*.

    Args:
        holds_its_data: the row has its graph (queued, running) or its spool file exists
            (downloaded).
        resumed: the job comes from an earlier process. A job of this process is never
            on ComfyUI before its worker submits it, so it is never looked up first.

    Raises:
        ValueError: *state* is final; a final job has nothing left to do.
    """
    start = START.get((state, holds_its_data))
    if start is None:
        raise ValueError(f"a {state.value!r} job has no step left")
    return Start(start.step, look_up_first=start.look_up_first and resumed)


class Exit(enum.Enum):
    """Every way a job that holds a reservation can end."""

    DELIVERED = "delivered"  # Telegram took the photo (or the document)
    QUEUE_FULL = "queue_full"  # reserved, but the generation queue had no room
    GENERATION_FAILED = "generation_failed"  # ComfyUI refused, failed, timed out, unreachable
    WORKFLOW_FAILED = "workflow_failed"  # the template could not be filled in
    SEND_REFUSED = "send_refused"  # Telegram refused the photo and the document
    USER_BLOCKED = "user_blocked"  # the user blocked the bot before delivery
    CANCELLED = "cancelled"  # the user pressed «✖ Отмена» on their own job
    NO_COMFYUI = "no_comfyui"  # resumed at start, but COMFYUI_BASE_URL is no longer set
    CRASHED = "crashed"  # a bug in the bot; logged with its traceback
    SHUTDOWN = "shutdown"  # the process stops: the row stays active for the next start
    ENDED_ELSEWHERE = "ended_elsewhere"  # a cancel or a refund released it meanwhile


class Settle(enum.Enum):
    CHARGE = "charge"  # the reservation becomes a charge (``store.quota.consume``)
    RELEASE = "release"  # the reservation is given back (``store.quota.release``)
    KEEP = "keep"  # nothing moves; the next start resumes the job
    NOTHING = "nothing"  # it was settled by whoever ended it: nothing moves here


@dataclass(frozen=True, slots=True)
class End:
    settle: Settle
    event: EventName | None  # logged once, when the reservation is settled
    reason: Reason | None  # for ``image_failed``
    notice: str | None  # text key of the one sentence the user reads, if any

    @property
    def final(self) -> bool:
        """The job is over: its row leaves the active states and its spool file goes."""
        return self.settle is not Settle.KEEP


_FAILED: Final = EventName.IMAGE_FAILED

ENDS: Final[Mapping[Exit, End]] = {
    Exit.DELIVERED: End(Settle.CHARGE, EventName.IMAGE_GENERATED, None, None),
    # The press answers with an alert of its own.
    Exit.QUEUE_FULL: End(Settle.RELEASE, _FAILED, Reason.BUSY, None),
    Exit.GENERATION_FAILED: End(
        Settle.RELEASE, _FAILED, Reason.GENERATION_ERROR, "fail_generation"
    ),
    Exit.WORKFLOW_FAILED: End(Settle.RELEASE, _FAILED, Reason.GENERATION_ERROR, "fail_generation"),
    Exit.SEND_REFUSED: End(Settle.RELEASE, _FAILED, Reason.SEND_ERROR, "fail_send"),
    # Nobody to tell: every message to this user fails now.
    Exit.USER_BLOCKED: End(Settle.RELEASE, _FAILED, Reason.SEND_ERROR, None),
    # The cancel press answers with a toast.
    Exit.CANCELLED: End(Settle.RELEASE, _FAILED, Reason.CANCELLED, None),
    Exit.NO_COMFYUI: End(Settle.RELEASE, _FAILED, Reason.GENERATION_ERROR, "fail_generation"),
    Exit.CRASHED: End(Settle.RELEASE, _FAILED, Reason.GENERATION_ERROR, "fail_generation"),
    Exit.SHUTDOWN: End(Settle.KEEP, None, None, None),
    # Its release wrote the event and answered the user; the worker only stops.
    Exit.ENDED_ELSEWHERE: End(Settle.NOTHING, None, None, None),
}


class Phase(enum.Enum):
    """Where a job is, as far as a cancel is concerned."""

    WAITING = "waiting"  # in our queue, no worker has it yet
    DRAWING = "drawing"  # a worker prepares it or ComfyUI draws it
    DELIVERING = "delivering"  # being sent to Telegram: it runs to its end
    ENDED = "ended"  # charged or released already


class CancelLanding(enum.Enum):
    RELEASE_NOW = "release_now"  # the cancel press itself ends the job as CANCELLED
    CANCEL_WORKER = "cancel_worker"  # the worker's scope is cancelled: ComfyUI is cleaned
    #                                  up, then the worker ends the job as CANCELLED
    TOO_LATE = "too_late"  # nothing to cancel any more: "nothing to cancel"


CANCEL: Final[Mapping[Phase, CancelLanding]] = {
    Phase.WAITING: CancelLanding.RELEASE_NOW,
    Phase.DRAWING: CancelLanding.CANCEL_WORKER,
    Phase.DELIVERING: CancelLanding.TOO_LATE,
    Phase.ENDED: CancelLanding.TOO_LATE,
}
