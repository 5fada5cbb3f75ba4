"""What can go wrong between the bot and ComfyUI, named for what the operator sees.

Every error carries ``.detail``: one short line, safe to log and to store in
``events_analytics`` (ComfyUI URLs carry no secrets, and tracebacks are never copied in).
Foreign exceptions (httpx, trio-websocket, pydantic) are translated once, in
``comfy.client`` and ``comfy.follower``; nothing else leaves this package.

    ComfyError
    ├── ComfyUnavailable       server unreachable, refused, 5xx, websocket down too long,
    │   │                      or the prompt vanished (ComfyUI restarted or deleted it)
    │   └── NotConnected       the websocket was down at submission: nothing was sent
    ├── PromptRejected         400 at validation: which node, which input, what value
    ├── GenerationFailed       execution_error while running: node id/type and message
    ├── GenerationInterrupted  someone else interrupted the prompt on ComfyUI
    ├── GenerationTimedOut     COMFYUI_TIMEOUT_SECONDS ran out (the prompt was cancelled there)
    └── ComfyProtocolError     the server answered something we cannot use (garbage JSON,
                               a body that does not decompress or passes its cap, a
                               prompt_id that is not ours, a 404 for our picture, a /view
                               answer that is not a picture)

All of them map to the analytics reason ``generation_error`` (docs/product.md, P8); the
class name and ``.detail`` say which.
"""

from __future__ import annotations

__all__ = [
    "ComfyError",
    "ComfyProtocolError",
    "ComfyUnavailable",
    "GenerationFailed",
    "GenerationInterrupted",
    "GenerationTimedOut",
    "NotConnected",
    "PromptRejected",
]

_MAX_DETAIL_CHARS = 300


def one_line(text: str, *, limit: int = _MAX_DETAIL_CHARS) -> str:
    """Collapse whitespace (ComfyUI messages end in newlines) and cap the length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ComfyError(Exception):
    """Base class: ``.detail`` is one line saying what happened."""

    def __init__(self, detail: str) -> None:
        self.detail = one_line(detail)
        super().__init__(self.detail)


class ComfyUnavailable(ComfyError):
    """ComfyUI cannot be reached or lost the prompt; trying again later may work."""


class NotConnected(ComfyUnavailable):
    """The server's websocket was down when a prompt was to be submitted, so nothing was
    sent: the caller may wait for the server, or for another one, and try again.

    ``resubmits_left``: the resubmissions still allowed to that prompt (fewer than asked
    for when it had vanished and was about to be submitted again).
    """

    def __init__(self, detail: str, *, resubmits_left: int) -> None:
        super().__init__(detail)
        self.resubmits_left = resubmits_left


class PromptRejected(ComfyError):
    """ComfyUI refused the workflow at validation (HTTP 400): a config or template problem."""


class GenerationFailed(ComfyError):
    """A node raised while the prompt ran (``execution_error``)."""

    def __init__(self, node: str, message: str) -> None:
        self.node = node
        self.message = one_line(message)
        super().__init__(f"{node} failed: {self.message}")


class GenerationInterrupted(ComfyError):
    """The prompt was interrupted on ComfyUI by someone other than this client."""


class GenerationTimedOut(ComfyError):
    """The prompt's time budget ran out; the prompt was removed from ComfyUI or interrupted."""


class ComfyProtocolError(ComfyError):
    """The server answered something this client cannot use."""
