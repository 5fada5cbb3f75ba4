"""Serve an httpx-style handler over real HTTP/1.1 on 127.0.0.1, with trio and h11.

The end-to-end test runs the real ``python -m bot`` process, which cannot use a
``MockTransport``; this puts the same fake handlers (``FakeTelegram.handler``, ...) behind
a real socket. Keep-alive, ``Content-Length`` and chunked request bodies are supported.
A handler that raises ``httpx.TransportError`` makes the server drop the connection
without a reply, which the client sees as a network error.

Use it with the real clock (the autojump clock jumps while sockets are busy, C5)::

    port = await nursery.start(serve_handler, fake.handler)
"""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Final

import h11
import httpx
import trio

__all__ = ["LOOPBACK_HOST", "Handler", "serve_handler"]

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]

LOOPBACK_HOST: Final = "127.0.0.1"
RECEIVE_SIZE: Final = 65536  # bytes per receive_some call
MAX_BODY_BYTES: Final = 64 * 1024 * 1024

logger = logging.getLogger(__name__)


async def serve_handler(
    handler: Handler,
    *,
    port: int = 0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on 127.0.0.1 (``port`` 0: any free one); report the port; serve forever."""
    listeners = await trio.open_tcp_listeners(port, host=LOOPBACK_HOST)
    bound_port = int(listeners[0].socket.getsockname()[1])
    connection_ids = itertools.count(1)
    serve = partial(_serve_connection, handler, bound_port, connection_ids)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, serve, listeners)
        task_status.started(bound_port)


async def _serve_connection(
    handler: Handler, port: int, connection_ids: itertools.count[int], stream: trio.SocketStream
) -> None:
    connection_id = next(connection_ids)
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_BODY_BYTES)
    async with stream:
        try:
            while await _serve_one(handler, port, connection_id, connection, stream):
                connection.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return


async def _serve_one(
    handler: Handler,
    port: int,
    connection_id: int,
    connection: h11.Connection,
    stream: trio.SocketStream,
) -> bool:
    """Answer one request; return True when the connection may carry another one."""
    event = await _next_event(connection, stream)
    if not isinstance(event, h11.Request):
        return False
    body = bytearray()
    while not isinstance(part := await _next_event(connection, stream), h11.EndOfMessage):
        if isinstance(part, h11.ConnectionClosed):
            return False
        if isinstance(part, h11.Data):
            body += part.data
    request = httpx.Request(
        event.method.decode(),
        f"http://{LOOPBACK_HOST}:{port}{event.target.decode()}",
        headers=list(event.headers),  # as received: a chunked body keeps its header
        content=bytes(body),
        extensions={"loopback_connection": connection_id},
    )
    try:
        response = await _call(handler, request)
    except httpx.TransportError:
        return False  # the handler asked for a network failure: drop the connection
    except Exception:
        logger.exception("loopback_handler_failed %s %s", request.method, request.url.path)
        response = httpx.Response(500, text="handler failed")
    content = await response.aread()
    headers = [
        (name, value)
        for name, value in response.headers.raw
        if name.lower() not in (b"content-length", b"transfer-encoding", b"connection")
    ]
    headers.append((b"content-length", str(len(content)).encode()))
    head = h11.Response(
        status_code=response.status_code, headers=headers, reason=response.reason_phrase.encode()
    )
    await stream.send_all(connection.send(head))
    await stream.send_all(connection.send(h11.Data(data=content)))
    await stream.send_all(connection.send(h11.EndOfMessage()))
    return connection.our_state is h11.DONE and connection.their_state is h11.DONE


async def _call(handler: Handler, request: httpx.Request) -> httpx.Response:
    result = handler(request)
    if inspect.isawaitable(result):
        return await result
    return result


async def _next_event(connection: h11.Connection, stream: trio.SocketStream) -> object:
    while True:
        event = connection.next_event()
        if event is not h11.NEED_DATA:
            return event
        connection.receive_data(await stream.receive_some(RECEIVE_SIZE))
