"""Typed ``/ws`` events, and the parser that turns any frame into exactly one of them.

ComfyUI's websocket carries JSON text frames ``{"type": ..., "data": {...}}`` and, when the
server runs with a preview method, binary frames whose first 4 bytes are a big-endian event
type (docs/comfyui.md, C8). Custom nodes add message types of their own (C3). The parser
therefore never raises: a frame it cannot use becomes ``Unknown`` or ``Garbage``, so
nothing the server sends can stop the reader (docs/product.md, P13).

Dispatch is a plain dict from ``type`` to a builder, not a pydantic discriminated union,
which would reject unknown tags (docs/libraries.md, L29).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError

from comfy.messages import (
    ExecutedData,
    ExecutingData,
    ExecutionCachedData,
    ExecutionErrorData,
    ExecutionInterruptedData,
    ImageRef,
    ProgressData,
    PromptIdData,
    StatusData,
)
from common.bodies import picture_format

__all__ = [
    "BinaryFrame",
    "ComfyEvent",
    "Executed",
    "Executing",
    "ExecutionCached",
    "ExecutionError",
    "ExecutionInterrupted",
    "ExecutionStart",
    "ExecutionSuccess",
    "Garbage",
    "Preview",
    "Progress",
    "Status",
    "Unknown",
    "parse_ws_message",
]

# Binary event types from ComfyUI's protocol.py (docs/comfyui.md, C8).
PREVIEW_IMAGE: Final = 1
PREVIEW_IMAGE_WITH_METADATA: Final = 4
_HEADER = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Status:
    """Global queue size (running + pending); ``sid`` is set in a socket's first frame."""

    queue_remaining: int | None
    sid: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionStart:
    prompt_id: str


@dataclass(frozen=True, slots=True)
class ExecutionCached:
    prompt_id: str
    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Executing:
    """``node is None`` with our prompt_id: the prompt is over (docs/comfyui.md, C4)."""

    prompt_id: str | None
    node: str | None


@dataclass(frozen=True, slots=True)
class Progress:
    prompt_id: str | None
    node: str | None
    value: int
    maximum: int


@dataclass(frozen=True, slots=True)
class Executed:
    prompt_id: str
    node: str
    images: tuple[ImageRef, ...]


@dataclass(frozen=True, slots=True)
class ExecutionSuccess:
    prompt_id: str


@dataclass(frozen=True, slots=True)
class ExecutionError:
    prompt_id: str
    node_id: str
    node_type: str
    message: str
    exception_type: str


@dataclass(frozen=True, slots=True)
class ExecutionInterrupted:
    prompt_id: str
    node_id: str
    node_type: str


@dataclass(frozen=True, slots=True)
class BinaryFrame:
    """A preview image or text frame; only type 4 frames name their prompt.

    ``preview`` is the picture of a preview frame (types 1 and 4) when its bytes are a
    JPEG, PNG or WebP, else None (a text frame, a cut-off or unknown image).
    """

    event_type: int
    prompt_id: str | None
    size: int
    preview: Preview | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Preview:
    """A forming picture ComfyUI sent while sampling (docs/comfyui.md, C8)."""

    data: bytes = field(repr=False)
    content_type: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """A well-formed message of a type this client does not use (``progress_state``, ...)."""

    type: str


@dataclass(frozen=True, slots=True)
class Garbage:
    """A frame that could not be parsed; ``reason`` is one line for the log."""

    reason: str


ComfyEvent = (
    Status
    | ExecutionStart
    | ExecutionCached
    | Executing
    | Progress
    | Executed
    | ExecutionSuccess
    | ExecutionError
    | ExecutionInterrupted
    | BinaryFrame
    | Unknown
    | Garbage
)


def _status(d: StatusData) -> Status:
    exec_info = d.status.get("exec_info")
    remaining = exec_info.get("queue_remaining") if isinstance(exec_info, dict) else None
    return Status(remaining if isinstance(remaining, int) else None, d.sid)


