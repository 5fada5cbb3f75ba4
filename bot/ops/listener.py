"""``/metrics`` and ``/healthz`` over HTTP, for Prometheus and health checks; off by default.

``METRICS_ADDRESS=127.0.0.1:9464`` turns it on. The exposition is ``prometheus_client``'s
own WSGI app over its default registry (:mod:`common.metrics`, plus the library's
process and Python collectors). It is served by the standard library's WSGI server in
one worker thread, beside the trio loop rather than inside it, so that ``/healthz`` can
still answer (503, "event loop has not answered for 12 s") when the loop is stuck.

The thread handles one request at a time (a scrape or a probe takes milliseconds); a
client that stalls is cut off after ``CLIENT_TIMEOUT_S``. It serves until the task that
owns it is cancelled, then stops within ``POLL_S`` (or once the request in hand ends),
and the port is closed before :func:`run_listener` returns.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import trio
from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app

from bot.core.settings import ListenAddress
from bot.ops.health import Heartbeat
from common.logfields import fields

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["CLIENT_TIMEOUT_S", "ListenerError", "make_app", "run_listener"]

log = logging.getLogger(__name__)

CLIENT_TIMEOUT_S: Final = 5.0  # per read or write of one connection
POLL_S: Final = 0.25  # how often the serving thread looks whether it should stop
_TEXT: Final = ("Content-Type", "text/plain; charset=utf-8")


class ListenerError(Exception):
    """The listener cannot bind its address (in use, not this host's); one line."""


def make_app(heartbeat: Heartbeat, registry: CollectorRegistry = REGISTRY) -> WSGIApplication:
    """The WSGI app: ``/metrics`` (the registry), ``/healthz`` (the heartbeat), else 404."""
    metrics = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            served: Iterable[bytes] = metrics(environ, start_response)
            return served
        if path == "/healthz":
            health = heartbeat.health()
            status = "200 OK" if health.ok else "503 Service Unavailable"
            return _plain(start_response, status, health.reason)
        return _plain(start_response, "404 Not Found", "not found; try /metrics or /healthz")

    return app


def _plain(start_response: StartResponse, status: str, line: str) -> list[bytes]:
    body = f"{line}\n".encode()
    start_response(
        status, [_TEXT, ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    )
    return [body]


class _Handler(WSGIRequestHandler):
    timeout = CLIENT_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics_request", extra=fields(client=self.address_string(), line=format % args))


class _Server(WSGIServer):
    timeout = POLL_S  # handle_request() returns after this when nobody asked

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("metrics_request_failed", extra=fields(client=str(client_address)))


class _Server6(_Server):
    address_family = socket.AF_INET6


def _bind(address: ListenAddress, app: WSGIApplication) -> _Server:
    server_class = _Server6 if ":" in address.host else _Server
    try:
        return make_server(
            address.host, address.port, app, server_class=server_class, handler_class=_Handler
        )
    except OSError as exc:
        raise ListenerError(
            f"METRICS_ADDRESS {address}: cannot listen there ({exc.strerror or exc});"
            " choose a free port on this host, or leave it empty to turn the listener off"
        ) from None


def _serve(server: _Server, stop: threading.Event) -> None:
    while not stop.is_set():
        server.handle_request()


async def run_listener(
    address: ListenAddress,
    heartbeat: Heartbeat,
    *,
    registry: CollectorRegistry = REGISTRY,
    task_status: trio.TaskStatus[ListenAddress] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; started with the address actually bound (port 0 picks one).

    Raises:
        ListenerError: the address cannot be bound (before ``started``).
    """
    server = _bind(address, make_app(heartbeat, registry))
    stop = threading.Event()
    with server:
        host, port = server.server_address[:2]
        bound = ListenAddress(str(host), int(port))
        serve: Callable[[], Awaitable[object]] = partial(
            trio.to_thread.run_sync,
            _serve,
            server,
            stop,
            thread_name="metrics-listener",
            limiter=trio.CapacityLimiter(1),  # its own: it holds it for the process's life
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            log.info(
                "metrics_listening",
                extra=fields(address=str(bound), paths="/metrics /healthz"),
            )
            task_status.started(bound)
            try:
                await trio.sleep_forever()
            finally:
                stop.set()  # the thread sees it within POLL_S; the nursery waits for it
