"""ComfyUI's HTTP API over one injected ``httpx.AsyncClient``.

The caller builds the ``AsyncClient`` with ``base_url`` set to the ComfyUI server (and, in
tests, ``transport=httpx.MockTransport(fake.handler)``), so the network is one seam.
Every foreign failure is translated here, once: transport errors and 5xx become
``ComfyUnavailable``, a 400 from POST /prompt ``PromptRejected``, a body we cannot parse
``ComfyProtocolError``. Each method is one request and keeps no state, so many tasks may
call one client at once.

Error bodies vary (docs/comfyui.md, C12): JSON 400 for validation, ``text/plain`` 500 for bad JSON
or a heap comparison failure, ``text/plain`` 413 for oversize bodies, empty 404/400/403.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from comfy.errors import ComfyProtocolError, ComfyUnavailable, PromptRejected, one_line
from comfy.messages import (
    HistoryEntry,
    ImageRef,
    NodeErrorItem,
    NodeInfo,
    PromptAccepted,
    QueueBody,
    RejectionBody,
    SystemStats,
)
from comfy.protocol import QueueSnapshot

__all__ = ["MAX_IMAGE_BYTES", "ComfyClient", "DownloadedImage", "summarize_rejection"]

MAX_IMAGE_BYTES: Final = 50 * 1024 * 1024  # an SDXL PNG is a few MB; anything far larger is wrong
QUOTED_BODY_CHARS: Final = 120  # of an unexpected body, in an error's detail
_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class DownloadedImage:
    data: bytes
    content_type: str


class ComfyClient:
    """Typed calls to one ComfyUI server."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http
        url = http.base_url
        port = url.port or (443 if url.scheme == "https" else 80)
        # host:port names the server in logs, the jobs table and the reports (comfy.servers).
        self.server = f"{url.host}:{port}" if url.host else "comfyui"

    async def submit(self, graph: dict[str, Any], *, prompt_id: str, client_id: str | None) -> None:
        """POST /prompt with our prompt_id; ComfyUI must echo it back.

        Raises:
            PromptRejected: validation failed (400) or the body was too large (413).
            ComfyUnavailable: unreachable or 5xx. A 500 does not prove nothing was
                queued (docs/comfyui.md, C10), so callers still clean up.
            ComfyProtocolError: a prompt_id that is not ours (servers that ignore it).
        """
        body: dict[str, Any] = {"prompt": graph, "prompt_id": prompt_id}
        if client_id is not None:
            body["client_id"] = client_id
        response = await self._request("POST", "/prompt", json=body)
        if response.status_code == 400:
            raise PromptRejected(summarize_rejection(response))
        if response.status_code == 413:
            raise PromptRejected(f"ComfyUI refused the workflow as too large: {response.text}")
        accepted = self._parse(response, PromptAccepted, "POST /prompt")
        if accepted.prompt_id != prompt_id:
            raise ComfyProtocolError(
                f"POST /prompt answered prompt_id {accepted.prompt_id!r}, not ours {prompt_id!r}; "
                "this ComfyUI is too old to accept client-chosen ids"
            )

    async def get_queue(self) -> QueueSnapshot:
        """Running and pending prompt ids, pending in execution order."""
        body = self._parse(await self._request("GET", "/queue"), QueueBody, "GET /queue")

        def ids(items: list[list[Any]]) -> list[tuple[float, str]]:
            return [
                (float(item[0]) if isinstance(item[0], int | float) else 0.0, item[1])
                for item in items
                if len(item) >= 2 and isinstance(item[1], str)
            ]

        pending = sorted(ids(body.queue_pending), key=lambda pair: pair[0])
        return QueueSnapshot(
            running=tuple(pid for _, pid in ids(body.queue_running)),
            pending=tuple(pid for _, pid in pending),
        )

    async def get_history(self, prompt_id: str) -> HistoryEntry | None:
        """The finished entry, or None (``{}``: queued, running, deleted or unknown)."""
        response = await self._request("GET", f"/history/{prompt_id}")
        doc = self._json(response, "GET /history")
        if not isinstance(doc, dict):
            raise ComfyProtocolError(f"GET /history answered a {type(doc).__name__}, not an object")
        entry = doc.get(prompt_id)
        if entry is None:
            return None
        try:
            return HistoryEntry.model_validate(entry)
        except ValidationError as exc:
            raise ComfyProtocolError(
                f"GET /history entry has {exc.error_count()} bad fields"
            ) from None

    async def delete_queued(self, prompt_id: str) -> None:
        """Remove a pending copy of the prompt; a no-op (still 200) if it runs.

        See docs/comfyui.md, C16.
        """
        self._expect_ok(
            await self._request("POST", "/queue", json={"delete": [prompt_id]}), "POST /queue"
        )

    async def interrupt(self, prompt_id: str) -> None:
        """Interrupt *prompt_id* only if it is the one running. Never sent without an id:
        a bare /interrupt stops whatever runs, someone else's prompt included
        (docs/comfyui.md, C17)."""
        self._expect_ok(
            await self._request("POST", "/interrupt", json={"prompt_id": prompt_id}),
            "POST /interrupt",
        )

    async def delete_history(self, prompt_id: str) -> None:
        """Forget a finished prompt so persona pictures do not pile up in ComfyUI's history."""
        self._expect_ok(
            await self._request("POST", "/history", json={"delete": [prompt_id]}), "POST /history"
        )

    async def download(
        self, image: ImageRef, *, max_bytes: int = MAX_IMAGE_BYTES
    ) -> DownloadedImage:
        """Stream GET /view into memory, refusing anything over *max_bytes*."""
        params = {"filename": image.filename, "subfolder": image.subfolder, "type": image.type}
        try:
            async with self._http.stream("GET", "/view", params=params) as response:
                self._expect_ok(response, "GET /view", read=False)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise ComfyProtocolError(
                            f"picture {image.filename!r} is larger than {max_bytes} bytes"
                        )
                    chunks.append(chunk)
                content_type = response.headers.get("content-type", "application/octet-stream")
        except httpx.TransportError as exc:
            raise _unavailable("GET /view", exc) from exc
        return DownloadedImage(b"".join(chunks), content_type.split(";")[0].strip())

    async def object_info(self, node_class: str) -> NodeInfo | None:
        """The input specs of one node class, or None if the server has no such class."""
        doc = self._json(
            await self._request("GET", f"/object_info/{node_class}"), "GET /object_info"
        )
        if not isinstance(doc, dict):
            raise ComfyProtocolError("GET /object_info answered something other than an object")
        info = doc.get(node_class)
        if info is None:
            return None
        try:
            return NodeInfo.model_validate(info)
        except ValidationError as exc:
            raise ComfyProtocolError(
                f"GET /object_info/{node_class}: {exc.error_count()} bad fields"
            ) from None

    async def system_stats(self) -> SystemStats:
        return self._parse(
            await self._request("GET", "/system_stats"), SystemStats, "GET /system_stats"
        )

    # -- the boundary -------------------------------------------------------------------

    async def _request(self, method: str, path: str, *, json: Any = None) -> httpx.Response:
        try:
            response = await self._http.request(method, path, json=json)
        except httpx.TransportError as exc:
            raise _unavailable(f"{method} {path}", exc) from exc
        if response.status_code >= 500:
            quoted = response.text[:QUOTED_BODY_CHARS]
            raise ComfyUnavailable(
                f"ComfyUI answered {response.status_code} to {method} {path}: {quoted}"
            )
        return response

    def _expect_ok(self, response: httpx.Response, what: str, *, read: bool = True) -> None:
        if response.status_code >= 500:
            raise ComfyUnavailable(f"ComfyUI answered {response.status_code} to {what}")
        if response.status_code != 200:
            body = response.text[:QUOTED_BODY_CHARS] if read else ""
            raise ComfyProtocolError(f"{what} answered {response.status_code} {body}".rstrip())

    def _json(self, response: httpx.Response, what: str) -> Any:
        self._expect_ok(response, what)
        try:
            return response.json()
        except ValueError:
            raise ComfyProtocolError(f"{what} answered a body that is not JSON") from None

    def _parse(self, response: httpx.Response, model: type[_M], what: str) -> _M:
        try:
            return model.model_validate(self._json(response, what))
        except ValidationError as exc:
            raise ComfyProtocolError(
                f"{what} answered JSON with {exc.error_count()} bad fields"
            ) from None


