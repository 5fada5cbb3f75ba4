"""How the follower opens ComfyUI's ``/ws``: the injectable ``OpenWebsocket`` seam.

Production uses ``websocket_opener(base_url)``, which builds ``ws(s)://host:port/ws?clientId=``
from the HTTP base URL and calls trio-websocket's ``open_websocket_url`` with the message
limit raised from its 1 MiB default (ComfyUI's preview and SaveImageWebsocket frames are
larger, and an oversize frame closes the socket with 1009: docs/libraries.md, L4) and
with bounded connect and close handshakes. Tests pass ``FakeComfy.open_ws`` instead, built
on ``memory_stream_pair`` (docs/libraries.md, L9). An opener must bound its own close
handshake: the follower closes half-open sockets, whose peer never answers.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Final, TypeAlias

import httpx
from trio_websocket import WebSocketConnection, open_websocket_url

__all__ = [
    "WS_CLOSE_TIMEOUT_S",
    "WS_CONNECT_TIMEOUT_S",
    "WS_MAX_MESSAGE_BYTES",
    "OpenWebsocket",
    "websocket_opener",
    "websocket_url",
]

WS_MAX_MESSAGE_BYTES: Final = 2**25  # 32 MiB
WS_CONNECT_TIMEOUT_S: Final = 10.0
WS_CLOSE_TIMEOUT_S: Final = 2.0

OpenWebsocket: TypeAlias = Callable[[str], AbstractAsyncContextManager[WebSocketConnection]]


def websocket_url(base_url: str, client_id: str) -> str:
    """``http://gpu:8188`` → ``ws://gpu:8188/ws?clientId=...`` (https → wss)."""
    url = httpx.URL(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(url.scheme)
    if scheme is None:
        raise ValueError(f"ComfyUI base URL {base_url!r} must start with http:// or https://")
    path = url.path.rstrip("/") + "/ws"
    return str(url.copy_with(scheme=scheme, path=path, query=None, params={"clientId": client_id}))


def websocket_opener(
    base_url: str,
    *,
    connect_timeout_s: float = WS_CONNECT_TIMEOUT_S,
    close_timeout_s: float = WS_CLOSE_TIMEOUT_S,
    max_message_bytes: int = WS_MAX_MESSAGE_BYTES,
) -> OpenWebsocket:
    """The production ``OpenWebsocket``: ``open_websocket_url`` with a raised size limit."""
    websocket_url(base_url, "check")  # refuse a bad URL at start-up, not at first connect

    def open_ws(client_id: str) -> AbstractAsyncContextManager[WebSocketConnection]:
        return open_websocket_url(
            websocket_url(base_url, client_id),
            max_message_size=max_message_bytes,
            connect_timeout=connect_timeout_s,
            disconnect_timeout=close_timeout_s,
        )

    return open_ws
