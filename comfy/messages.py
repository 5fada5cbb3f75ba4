"""Pydantic models for the JSON ComfyUI sends: HTTP bodies and ``/ws`` message data.

Shapes come from the recorded transcripts (``tests/transcripts/comfy``, described in
docs/comfyui.md). Every model ignores unknown fields and defaults what older or newer
servers may leave out: ComfyUI grows fields between releases, and an extra field must
never fail a prompt.
Parsing failures are turned into ``ComfyProtocolError`` (HTTP) or a ``Garbage`` event
(websocket) by the callers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorInfo",
    "ExecutedData",
    "ExecutingData",
    "ExecutionCachedData",
    "ExecutionErrorData",
    "ExecutionInterruptedData",
    "HistoryEntry",
    "HistoryStatus",
    "ImageRef",
    "NodeError",
    "NodeErrorItem",
    "NodeInfo",
    "NodeOutput",
    "ProgressData",
    "PromptAccepted",
    "PromptIdData",
    "QueueBody",
    "RejectionBody",
    "StatusData",
    "SystemStats",
]


class Inbound(BaseModel):
    """Base for everything ComfyUI sends: tolerant of new fields, immutable once parsed."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# --- HTTP -------------------------------------------------------------------------------


class PromptAccepted(Inbound):
    """200 from POST /prompt: ``{"prompt_id", "number", "node_errors": {}}``."""

    prompt_id: str
    number: float | None = None


class ErrorInfo(Inbound):
    """The ``error`` object of a 400 (``type``, ``message``, ``details``)."""

    type: str = ""
    message: str = ""
    details: str = ""


class NodeErrorItem(Inbound):
    """One validation problem of one node; ``extra_info`` names the input and value."""

    type: str = ""
    message: str = ""
    details: str = ""
    extra_info: dict[str, Any] = Field(default_factory=dict)


class NodeError(Inbound):
    """``node_errors[node_id]`` of a 400."""

    errors: list[NodeErrorItem] = Field(default_factory=list)
    class_type: str = ""


class RejectionBody(Inbound):
    """A 400 from POST /prompt. Older servers sent ``error`` as a string and
    ``node_errors`` as a list (docs/comfyui.md, C12), so both are accepted."""

    error: ErrorInfo | str | None = None
    node_errors: dict[str, NodeError] | list[Any] = Field(default_factory=dict)


class QueueBody(Inbound):
    """GET /queue: items are ``[number, prompt_id, graph, extra_data, outputs]``."""

    queue_running: list[list[Any]] = Field(default_factory=list)
    queue_pending: list[list[Any]] = Field(default_factory=list)


class ImageRef(Inbound):
    """A file ComfyUI wrote: what GET /view needs to fetch it."""

    filename: str
    subfolder: str = ""
    type: str = "output"


class NodeOutput(Inbound):
    """The ``ui`` output of one node; only images matter here."""

    images: list[ImageRef] = Field(default_factory=list)


class HistoryStatus(Inbound):
    """``status`` of a history entry; ``messages`` is ``[[event, data], ...]``."""

    status_str: str = ""
    completed: bool = False
    messages: list[list[Any]] = Field(default_factory=list)


class HistoryEntry(Inbound):
    """One value of GET /history/{prompt_id} (the ``prompt`` echo is not kept)."""

    outputs: dict[str, NodeOutput] = Field(default_factory=dict)
    status: HistoryStatus | None = None


class JobRecord(Inbound):
    """GET /api/jobs/{id} of a server after 0.3.64: the prompt's ``status`` (pending,
    in_progress, completed, failed, cancelled) read from its queue and history at once;
    a finished one also carries its history entry's ``outputs`` and ``execution_status``."""

    status: str
    outputs: dict[str, NodeOutput] = Field(default_factory=dict)
    execution_status: HistoryStatus | None = None

    def history_entry(self) -> HistoryEntry:
        return HistoryEntry(outputs=self.outputs, status=self.execution_status)


class NodeInfo(Inbound):
    """One class of GET /object_info/{class}: ``input.required``/``input.optional`` specs."""

    input: dict[str, dict[str, Any]] = Field(default_factory=dict)
    name: str = ""


class SystemStats(Inbound):
    """GET /system_stats, reduced to what a health line needs."""

    system: dict[str, Any] = Field(default_factory=dict)
    devices: list[dict[str, Any]] = Field(default_factory=list)


# --- /ws message data ---------------------------------------------------------------------


class StatusData(Inbound):
    """``status``: global queue size; ``sid`` only in the first frame of a socket."""

    status: dict[str, Any] = Field(default_factory=dict)
    sid: str | None = None


class PromptIdData(Inbound):
    """``execution_start`` / ``execution_success``: just the prompt id."""

    prompt_id: str


class ExecutionCachedData(Inbound):
    """``execution_cached``: nodes whose outputs were reused."""

    prompt_id: str
    nodes: list[str] = Field(default_factory=list)


class ExecutingData(Inbound):
    """``executing``: ``node`` null with our prompt_id means the prompt is over. The
    replay after a reconnect has no ``prompt_id`` at all (docs/comfyui.md, C6)."""

    node: str | None = None
    prompt_id: str | None = None


class ProgressData(Inbound):
    """``progress``: sampler steps. Also broadcast for client_id-less prompts."""

    value: int = 0
    max: int = 0
    prompt_id: str | None = None
    node: str | None = None


class ExecutedData(Inbound):
    """``executed``: one output node finished; ``output.images`` names the files."""

    prompt_id: str
    node: str = ""
    output: NodeOutput = Field(default_factory=NodeOutput)


class ExecutionErrorData(Inbound):
    """``execution_error`` (transcript c); the traceback is deliberately not kept."""

    prompt_id: str
    node_id: str | None = None
    node_type: str | None = None
    exception_message: str = ""
    exception_type: str = ""


class ExecutionInterruptedData(Inbound):
    """``execution_interrupted`` (transcript d)."""

    prompt_id: str
    node_id: str | None = None
    node_type: str | None = None