def _error(d: ExecutionErrorData) -> ExecutionError:
    return ExecutionError(
        d.prompt_id,
        d.node_id or "?",
        d.node_type or "?",
        " ".join(d.exception_message.split()),
        d.exception_type,
    )


_M = TypeVar("_M", bound=BaseModel)


def _builder(
    model: type[_M], build: Callable[[_M], ComfyEvent]
) -> Callable[[Mapping[str, Any]], ComfyEvent]:
    return lambda data: build(model.model_validate(data))


_BUILDERS: Final[Mapping[str, Callable[[Mapping[str, Any]], ComfyEvent]]] = {
    "status": _builder(StatusData, _status),
    "execution_start": _builder(PromptIdData, lambda d: ExecutionStart(d.prompt_id)),
    "execution_cached": _builder(
        ExecutionCachedData, lambda d: ExecutionCached(d.prompt_id, tuple(d.nodes))
    ),
    "executing": _builder(ExecutingData, lambda d: Executing(d.prompt_id, d.node)),
    "progress": _builder(ProgressData, lambda d: Progress(d.prompt_id, d.node, d.value, d.max)),
    "executed": _builder(
        ExecutedData, lambda d: Executed(d.prompt_id, d.node, tuple(d.output.images))
    ),
    "execution_success": _builder(PromptIdData, lambda d: ExecutionSuccess(d.prompt_id)),
    "execution_error": _builder(ExecutionErrorData, _error),
    "execution_interrupted": _builder(
        ExecutionInterruptedData,
        lambda d: ExecutionInterrupted(d.prompt_id, d.node_id or "?", d.node_type or "?"),
    ),
}


def parse_ws_message(raw: str | bytes) -> ComfyEvent:
    """Turn one websocket message into one event; never raises."""
    if isinstance(raw, bytes | bytearray):
        return _parse_binary(bytes(raw))
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):  # nesting deeper than the stack (docs/libraries.md, L30)
        return Garbage(f"text frame is not JSON ({len(raw)} chars)")
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        return Garbage("JSON frame without a string 'type'")
    kind: str = doc["type"]
    data = doc.get("data")
    if not isinstance(data, dict):
        return Garbage(f"{kind!r} frame without a 'data' object")
    build = _BUILDERS.get(kind)
    if build is None:
        return Unknown(kind)
    try:
        return build(data)
    except ValidationError as exc:
        return Garbage(f"{kind!r} frame with unexpected fields ({exc.error_count()} errors)")


def _parse_binary(raw: bytes) -> ComfyEvent:
    """Header: u32 event type; type 1 continues with a u32 image type, then the image;
    type 4 with a u32 JSON length, the JSON metadata, then the image."""
    if len(raw) < _HEADER.size:
        return Garbage(f"binary frame of {len(raw)} bytes, shorter than its header")
    (event_type,) = _HEADER.unpack_from(raw)
    prompt_id: str | None = None
    image = b""
    if event_type == PREVIEW_IMAGE:
        image = raw[2 * _HEADER.size :]
    elif event_type == PREVIEW_IMAGE_WITH_METADATA and len(raw) >= 2 * _HEADER.size:
        (meta_len,) = _HEADER.unpack_from(raw, _HEADER.size)
        start = 2 * _HEADER.size
        try:
            meta = json.loads(raw[start : start + meta_len])
        except (ValueError, RecursionError):
            meta = None
        if isinstance(meta, dict) and isinstance(meta.get("prompt_id"), str):
            prompt_id = meta["prompt_id"]
            image = raw[start + meta_len :]
    # The image's own signature decides its type: the header's image type and the
    # metadata's image_type only ever say JPEG or PNG, and a wrong one would be uploaded.
    found = picture_format(image)
    preview = Preview(image, found.value) if found is not None else None
    return BinaryFrame(event_type, prompt_id, len(raw), preview)
