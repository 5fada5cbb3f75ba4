"""ComfyUI's HTTP API over one injected ``httpx.AsyncClient``.

The caller builds the ``AsyncClient`` with ``base_url`` set to the ComfyUI server (and, in
tests, ``transport=httpx.MockTransport(fake.handler)``), so the network is one seam.
Every foreign failure is translated here, once: transport errors and 5xx become
``ComfyUnavailable``, a 400 from POST /prompt ``PromptRejected``; anything else httpx
raises (a broken gzip body, too many redirects), a body that is not JSON or not of the
expected shape, a body over its size cap, and a /view answer that is not a picture become
``ComfyProtocolError``. Nothing ComfyUI or a proxy in front of it sends escapes as another
exception (docs/comfyui.md, C26). Each method is one request and keeps no state, so many
tasks may call one client at once.

Every answer is streamed and read up to a cap (``MAX_JSON_BYTES``, ``MAX_QUEUE_BYTES``,
``MAX_IMAGE_BYTES``), counted after decompression by ``common.bodies.read_body``, so a
runaway, endless or compressed-bomb body costs at most its cap in memory. Bodies are
decoded here, never through ``Response.text``, whose charset comes from the server's
header.

Error bodies vary (docs/comfyui.md, C12): JSON 400 for validation, ``text/plain`` 500 for bad JSON
or a heap comparison failure, ``text/plain`` 413 for oversize bodies, empty 404/400/403.
"""

from __future__ import annotations

import json
import math
import reprlib
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from comfy.errors import ComfyProtocolError, ComfyUnavailable, PromptRejected, one_line
from comfy.messages import (
    HistoryEntry,
    ImageRef,
    JobRecord,
    NodeErrorItem,
    NodeInfo,
    PromptAccepted,
    QueueBody,
    RejectionBody,
    SystemStats,
)
from comfy.protocol import QueueSnapshot
from common.bodies import ACCEPT_ENCODING, BodyError, describe_body, picture_format, read_body

__all__ = [
    "MAX_ERROR_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_JSON_BYTES",
    "MAX_QUEUE_BYTES",
    "ComfyClient",
    "DownloadedImage",
    "summarize_rejection",
]

MAX_IMAGE_BYTES: Final = 50 * 1024 * 1024  # an SDXL PNG is a few MB; anything far larger is wrong
# One prompt's history, one node class's inputs, an acceptance, a 400 with its node errors:
# kilobytes, a few hundred for a node class listing thousands of LoRAs.
MAX_JSON_BYTES: Final = 4 * 1024 * 1024
# GET /queue carries the whole graph of every queued prompt, anyone's, on a shared server.
MAX_QUEUE_BYTES: Final = 32 * 1024 * 1024
MAX_ERROR_BYTES: Final = 64 * 1024  # of a 5xx or an unexpected status: enough to quote it
QUOTED_BODY_CHARS: Final = 120  # of an unexpected body, in an error's detail
_M = TypeVar("_M", bound=BaseModel)

_HEADERS: Final = {"accept-encoding": ACCEPT_ENCODING}  # what read_body can decode
# A value ComfyUI echoes back in a 400 (``received_value``) is quoted short and shallow.
_QUOTE_VALUE = reprlib.Repr()
_QUOTE_VALUE.maxlevel, _QUOTE_VALUE.maxstring, _QUOTE_VALUE.maxother = 3, 80, 80


@dataclass(frozen=True, slots=True)
class DownloadedImage:
    """A picture from GET /view; ``content_type`` is the format its bytes start with."""

    data: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class _Reply:
    """An answer read in full (up to its cap) while the connection was open."""

    status: int
    content_type: str
    body: bytes