def _unavailable(what: str, exc: httpx.TransportError) -> ComfyUnavailable:
    reason = one_line(str(exc)) or "no detail"
    return ComfyUnavailable(f"ComfyUI unreachable ({type(exc).__name__} on {what}: {reason})")


def summarize_rejection(response: httpx.Response) -> str:
    """One line from a 400: ``node 1 (CheckpointLoaderSimple): ckpt_name 'x' not in list``."""
    try:
        body = RejectionBody.model_validate(response.json())
    except (ValueError, ValidationError):
        return f"ComfyUI rejected the prompt: {one_line(response.text) or 'empty 400 body'}"
    problems: list[str] = []
    if isinstance(body.node_errors, dict):
        for node_id, node in body.node_errors.items():
            for item in node.errors:
                problems.append(f"node {node_id} ({node.class_type or '?'}): {_describe(item)}")
    if not problems:
        error = body.error
        if isinstance(error, str):
            problems.append(error)
        elif error is not None:
            details = (
                f" ({error.details})" if error.details and error.details != error.message else ""
            )
            problems.append(f"{error.message or error.type}{details}")
    return "ComfyUI rejected the prompt: " + ("; ".join(problems) or "no reason given")


def _describe(item: NodeErrorItem) -> str:
    info = item.extra_info
    name = info.get("input_name")
    if not isinstance(name, str):
        return f"{item.message}: {item.details}" if item.details else item.message
    if item.type == "value_not_in_list" and "received_value" in info:
        return f"{name} {info['received_value']!r} not in list"
    if "received_value" in info:
        return f"{name} {info['received_value']!r}: {item.message}"
    return f"{name}: {item.message}"
