"""The fake ComfyUI's ``/ws`` server, in memory, for ``tests.fakes.comfy.FakeComfy``.

Each ``open_ws(client_id)`` builds a ``memory_stream_pair``, runs trio-websocket's server
side on one end (``wrap_server_stream``) and its client side on the other
(``wrap_client_stream``), so the follower talks real websocket frames with no socket and
no thread: everything runs under the autojump clock (docs/libraries.md, L9).

Behaviour copied from the transcripts (docs/comfyui.md, C2-C8):

* the first frame is ``status`` with ``sid`` = the clientId (a uuid4 hex without one);
* a newer socket with the same clientId replaces the older in the routing map, and when
  the older closes it removes the newer's entry (the "deaf socket" of transcript i);
* frames the clients send are read; a ``feature_flags`` message asking for
  ``supports_preview_metadata`` is answered with the server's flags, and that socket then
  gets preview pictures as event 4 frames (with metadata naming the prompt, sent just
  before the step's ``progress``), any other socket as event 1 frames (no prompt named,
  just after it), transcript k.

Failure knobs: ``drop_all()`` aborts every connection like a TCP reset (the client sees
``ConnectionClosed`` 1006), ``half_open()`` stops all bytes in both directions without
closing anything (pings go unanswered), ``refuse`` makes new handshakes fail with
``HandshakeError`` like a refused TCP connection.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import trio
import trio.testing
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
    wrap_server_stream,
)

from comfy.websocket import WS_CLOSE_TIMEOUT_S, WS_MAX_MESSAGE_BYTES

__all__ = ["FakeSockets"]

_Stream = trio.StapledStream[trio.testing.MemorySendStream, trio.testing.MemoryReceiveStream]


@dataclass(eq=False)
class _Conn:
    """One in-memory connection; ``server`` is ComfyUI's end."""

    requested_id: str
    client_end: _Stream
    server_end: _Stream
    server: WebSocketConnection | None = None
    cut: bool = False
    preview_metadata: bool = False  # the client sent feature_flags asking for event 4

    def half_open(self) -> None:
        """Stop delivering bytes both ways (a silently dead peer), closing nothing."""
        self.client_end.send_stream.send_all_hook = None
        self.server_end.send_stream.send_all_hook = None
        self.cut = True

    def abort(self) -> None:
        """Close both directions at once, like a TCP reset."""
        self.server_end.send_stream.close()
        self.client_end.send_stream.close()
        self.cut = True


class FakeSockets:
    """The sockets of one fake server. ``queue_remaining`` feeds the greeting ``status``."""

    def __init__(self, queue_remaining: Callable[[], int], is_down: Callable[[], bool]) -> None:
        self._queue_remaining = queue_remaining
        self._is_down = is_down
        self._nursery: trio.Nursery | None = None
        self._by_sid: dict[str, _Conn] = {}
        self._conns: list[_Conn] = []
        self.refuse = False
        self.client_ids: list[str] = []  # every clientId that opened a socket, in order

    def attach(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    @property
    def live_client_ids(self) -> list[str]:
        """clientIds the server would route messages to right now."""
        return [sid for sid, conn in self._by_sid.items() if not conn.cut]

    @asynccontextmanager
    async def open_ws(self, client_id: str) -> AsyncIterator[WebSocketConnection]:
        """A ``comfy.follower.OpenWebsocket`` connected to this fake."""
        if self._nursery is None:
            raise RuntimeError("start the fake first: await nursery.start(fake.run)")
        if self.refuse or self._is_down():
            raise HandshakeError("connection refused (fake ComfyUI is down)")
        client_end, server_end = trio.testing.memory_stream_pair()
        conn = _Conn(client_id, client_end, server_end)
        self._conns.append(conn)
        self._nursery.start_soon(self._serve, conn)
        ws = await wrap_client_stream(
            self._nursery,
            cast(Any, client_end),  # typed SocketStream | SSLStream; any Stream works
            "comfy.test",
            f"/ws?clientId={client_id}",
            max_message_size=WS_MAX_MESSAGE_BYTES,
        )
        try:
            yield ws
        finally:
            with trio.move_on_after(WS_CLOSE_TIMEOUT_S):
                await ws.aclose()

    async def _serve(self, conn: _Conn) -> None:
        assert self._nursery is not None
        request = await wrap_server_stream(
            self._nursery, conn.server_end, max_message_size=WS_MAX_MESSAGE_BYTES
        )
        ws = await request.accept()
        conn.server = ws
        query = parse_qs(urlsplit(request.path).query)
        sid = query.get("clientId", [uuid.uuid4().hex])[0]
        self._by_sid[sid] = conn
        self.client_ids.append(sid)
        try:
            greeting = {"status": {"exec_info": {"queue_remaining": self._queue_remaining()}}}
            await self._send(conn, {"type": "status", "data": {**greeting, "sid": sid}})
            while True:
                await self._heard(conn, await ws.get_message())
        except ConnectionClosed:
            pass
        finally:
            self._by_sid.pop(sid, None)  # ComfyUI pops by sid, even a newer socket's entry

    async def _heard(self, conn: _Conn, frame: str | bytes) -> None:
        """What ComfyUI does with a client's frame: only feature flags mean anything."""
        try:
            message = json.loads(frame)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("type") != "feature_flags":
            return
        data = message.get("data")
        conn.preview_metadata = isinstance(data, dict) and bool(
            data.get("supports_preview_metadata")
        )
        flags = {"supports_preview_metadata": True, "max_upload_size": 104857600}
        await self._send(conn, {"type": "feature_flags", "data": flags})

    def wants_metadata(self, client_id: str | None) -> list[bool]:
        """For each socket a preview goes to (its submitter's, or every one without a
        clientId), whether it gets event 4 frames."""
        if client_id is None:
            return [conn.preview_metadata for conn in self._by_sid.values()]
        conn = self._by_sid.get(client_id)
        return [] if conn is None else [conn.preview_metadata]

    async def send_preview(self, client_id: str | None, *, metadata: bool, frame: bytes) -> None:
        """*frame* to the sockets of :meth:`wants_metadata` whose format it is."""
        conns = (
            list(self._by_sid.values())
            if client_id is None
            else [c for c in [self._by_sid.get(client_id)] if c is not None]
        )
        for conn in conns:
            if conn.preview_metadata is metadata:
                await self._send(conn, frame)

    async def _send(self, conn: _Conn, message: dict[str, Any] | str | bytes) -> None:
        if conn.cut or conn.server is None:
            return
        frame = message if isinstance(message, str | bytes) else json.dumps(message)
        with suppress(ConnectionClosed):
            await conn.server.send_message(frame)

    async def send(self, client_id: str | None, message: dict[str, Any] | str | bytes) -> None:
        """To the socket registered for *client_id*; ``None`` sends nothing."""
        conn = self._by_sid.get(client_id) if client_id is not None else None
        if conn is not None:
            await self._send(conn, message)

    async def broadcast(self, message: dict[str, Any] | str | bytes) -> None:
        for conn in list(self._by_sid.values()):
            await self._send(conn, message)

    def drop_all(self) -> None:
        for conn in self._conns:
            conn.abort()
        self._conns.clear()

    def half_open(self) -> None:
        for conn in self._conns:
            conn.half_open()