class ComfyClient:
    """Typed calls to one ComfyUI server."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http
        url = http.base_url
        port = url.port or (443 if url.scheme == "https" else 80)
        # host:port names the server in logs, the jobs table and the reports (comfy.servers).
        self.server = f"{url.host}:{port}" if url.host else "comfyui"

    async def submit(
        self,
        graph: dict[str, Any],
        *,
        prompt_id: str,
        client_id: str | None,
        preview_method: str | None = None,
    ) -> None:
        """POST /prompt with our prompt_id; ComfyUI must echo it back. *preview_method*
        goes in ``extra_data``, where servers after 0.3.64 read it (older ones ignore it).

        Raises:
            PromptRejected: validation failed (400) or the body was too large (413).
            ComfyUnavailable: unreachable or 5xx. A 500 does not prove nothing was
                queued (docs/comfyui.md, C10), so callers still clean up.
            ComfyProtocolError: a prompt_id that is not ours (servers that ignore it), or
                an answer we cannot read.
        """
        body: dict[str, Any] = {"prompt": graph, "prompt_id": prompt_id}
        if client_id is not None:
            body["client_id"] = client_id
        if preview_method is not None:
            body["extra_data"] = {"preview_method": preview_method}
        reply = await self._request("POST", "/prompt", json=body)
        if reply.status == 400:
            raise PromptRejected(summarize_rejection(reply.body))
        if reply.status == 413:
            raise PromptRejected(f"ComfyUI refused the workflow as too large: {_text(reply.body)}")
        accepted = self._parse(reply, PromptAccepted, "POST /prompt")
        if accepted.prompt_id != prompt_id:
            raise ComfyProtocolError(
                f"POST /prompt answered prompt_id {accepted.prompt_id!r}, not ours {prompt_id!r}; "
                "this ComfyUI is too old to accept client-chosen ids"
            )

    async def get_queue(self) -> QueueSnapshot:
        """Running and pending prompt ids, pending in execution order."""
        reply = await self._request("GET", "/queue", limit=MAX_QUEUE_BYTES)
        body = self._parse(reply, QueueBody, "GET /queue")

        def ids(items: list[list[Any]]) -> list[tuple[float, str]]:
            return [
                (_priority(item[0]), item[1])
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
        doc = self._json(await self._request("GET", f"/history/{prompt_id}"), "GET /history")
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
        """Stream GET /view into memory, refusing anything over *max_bytes*, and anything
        that is not a PNG, JPEG or WebP picture whatever its ``Content-Type`` says
        (docs/comfyui.md, C26)."""
        params = {"filename": image.filename, "subfolder": image.subfolder, "type": image.type}
        what = f"GET /view for {image.filename!r}"
        try:
            async with self._http.stream(
                "GET", "/view", params=params, headers=_HEADERS
            ) as response:
                content_type = response.headers.get("content-type", "")
                if response.status_code != 200:
                    body = await _error_body(response)
                    self._expect_ok(_Reply(response.status_code, content_type, body), "GET /view")
                data = await read_body(response, limit=max_bytes)
        except httpx.HTTPError as exc:
            raise _translated(what, exc) from exc
        except BodyError as exc:
            raise ComfyProtocolError(f"{what}: {exc}") from None
        except (httpx.InvalidURL, UnicodeError) as exc:  # a name no URL can carry
            raise ComfyProtocolError(f"{what} cannot be requested: {exc}") from None
        found = picture_format(data)
        if found is None:
            found_instead = describe_body(data, content_type=content_type)
            raise ComfyProtocolError(
                f"{what} answered {found_instead}, not a PNG, JPEG or WebP picture"
            )
        return DownloadedImage(data, found.value)

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

    async def has_jobs_api(self) -> bool:
        """Does this server have the jobs API of the servers after 0.3.64 (``/api/jobs``)?"""
        reply = await self._request("GET", "/api/jobs?limit=1")
        if reply.status == 200:
            return True
        if reply.status in (404, 405):
            return False
        raise ComfyProtocolError(f"GET /api/jobs answered {reply.status} {_quote(reply.body)}")

    async def get_job(self, prompt_id: str) -> JobRecord | None:
        """GET /api/jobs/{id} (servers with the jobs API): the prompt wherever it is, in one
        answer; None when the server holds it nowhere (404)."""
        reply = await self._request("GET", f"/api/jobs/{prompt_id}")
        if reply.status == 404:
            return None
        return self._parse(reply, JobRecord, "GET /api/jobs/{id}")

    async def cancel_job(self, prompt_id: str) -> bool:
        """POST /api/jobs/{id}/cancel (servers with the jobs API): dequeues the prompt if it
        waits, interrupts it only if it is the one running; True when it did either."""
        reply = await self._request("POST", f"/api/jobs/{prompt_id}/cancel")
        if reply.status == 404:
            return False
        doc = self._json(reply, "POST /api/jobs/{id}/cancel")
        return isinstance(doc, dict) and doc.get("cancelled") is True

    async def system_stats(self) -> SystemStats:
        return self._parse(
            await self._request("GET", "/system_stats"), SystemStats, "GET /system_stats"
        )

    # -- the boundary -------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, *, json: Any = None, limit: int = MAX_JSON_BYTES
    ) -> _Reply:
        """One request, its answer read up to *limit* bytes; 5xx raises at once."""
        what = f"{method} {path}"
        try:
            async with self._http.stream(method, path, json=json, headers=_HEADERS) as response:
                status = response.status_code
                content_type = response.headers.get("content-type", "")
                if status >= 500:
                    quoted = _quote(await _error_body(response))
                    raise ComfyUnavailable(f"ComfyUI answered {status} to {what}: {quoted}")
                body = await read_body(response, limit=limit)
        except httpx.HTTPError as exc:
            raise _translated(what, exc) from exc
        except BodyError as exc:
            raise ComfyProtocolError(f"{what}: {exc}") from None
        except (httpx.InvalidURL, UnicodeError) as exc:  # an id or name no URL can carry
            raise ComfyProtocolError(f"{what!r} cannot be requested: {exc}") from None
        return _Reply(status, content_type, body)

    def _expect_ok(self, reply: _Reply, what: str) -> None:
        if reply.status >= 500:
            raise ComfyUnavailable(f"ComfyUI answered {reply.status} to {what}")
        if reply.status != 200:
            raise ComfyProtocolError(
                f"{what} answered {reply.status} {_quote(reply.body)}".rstrip()
            )

    def _json(self, reply: _Reply, what: str) -> Any:
        self._expect_ok(reply, what)
        try:
            return json.loads(reply.body)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
            found = describe_body(reply.body, content_type=reply.content_type)
            raise ComfyProtocolError(f"{what} answered {found}, not JSON") from None

    def _parse(self, reply: _Reply, model: type[_M], what: str) -> _M:
        try:
            return model.model_validate(self._json(reply, what))
        except ValidationError as exc:
            raise ComfyProtocolError(
                f"{what} answered JSON with {exc.error_count()} bad fields"
            ) from None


async def _error_body(response: httpx.Response) -> bytes:
    """The start of an error answer, only to quote it; one we cannot read quotes as empty."""
    try:
        return await read_body(response, limit=MAX_ERROR_BYTES, truncate=True)
    except BodyError:
        return b""


def _priority(number: Any) -> float:
    """A queue item's ``number``; whatever is not a usable number sorts as 0."""
    if isinstance(number, bool) or not isinstance(number, int | float):
        return 0.0
    try:
        return float(number)
    except OverflowError:  # an integer too large for a float
        return math.inf if number > 0 else -math.inf


