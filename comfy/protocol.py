"""Sans-IO prompt lifecycle: events in, ``PromptUpdate``s out, no awaits.

# Theory of operation

One ``PromptTracker`` per process follows every prompt this process waits for, keyed by the
``prompt_id`` the bot chose (docs/product.md, P12). Two sources feed it:

* ``receive(event)``: parsed ``/ws`` frames (``comfy.events``), routed by ``prompt_id``.
  Frames for prompts we do not track, ``Unknown`` types and ``Garbage`` produce no
  update, and the replayed ``executing`` without ``prompt_id`` after a reconnect
  (docs/comfyui.md, C6) is ignored. A preview picture goes to the prompt its metadata
  names, or, in the older frame that names none, to the one prompt running on the
  server (ComfyUI runs one at a time); it never moves a state.
* ``reconcile(prompt_id, probe)``: what ``GET /queue`` and ``GET /history/{id}`` said (or,
  on servers after 0.3.64, ``GET /api/jobs/{id}``), for prompts whose messages cannot
  arrive (socket replaced, or recovered from a previous process).
  ``probe_from_queue``/``probe_from_history``/``probe_from_job`` classify those answers.

States::

    QUEUED ──start/node/progress/output/seen running──▶ RUNNING
    QUEUED|RUNNING ──execution_success──▶ ENDING_SUCCESS ──executing null──▶ SUCCEEDED
    QUEUED|RUNNING ──execution_error────▶ ENDING_ERROR ────executing null──▶ FAILED
    QUEUED|RUNNING ──execution_interrupted▶ ENDING_INTERRUPTED ─executing null▶ INTERRUPTED
    QUEUED|RUNNING ──executing null──▶ SUCCEEDED   (servers older than execution_success)
    any live state ──found in history──▶ SUCCEEDED | FAILED | INTERRUPTED
    QUEUED|RUNNING ──in neither queue nor history──▶ VANISHED
    ENDING_x ──in neither──▶ x   (the outcome was already seen; history was wiped)

Rules:

* Done means ``executing`` with ``node: null`` and our prompt_id, which ComfyUI sends last
  for success, error, interrupt and fully cached runs; ``execution_success`` alone is not
  done (docs/comfyui.md, C4). Outputs are collected from every ``executed`` on the way.
* A (state, signal) pair missing from ``TRANSITIONS`` changes nothing: late progress after
  the end, a duplicate start, anything after a terminal state. Terminal states never move.
* Updates carry the data the caller needs (progress, queue size, images, failure); a
  terminal update is the prompt's outcome.

Cancellation: this module never awaits, so it cannot be interrupted halfway. The awaits
are in ``comfy.follower`` (reading the socket: a cancel there loses nothing, the next
reconnect reconciles) and ``comfy.generate`` (submit, wait, download: a cancel there runs the
shielded cleanup that deletes or interrupts the prompt on ComfyUI).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from pydantic import ValidationError

from comfy.events import (
    BinaryFrame,
    ComfyEvent,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    Preview,
    Progress,
    Status,
)
from comfy.messages import ExecutionErrorData, HistoryEntry, ImageRef, JobRecord

__all__ = [
    "TERMINAL_STATES",
    "TRANSITIONS",
    "Failure",
    "Probe",
    "PromptState",
    "PromptTracker",
    "PromptUpdate",
    "QueueSnapshot",
    "Signal",
    "probe_from_history",
    "probe_from_job",
    "probe_from_queue",
]


class PromptState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    ENDING_SUCCESS = "ending_success"
    ENDING_ERROR = "ending_error"
    ENDING_INTERRUPTED = "ending_interrupted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    VANISHED = "vanished"


class Signal(enum.Enum):
    """What happened to a prompt, from a ws event or a reconciliation probe."""

    STARTED = "started"
    NODE = "node"
    PROGRESS = "progress"
    OUTPUT = "output"
    SUCCESS = "success"
    ERROR = "error"
    INTERRUPTED = "interrupted"
    DONE = "done"
    SEEN_PENDING = "seen_pending"
    SEEN_RUNNING = "seen_running"
    FOUND_SUCCESS = "found_success"
    FOUND_ERROR = "found_error"
    FOUND_INTERRUPTED = "found_interrupted"
    MISSING = "missing"


S, G = PromptState, Signal
TERMINAL_STATES: Final = frozenset({S.SUCCEEDED, S.FAILED, S.INTERRUPTED, S.VANISHED})
_LIVE: Final = (S.QUEUED, S.RUNNING)
_ENDING: Final = {
    S.ENDING_SUCCESS: S.SUCCEEDED,
    S.ENDING_ERROR: S.FAILED,
    S.ENDING_INTERRUPTED: S.INTERRUPTED,
}


def _table() -> dict[tuple[PromptState, Signal], PromptState]:
    table: dict[tuple[PromptState, Signal], PromptState] = {(S.QUEUED, G.SEEN_PENDING): S.QUEUED}
    for live in _LIVE:
        for sig in (G.STARTED, G.NODE, G.PROGRESS, G.OUTPUT, G.SEEN_RUNNING):
            table[live, sig] = S.RUNNING
        table[live, G.SUCCESS] = S.ENDING_SUCCESS
        table[live, G.ERROR] = S.ENDING_ERROR
        table[live, G.INTERRUPTED] = S.ENDING_INTERRUPTED
        table[live, G.DONE] = S.SUCCEEDED
        table[live, G.MISSING] = S.VANISHED
    for ending, final in _ENDING.items():
        table[ending, G.OUTPUT] = ending
        table[ending, G.DONE] = final
        table[ending, G.MISSING] = final
    for state in (*_LIVE, *_ENDING):
        table[state, G.FOUND_SUCCESS] = S.SUCCEEDED
        table[state, G.FOUND_ERROR] = S.FAILED
        table[state, G.FOUND_INTERRUPTED] = S.INTERRUPTED
    return table


TRANSITIONS: Final[Mapping[tuple[PromptState, Signal], PromptState]] = _table()


@dataclass(frozen=True, slots=True)
class Failure:
    """Where a prompt failed: ``node 2 (LoraLoader)`` and ComfyUI's one-line message."""

    node_id: str
    node_type: str
    message: str


