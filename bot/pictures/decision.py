"""What a press on «👁️ Посмотреть» may do, decided from plain values (no I/O).

:func:`decide_press` looks at the facts of one press and returns one decision, checked in
this order:

1. :class:`Stale`: the button is not under a text this bot sent to this user in this
   private chat (forged data, a foreign chat, a message the store does not know);
2. :class:`Resend`: its picture was delivered already; the same ``file_id`` is sent again,
   free (not for «🔄 Ещё вариант», which asks for another picture of the same scene);
3. :class:`AlreadyDrawing`: a job for this message is active; nothing new starts;
4. :class:`Refuse` ``disabled``: pictures are off (``IMAGE_ENABLED=false`` or no ComfyUI);
5. :class:`Reserve`: reserve one picture and queue a job.

The reservation itself is one SQLite transaction; :func:`after_reserve` turns its answer
into the next decision (``no_quota``, or another press won the race, or this press was
handled before (:class:`Handled`: its update came again after a restart), or
:class:`Queue`).
:data:`REFUSALS` says what a refused press shows and logs. The async handler in
:mod:`bot.pictures.press` only performs what these functions return.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from bot.core.events import Reason
from store import Job, Refusal, SentMessage

__all__ = [
    "REFUSALS",
    "AlreadyDrawing",
    "Handled",
    "PressDecision",
    "PressFacts",
    "Queue",
    "RefusalText",
    "Refuse",
    "Resend",
    "Reserve",
    "Stale",
    "after_reserve",
    "decide_press",
]


@dataclass(frozen=True, slots=True)
class PressFacts:
    """Everything the decision needs, read before any decision is made."""

    private_chat: bool
    chat_id: int
    user_id: int
    sent: SentMessage | None  # the stored text under the pressed button, if any
    job_active: bool  # a job for this message is queued, drawing or being delivered
    pictures_on: bool  # IMAGE_ENABLED and a ComfyUI configured
    variant: bool = False  # «🔄 Ещё вариант»: a new job (fresh seed) even after delivery


@dataclass(frozen=True, slots=True)
class Stale:
    """Answered "this button no longer works"; nothing else happens."""


@dataclass(frozen=True, slots=True)
class Resend:
    sent: SentMessage
    file_id: str


@dataclass(frozen=True, slots=True)
class AlreadyDrawing:
    """A toast; the job already under way goes on."""


@dataclass(frozen=True, slots=True)
class Refuse:
    """One alert sentence and the two events (requested, then failed with *reason*)."""

    reason: Reason


@dataclass(frozen=True, slots=True)
class Reserve:
    sent: SentMessage


@dataclass(frozen=True, slots=True)
class Handled:
    """This very press was handled before (its update came again): nothing more happens."""


@dataclass(frozen=True, slots=True)
class Queue:
    """A picture is reserved: log ``image_requested`` and put the job in the queue."""

    job: Job


PressDecision = Stale | Resend | AlreadyDrawing | Refuse | Reserve | Handled | Queue


@dataclass(frozen=True, slots=True)
class RefusalText:
    text_key: str  # the alert the user reads
    detail: str  # the ``detail`` of the ``image_failed`` event


REFUSALS: Final[Mapping[Reason, RefusalText]] = {
    Reason.DISABLED: RefusalText("fail_disabled", "images are off"),
    Reason.NO_QUOTA: RefusalText("fail_no_quota", "no images left"),
    Reason.BUSY: RefusalText("fail_busy", "generation queue is full"),
}


def decide_press(facts: PressFacts) -> Stale | Resend | AlreadyDrawing | Refuse | Reserve:
    """The first rule of the module's list that applies to *facts*."""
    sent = facts.sent
    genuine = (
        facts.private_chat
        and facts.chat_id == facts.user_id
        and sent is not None
        and sent.user_id == facts.user_id
    )
    if not genuine or sent is None:
        return Stale()
    if sent.photo_file_id is not None and not facts.variant:
        return Resend(sent, sent.photo_file_id)
    if facts.job_active:
        return AlreadyDrawing()
    if not facts.pictures_on:
        return Refuse(Reason.DISABLED)
    return Reserve(sent)


def after_reserve(result: Job | Refusal) -> Queue | AlreadyDrawing | Refuse | Handled:
    """What the reservation's answer means for the press."""
    if result is Refusal.IN_FLIGHT:  # another press on this message won the race
        return AlreadyDrawing()
    if result is Refusal.HANDLED:
        return Handled()
    if result is Refusal.NO_QUOTA:
        return Refuse(Reason.NO_QUOTA)
    assert isinstance(result, Job)
    return Queue(result)