def _text(body: bytes) -> str:
    """A body as text whatever its declared charset: a server's header picks no codec here
    (docs/libraries.md, L30)."""
    return body.decode("utf-8", "replace")


def _quote(body: bytes) -> str:
    return one_line(_text(body[: QUOTED_BODY_CHARS * 4]), limit=QUOTED_BODY_CHARS)


def _translated(what: str, exc: httpx.HTTPError) -> ComfyUnavailable | ComfyProtocolError:
    """Transport errors mean ComfyUI cannot be reached; any other httpx error (a body that
    does not decompress, too many redirects) means it answered something unusable
    (docs/libraries.md, L30)."""
    reason = one_line(str(exc)) or "no detail"
    if isinstance(exc, httpx.TransportError):
        return ComfyUnavailable(f"ComfyUI unreachable ({type(exc).__name__} on {what}: {reason})")
    return ComfyProtocolError(
        f"{what} answered something httpx cannot read ({type(exc).__name__}: {reason})"
    )


def summarize_rejection(body: bytes) -> str:
    """One line from a 400: ``node 1 (CheckpointLoaderSimple): ckpt_name 'x' not in list``."""
    try:
        rejection = RejectionBody.model_validate(json.loads(body))
    except (ValueError, RecursionError):  # not JSON, or not a rejection (ValidationError)
        return f"ComfyUI rejected the prompt: {one_line(_text(body)) or 'empty 400 body'}"
    problems: list[str] = []
    if isinstance(rejection.node_errors, dict):
        for node_id, node in rejection.node_errors.items():
            for item in node.errors:
                problems.append(f"node {node_id} ({node.class_type or '?'}): {_describe(item)}")
    if not problems:
        error = rejection.error
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
        return f"{name} {_QUOTE_VALUE.repr(info['received_value'])} not in list"
    if "received_value" in info:
        return f"{name} {_QUOTE_VALUE.repr(info['received_value'])}: {item.message}"
    return f"{name}: {item.message}"