@dataclass(frozen=True, slots=True)
class PromptUpdate:
    """A change worth telling the waiting prompt; ``terminal`` updates are the outcome."""

    prompt_id: str
    state: PromptState
    value: int = 0
    maximum: int = 0
    queue_remaining: int | None = None
    images: tuple[ImageRef, ...] = ()
    failure: Failure | None = None
    # On the outcome: the node ids ComfyUI did not re-run (``execution_cached``), None when
    # that message was not seen (a prompt followed by reconciliation only).
    cached: tuple[str, ...] | None = None
    # A picture of the prompt while it is drawn, with its step in value/maximum (0 of 0:
    # not known yet); only the latest is worth keeping.
    preview: Preview | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """GET /queue reduced to prompt ids; ``pending`` sorted by ``number`` (docs/comfyui.md, C15)."""

    running: tuple[str, ...]
    pending: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Probe:
    """What reconciliation learned about one prompt."""

    signal: Signal
    images: tuple[ImageRef, ...] = ()
    failure: Failure | None = None


def probe_from_queue(queue: QueueSnapshot, prompt_id: str) -> Probe | None:
    """SEEN_RUNNING / SEEN_PENDING, or None when the queue does not hold the prompt."""
    if prompt_id in queue.running:
        return Probe(Signal.SEEN_RUNNING)
    if prompt_id in queue.pending:
        return Probe(Signal.SEEN_PENDING)
    return None


def probe_from_job(job: JobRecord) -> Probe | None:
    """Classify GET /api/jobs/{id} (servers after 0.3.64); None for a status this client
    does not know (the caller asks /history and /queue instead)."""
    if job.status == "pending":
        return Probe(Signal.SEEN_PENDING)
    if job.status == "in_progress":
        return Probe(Signal.SEEN_RUNNING)
    if job.status == "cancelled":
        return Probe(Signal.FOUND_INTERRUPTED)
    if job.status in ("completed", "failed"):
        return probe_from_history(job.history_entry())
    return None


def probe_from_history(entry: HistoryEntry) -> Probe:
    """Classify a finished history entry. An interrupted prompt also has ``status_str``
    "error"; only the last of ``status.messages`` tells them apart (docs/comfyui.md, C14)."""
    images = tuple(img for out in entry.outputs.values() for img in out.images)
    status = entry.status
    if status is None or status.status_str != "error":
        return Probe(Signal.FOUND_SUCCESS, images=images)
    events = [m for m in status.messages if len(m) == 2 and isinstance(m[0], str)]
    if events and events[-1][0] == "execution_interrupted":
        return Probe(Signal.FOUND_INTERRUPTED)
    for name, data in reversed(events):
        if name == "execution_error":
            try:
                err = ExecutionErrorData.model_validate(data)
            except ValidationError:
                break
            message = " ".join(err.exception_message.split())
            return Probe(
                Signal.FOUND_ERROR,
                failure=Failure(err.node_id or "?", err.node_type or "?", message),
            )
    return Probe(Signal.FOUND_ERROR, failure=Failure("?", "?", "ComfyUI recorded an error"))


@dataclass(slots=True)
class _Prompt:
    state: PromptState = PromptState.QUEUED
    images: list[ImageRef] = field(default_factory=list)
    failure: Failure | None = None
    cached: tuple[str, ...] | None = None
    step: tuple[int, int] = (0, 0)  # the last progress: (value, max)


