"""Follow ComfyUI's ``/ws`` for every prompt of this process, and recover what it misses.

One websocket per ComfyUI server, read by one task that parses each frame
(``comfy.events``), advances the sans-IO ``PromptTracker`` and hands updates to the waiting
prompts through bounded per-prompt channels with ``send_nowait``: progress is dropped rather
than block the reader (a blocked reader also stops answering pings, docs/libraries.md, L5).
Outcomes are never dropped: they are stored on the ``PromptWatch`` with a ``trio.Event``.

Each connection uses a fresh ``clientId`` (``pbot-<12 hex>-<n>``): reconnecting with the
old one while ComfyUI still holds the half-open socket leaves the new socket deaf
(docs/comfyui.md, C7). So a prompt remembers the clientId it was submitted under, and
after a reconnect, or for a prompt recovered from an earlier process, nothing more arrives
for it on the socket. Such prompts are reconciled with GET /history/{id} and GET /queue at
once and then every ``RECONCILE_INTERVAL_S`` until they end; that is the only /history
polling (docs/product.md, P2).

A heartbeat pings every ``HEARTBEAT_INTERVAL_S``; no pong within ``HEARTBEAT_TIMEOUT_S``
means a half-open connection (ComfyUI never pings, docs/libraries.md, L7), and the reader
reconnects with exponential backoff plus jitter from the injected ``random.Random``.
The socket itself comes from an injected ``OpenWebsocket`` (``comfy.websocket``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import random
from collections.abc import Iterator
from typing import Final

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection

from comfy.client import ComfyClient
from comfy.errors import ComfyError
from comfy.events import Garbage, Preview, Status, Unknown, parse_ws_message
from comfy.protocol import (
    Probe,
    PromptTracker,
    PromptUpdate,
    Signal,
    probe_from_history,
    probe_from_job,
    probe_from_queue,
)
from comfy.websocket import (
    WS_CLOSE_TIMEOUT_S,
    WS_MAX_MESSAGE_BYTES,
    OpenWebsocket,
    websocket_opener,
    websocket_url,
)
from common.backoff import backoff_delays
from common.logfields import fields

__all__ = [
    "HEARTBEAT_INTERVAL_S",
    "HEARTBEAT_TIMEOUT_S",
    "PREVIEW_WAITING",
    "RECONCILE_INTERVAL_S",
    "RECONNECT_BACKOFF_INITIAL_S",
    "RECONNECT_BACKOFF_MAXIMUM_S",
    "WS_CLOSE_TIMEOUT_S",
    "WS_MAX_MESSAGE_BYTES",
    "Follower",
    "OpenWebsocket",
    "PromptWatch",
    "probe_prompt",
    "websocket_opener",
    "websocket_url",
]

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S: Final = 10.0
HEARTBEAT_TIMEOUT_S: Final = 10.0
RECONCILE_INTERVAL_S: Final = 2.0
# Reconnect waits, with equal jitter: 1-2 s, then 2-4 s, ... up to 15-30 s, so that many
# bots do not stampede a ComfyUI that comes back.
RECONNECT_BACKOFF_INITIAL_S: Final = 2.0
RECONNECT_BACKOFF_MAXIMUM_S: Final = 30.0
PROMPT_CHANNEL_SIZE: Final = 16
# The wake-up a watch queues for a new preview; the picture itself waits on the watch.
PREVIEW_WAITING: Final = Preview(b"", "")
# Sent first on every socket: ComfyUI then names the prompt in each preview frame
# (event 4) instead of sending the older frame that names none (docs/comfyui.md, C8).
# Servers that predate feature flags ignore what clients send.
FEATURE_FLAGS: Final = json.dumps(
    {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
)

_NETWORK_ERRORS: Final = (HandshakeError, OSError, trio.BrokenResourceError, trio.TooSlowError)


class PromptWatch:
    """The follower's handle on one waiting prompt: progress in ``updates``, the end in
    ``outcome`` + ``done`` (set once; ``updates`` then ends).

    A preview picture (25-50 KB a step) does not queue: the watch keeps only the latest,
    for :meth:`take_preview`, and ``updates`` gets a small wake-up (an update whose
    ``preview`` is :data:`PREVIEW_WAITING`), so memory per prompt stays one picture
    however slow its reader is. A picture is waiting exactly while its wake-up is queued.
    """

    def __init__(self, prompt_id: str, client_id: str | None, *, submitted: bool) -> None:
        self.prompt_id = prompt_id
        self.client_id = client_id
        self.submitted = submitted
        self._send, self.updates = trio.open_memory_channel[PromptUpdate](PROMPT_CHANNEL_SIZE)
        self.outcome: PromptUpdate | None = None
        self.done = trio.Event()
        self._preview: PromptUpdate | None = None

    def take_preview(self) -> PromptUpdate | None:
        """The latest preview (with its step) not taken yet, or None."""
        preview, self._preview = self._preview, None
        return preview

    def offer(self, update: PromptUpdate) -> None:
        """Called by the reader: never blocks."""
        if update.terminal:
            self.outcome = update
            self._preview = None
            self.done.set()
            self._send.close()
            return
        if update.preview is not None:
            waiting = self._preview is not None  # a wake-up is queued already
            self._preview = update
            if waiting:
                return
            update = dataclasses.replace(update, preview=PREVIEW_WAITING)
        try:
            self._send.send_nowait(update)
        except trio.WouldBlock:
            if update.preview is not None:
                self._preview = None  # no wake-up queued: the picture is not waiting either
            log.debug(
                "comfy_progress_dropped",
                extra=fields(prompt_id=self.prompt_id),
            )
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass


async def probe_prompt(client: ComfyClient, prompt_id: str, *, jobs_api: bool = False) -> Probe:
    """Where is *prompt_id* on ComfyUI: finished (history), queued/running, or nowhere?

    With the jobs API (servers after 0.3.64) one GET /api/jobs/{id} answers from the queue
    and the history together; a 404 is asked once more before it means "nowhere", since
    the server copies its queue and its history one after the other.

    Else /history answers ``{}`` for queued, running, deleted and unknown ids alike
    (docs/comfyui.md, C14), so /queue decides; history is read again last because the
    prompt may finish between the two reads, and "nowhere" must not be concluded from that
    race.
    """
    if jobs_api:
        for _ in range(2):
            job = await client.get_job(prompt_id)
            if job is None:
                continue
            probe = probe_from_job(job)
            if probe is not None:
                return probe
            break  # a status this client does not know: history and queue decide
        else:
            return Probe(Signal.MISSING)
    entry = await client.get_history(prompt_id)
    if entry is not None:
        return probe_from_history(entry)
    seen = probe_from_queue(await client.get_queue(), prompt_id)
    if seen is not None:
        return seen
    entry = await client.get_history(prompt_id)
    return probe_from_history(entry) if entry is not None else Probe(Signal.MISSING)


class Follower:
    """The websocket reader and reconciler for one ComfyUI server."""

    def __init__(
        self, client: ComfyClient, open_ws: OpenWebsocket, *, rng: random.Random | None = None
    ) -> None:
        self._client = client
        self._open_ws = open_ws
        self._rng = rng if rng is not None else random.Random()
        # From the injected Random, so a seeded run names its sockets the same way.
        self._id_prefix = f"pbot-{self._rng.getrandbits(48):012x}"
        self._ids = itertools.count(1)
        self._client_id: str | None = None
        self._connected = trio.Event()
        self._disconnected = trio.Event()
        self._disconnected.set()
        self._healthy = False
        self._tracker = PromptTracker()
        self._watches: dict[str, PromptWatch] = {}
        self._reconcile_now = trio.Event()
        self._reconcile_error = ""
        self._jobs_api: bool | None = None  # asked once per connection
        self.last_error = "not connected yet"
        self.queue_remaining = 0  # from the last status frame (docs/comfyui.md, C20)

    @property
    def connected(self) -> bool:
        return self._client_id is not None

    @property
    def client_id(self) -> str | None:
        """The clientId of the live socket, or None while disconnected."""
        return self._client_id

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Forever: connect, read, reconnect. Started at once, even if ComfyUI is down."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_reconciler)
            task_status.started()
            delays = self._reconnect_delays()
            while True:
                await self._connect_once(f"{self._id_prefix}-{next(self._ids)}")
                if self._healthy:
                    delays = self._reconnect_delays()
                sleep_s = next(delays)
                log.warning(
                    "comfy_ws_lost",
                    extra=fields(
                        server=self._client.server,
                        error=self.last_error,
                        retry_in_s=round(sleep_s, 1),
                    ),
                )
                await trio.sleep(sleep_s)

    def _reconnect_delays(self) -> Iterator[float]:
        return backoff_delays(
            initial_s=RECONNECT_BACKOFF_INITIAL_S,
            maximum_s=RECONNECT_BACKOFF_MAXIMUM_S,
            jitter="equal",
            rng=self._rng,
        )

    async def wait_connected(self) -> str:
        """Wait until ComfyUI has greeted a socket; return that socket's clientId."""
        while self._client_id is None:
            await self._connected.wait()
        return self._client_id

    async def wait_disconnected(self) -> None:
        """Wait until the live socket is lost (at once if there is none)."""
        await self._disconnected.wait()

    def watch(
        self, prompt_id: str, *, client_id: str | None, submitted: bool = False
    ) -> PromptWatch:
        """Start routing *prompt_id*'s messages; call before POST /prompt."""
        if prompt_id in self._watches:
            raise ValueError(f"prompt_id {prompt_id!r} is already being followed")
        watch = PromptWatch(prompt_id, client_id, submitted=submitted)
        self._watches[prompt_id] = watch
        self._tracker.add(prompt_id)
        if submitted:
            self._reconcile_now.set()
        return watch

    def mark_submitted(self, watch: PromptWatch) -> None:
        """ComfyUI accepted the prompt: from now on reconciliation may look for it."""
        watch.submitted = True
        if self._is_orphan(watch):
            self._reconcile_now.set()

    def forget(self, watch: PromptWatch) -> None:
        if self._watches.get(watch.prompt_id) is watch:
            del self._watches[watch.prompt_id]
            self._tracker.discard(watch.prompt_id)
        watch.updates.close()

    # -- connection ---------------------------------------------------------------------

    async def _connect_once(self, client_id: str) -> None:
        self._healthy = False
        served = False
        try:
            async with self._open_ws(client_id) as ws:
                try:
                    self.last_error = await self._serve(ws, client_id)
                    served = True
                finally:
                    self._set_disconnected()
        except ConnectionClosed as exc:
            self.last_error = self.last_error if served else f"closed ({exc.reason})"
        except _NETWORK_ERRORS as exc:
            if not served:  # HandshakeError wraps the OSError (docs/libraries.md, L3)
                cause = exc.__cause__ or exc
                self.last_error = f"cannot connect: {type(cause).__name__}: {cause}".rstrip(": ")
        except Exception as exc:  # a bug here must not end pictures for the process's life
            log.exception("comfy_ws_reader_failed", extra=fields(client_id=client_id))
            self.last_error = f"unexpected {type(exc).__name__}"
        finally:
            self._set_disconnected()

    async def _serve(self, ws: WebSocketConnection, client_id: str) -> str:
        """Read until the socket ends; returns why it ended."""
        lost = ["closed"]
        await ws.send_message(FEATURE_FLAGS)

        async def heartbeat(cancel_scope: trio.CancelScope) -> None:
            while True:
                await trio.sleep(HEARTBEAT_INTERVAL_S)
                with trio.move_on_after(HEARTBEAT_TIMEOUT_S) as ping:
                    try:
                        await ws.ping()
                    except ConnectionClosed:
                        return  # the reader sees the close as well
                if ping.cancelled_caught:
                    lost[0] = f"no pong within {HEARTBEAT_TIMEOUT_S:g} s (half-open socket)"
                    cancel_scope.cancel()
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(heartbeat, nursery.cancel_scope)
            lost[0] = await self._read(ws, client_id)
            nursery.cancel_scope.cancel()
        return lost[0]

    async def _read(self, ws: WebSocketConnection, client_id: str) -> str:
        while True:
            try:
                raw = await ws.get_message()
            except ConnectionClosed as exc:
                return f"closed by server ({exc.reason})"
            event = parse_ws_message(raw)
            if isinstance(event, Status) and event.queue_remaining is not None:
                self.queue_remaining = event.queue_remaining  # the whole server's, ours too
            if isinstance(event, Garbage):
                log.warning("comfy_ws_frame_ignored", extra=fields(reason=event.reason))
            elif isinstance(event, Unknown):
                log.debug("comfy_ws_message_ignored", extra=fields(type=event.type))
            elif isinstance(event, Status) and event.sid is not None and self._client_id is None:
                if event.sid != client_id:
                    log.warning(
                        "comfy_ws_sid_differs", extra=fields(sid=event.sid, client_id=client_id)
                    )
                self._set_connected(event.sid)
            self._deliver(self._tracker.receive(event))

    async def jobs_api(self) -> bool:
        """Whether the server has the jobs API (after 0.3.64), asked once per connection: a
        reconnect may be to an upgraded server. A failed question answers False and is
        asked again next time."""
        if self._jobs_api is None:
            try:
                found = await self._client.has_jobs_api()
            except ComfyError:
                return False
            if self._jobs_api is None:
                log.info(
                    "comfy_jobs_api", extra=fields(server=self._client.server, available=found)
                )
            self._jobs_api = found
        return self._jobs_api

    async def probe(self, prompt_id: str) -> Probe:
        """:func:`probe_prompt` with the jobs API when the server has it."""
        return await probe_prompt(self._client, prompt_id, jobs_api=await self.jobs_api())

    def _set_connected(self, client_id: str) -> None:
        self._jobs_api = None
        self._client_id = client_id
        self._healthy = True
        self._connected.set()
        self._disconnected = trio.Event()
        self._reconcile_now.set()  # prompts of the previous socket may have ended meanwhile
        log.info(
            "comfy_ws_connected", extra=fields(server=self._client.server, client_id=client_id)
        )

    def _set_disconnected(self) -> None:
        if self._client_id is None:
            return
        self._client_id = None
        self._connected = trio.Event()
        self._disconnected.set()
        self._reconcile_now.set()

    # -- delivery and reconciliation ------------------------------------------------------

    def _deliver(self, updates: list[PromptUpdate]) -> None:
        for update in updates:
            watch = self._watches.get(update.prompt_id)
            if watch is not None:
                watch.offer(update)
            if update.terminal:
                log.info(
                    "comfy_prompt_ended",
                    extra=fields(prompt_id=update.prompt_id, state=update.state.value),
                )

    def _is_orphan(self, watch: PromptWatch) -> bool:
        return self._client_id is None or watch.client_id != self._client_id

    async def _run_reconciler(self) -> None:
        while True:
            with trio.move_on_after(RECONCILE_INTERVAL_S):
                await self._reconcile_now.wait()
            self._reconcile_now = trio.Event()
            orphans = [
                w
                for w in self._watches.values()
                if w.submitted and not w.done.is_set() and self._is_orphan(w)
            ]
            for watch in orphans:
                try:
                    probe = await self.probe(watch.prompt_id)
                except ComfyError as exc:
                    self._reconcile_failed(exc.detail)
                    break
                except Exception as exc:  # a bug here must not end the follower, nor the process
                    self._reconcile_failed(f"unexpected {type(exc).__name__}: {exc}", exc=exc)
                    break
                self._reconcile_error = ""
                if self._watches.get(watch.prompt_id) is watch:
                    log.debug(
                        "comfy_reconciled",
                        extra=fields(prompt_id=watch.prompt_id, signal=probe.signal.value),
                    )
                    self._deliver(self._tracker.reconcile(watch.prompt_id, probe))

    def _reconcile_failed(self, detail: str, *, exc: Exception | None = None) -> None:
        """Log once per distinct failure: ComfyUI may stay broken for a prompt's whole budget,
        and the reconciler tries again every ``RECONCILE_INTERVAL_S``."""
        if detail == self._reconcile_error:
            log.debug("comfy_reconcile_failed_again", extra=fields(error=detail))
        elif exc is not None:
            log.error("comfy_reconcile_failed", extra=fields(error=detail), exc_info=exc)
        else:
            log.warning("comfy_reconcile_failed", extra=fields(error=detail))
        self._reconcile_error = detail
