"""The fake ComfyUI on a real 127.0.0.1 port, HTTP and ``/ws`` together like the real one.

For the end-to-end test and the benchmarks, which run the real ``python -m bot`` process.
Each connection's first request decides its fate: a websocket upgrade is accepted by
``trio-websocket`` and bridged to one of the fake's own in-memory connections
(``fake.open_ws(clientId)``), so the fake's routing and quirks apply unchanged; anything
else is HTTP, served by the h11 loop of ``tests.fakes.loopback_http``. Real clock only
(the autojump clock and real sockets do not mix: docs/libraries.md, L18).
"""

from __future__ import annotations

import itertools
from functools import partial
from urllib.parse import parse_qs, urlsplit

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_server_stream

from comfy.websocket import WS_MAX_MESSAGE_BYTES
from tests.fakes.comfy import FakeComfy
from tests.fakes.loopback_http import LOOPBACK_HOST, _serve_connection

__all__ = ["serve_fake_comfy"]

MAX_HEAD_BYTES = 64 * 1024


class _Replay(trio.abc.Stream):
    """A stream that first gives back the bytes already read from it."""

    def __init__(self, stream: trio.SocketStream, head: bytes) -> None:
        self._stream = stream
        self._head = head

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._head:
            data, self._head = self._head, b""
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def serve_fake_comfy(
    fake: FakeComfy, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve *fake* on 127.0.0.1 (any free port, reported); runs until cancelled."""
    listeners = await trio.open_tcp_listeners(0, host=LOOPBACK_HOST)
    port = int(listeners[0].socket.getsockname()[1])
    ids = itertools.count(1)
    async with trio.open_nursery() as nursery:
        serve = partial(_route, fake, port, ids, nursery)
        await nursery.start(trio.serve_listeners, serve, listeners)
        task_status.started(port)


async def _route(
    fake: FakeComfy,
    port: int,
    ids: itertools.count[int],
    nursery: trio.Nursery,
    stream: trio.SocketStream,
) -> None:
    head = b""
    while b"\r\n\r\n" not in head and len(head) < MAX_HEAD_BYTES:
        data = await stream.receive_some()
        if not data:
            await stream.aclose()
            return
        head += data
    replay = _Replay(stream, head)
    if b"upgrade: websocket" not in head.lower():
        await _serve_connection(fake.handler, port, ids, replay)  # type: ignore[arg-type]
        return
    request = await wrap_server_stream(nursery, replay, max_message_size=WS_MAX_MESSAGE_BYTES)
    client_id = parse_qs(urlsplit(request.path).query).get("clientId", ["anonymous"])[0]
    outer = await request.accept()
    async with fake.open_ws(client_id) as inner, trio.open_nursery() as bridge:
        bridge.start_soon(_pump, inner, outer, bridge.cancel_scope)
        bridge.start_soon(_pump, outer, inner, bridge.cancel_scope)


async def _pump(
    source: WebSocketConnection, sink: WebSocketConnection, scope: trio.CancelScope
) -> None:
    try:
        while True:
            await sink.send_message(await source.get_message())
    except ConnectionClosed:
        pass
    finally:
        scope.cancel()