def _signal_of(event: ComfyEvent) -> tuple[Signal, str | None] | None:
    match event:
        case ExecutionStart(prompt_id=pid) | ExecutionCached(prompt_id=pid):
            return Signal.STARTED, pid
        case Executing(prompt_id=pid, node=None):
            return Signal.DONE, pid
        case Executing(prompt_id=pid):
            return Signal.NODE, pid
        case Progress(prompt_id=pid):
            return Signal.PROGRESS, pid
        case Executed(prompt_id=pid):
            return Signal.OUTPUT, pid
        case ExecutionSuccess(prompt_id=pid):
            return Signal.SUCCESS, pid
        case ExecutionError(prompt_id=pid):
            return Signal.ERROR, pid
        case ExecutionInterrupted(prompt_id=pid):
            return Signal.INTERRUPTED, pid
    return None


class PromptTracker:
    """Per-prompt state machines for the prompts this process waits for."""

    def __init__(self) -> None:
        self._prompts: dict[str, _Prompt] = {}

    def add(self, prompt_id: str) -> None:
        """Start tracking *prompt_id* (before it is posted, so no message is missed)."""
        self._prompts[prompt_id] = _Prompt()

    def discard(self, prompt_id: str) -> None:
        self._prompts.pop(prompt_id, None)

    def state(self, prompt_id: str) -> PromptState | None:
        prompt = self._prompts.get(prompt_id)
        return None if prompt is None else prompt.state

    def receive(self, event: ComfyEvent) -> list[PromptUpdate]:
        """Advance the prompt *event* belongs to; queue sizes go to every queued prompt."""
        if isinstance(event, Status):
            if event.queue_remaining is None:
                return []
            return [
                PromptUpdate(pid, prompt.state, queue_remaining=event.queue_remaining)
                for pid, prompt in self._prompts.items()
                if prompt.state is PromptState.QUEUED
            ]
        if isinstance(event, BinaryFrame):
            return self._preview(event)
        found = _signal_of(event)
        if found is None:
            return []
        signal, prompt_id = found
        if prompt_id is None:  # the replayed `executing` after a reconnect (docs/comfyui.md, C6)
            return []
        prompt = self._prompts.get(prompt_id)
        if prompt is None:
            return []
        if isinstance(event, ExecutionCached):
            prompt.cached = event.nodes
        if isinstance(event, Executed):
            return self._advance(prompt_id, prompt, signal, images=event.images)
        if isinstance(event, ExecutionError):
            failure = Failure(event.node_id, event.node_type, event.message)
            return self._advance(prompt_id, prompt, signal, failure=failure)
        if isinstance(event, Progress):
            prompt.step = (event.value, event.maximum)
            return self._advance(prompt_id, prompt, signal, progress=prompt.step)
        return self._advance(prompt_id, prompt, signal)

    def _preview(self, frame: BinaryFrame) -> list[PromptUpdate]:
        """The preview's prompt, and its step: a frame with metadata comes just before its
        step's ``progress``, the older frame just after it (transcript k)."""
        if frame.preview is None:
            return []
        running = PromptState.RUNNING
        if frame.prompt_id is not None:
            owner = frame.prompt_id
            ahead = 1
        else:
            live = [pid for pid, p in self._prompts.items() if p.state is running]
            owner = live[0] if len(live) == 1 else ""
            ahead = 0
        prompt = self._prompts.get(owner)
        if prompt is None or prompt.state is not running:
            return []
        value, maximum = prompt.step
        value = min(value + ahead, maximum) if maximum else 0
        return [PromptUpdate(owner, running, value=value, maximum=maximum, preview=frame.preview)]

    def reconcile(self, prompt_id: str, probe: Probe) -> list[PromptUpdate]:
        """Apply what /queue or /history said about a prompt whose messages are lost."""
        prompt = self._prompts.get(prompt_id)
        if prompt is None:
            return []
        return self._advance(
            prompt_id, prompt, probe.signal, images=probe.images, failure=probe.failure
        )

    def _advance(
        self,
        prompt_id: str,
        prompt: _Prompt,
        signal: Signal,
        *,
        images: tuple[ImageRef, ...] = (),
        failure: Failure | None = None,
        progress: tuple[int, int] | None = None,
    ) -> list[PromptUpdate]:
        new_state = TRANSITIONS.get((prompt.state, signal))
        if new_state is None:
            return []
        changed = new_state is not prompt.state
        prompt.state = new_state
        prompt.images.extend(img for img in images if img not in prompt.images)
        prompt.failure = failure or prompt.failure
        if new_state in TERMINAL_STATES:
            return [
                PromptUpdate(
                    prompt_id,
                    new_state,
                    images=tuple(prompt.images),
                    failure=prompt.failure,
                    cached=prompt.cached,
                )
            ]
        if progress is not None:
            return [PromptUpdate(prompt_id, new_state, value=progress[0], maximum=progress[1])]
        # ENDING_* is not worth a message: the outcome follows with ``executing`` null.
        return [PromptUpdate(prompt_id, new_state)] if changed and new_state in _LIVE else []
