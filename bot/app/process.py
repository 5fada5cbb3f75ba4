"""The process: one root nursery that owns every task.

``run()`` opens the store and the HTTP clients, then starts side by side in one
nursery: the signal watcher, one websocket follower per ComfyUI server, the generation
workers and the status board, the resumption of jobs left
by a previous run, the model preflight, the retention pruner, and the chat (long polling
feeding the per-chat dispatcher). A stop request ends polling first, lets the updates in
hand finish for ``STOP_GRACE_S``, then cancels the rest; unfinished picture jobs stay in
SQLite and are resumed at the next start. A stop before polling has begun (Telegram
unreachable at boot) has nothing in hand to finish and ends the process at once.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Final

import httpx
import trio

from bot import __version__
from bot.app.handler import make_handler, make_throttle
from bot.app.signals import run_signal_watcher
from bot.app.startup import route_to, set_commands, until_answered, wait_for_telegram
from bot.core.deps import Deps
from bot.core.limits import UserLimits
from bot.core.llm import ChatCompletions
from bot.core.personas import load_personas
from bot.core.settings import Settings
from bot.ops.health import Heartbeat, run_heartbeat
from bot.ops.listener import run_listener
from bot.ops.retention import run_retention
from bot.payments.keyboards import buy_keyboard
from bot.pictures.deliveries import Deliveries
from bot.pictures.recovery import resume_unfinished
from bot.pictures.runtime import PicturesRuntime
from bot.pictures.start import build_pictures, start_pictures
from bot.telegram.client import TelegramApi
from bot.telegram.dispatcher import run_dispatcher
from bot.telegram.polling import prepare_polling, run_polling
from bot.telegram.send_budget import SendRules
from bot.telegram.throttle import SendThrottle
from bot.telegram.types import Update
from comfy import OpenWebsocket, WorkflowTemplate
from common.logfields import fields
from common.metrics import BUILD
from store import open_store, utc_now
from store.instance_lock import hold_instance_lock

__all__ = ["STOP_GRACE_S", "Stopper", "run"]

log = logging.getLogger(__name__)

STOP_GRACE_S: Final = 5.0
UPDATE_BUFFER: Final = 100
HTTP_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)


class Stopper:
    """A graceful stop, asked for by a signal or by a test."""

    def __init__(self) -> None:
        self._polling: trio.CancelScope | None = None
        self._root: trio.CancelScope | None = None
        self._deliveries: Deliveries | None = None
        self.requested = trio.Event()

    def attach(
        self,
        *,
        root: trio.CancelScope | None = None,
        polling: trio.CancelScope | None = None,
        deliveries: Deliveries | None = None,
    ) -> None:
        """Hand over the scopes a stop acts on; a stop asked for earlier applies at once."""
        if root is not None:
            self._root = root
        if polling is not None:
            self._polling = polling
        if deliveries is not None:
            self._deliveries = deliveries
        if self.requested.is_set():
            self.stop()

    def stop(self) -> None:
        """Stop polling now; cancel everything else after the grace period.

        Before polling has begun, no update is in hand: everything is cancelled at once.
        Uploads in flight are shielded and get ``DELIVERY_GRACE_S`` to finish either way.
        """
        self.requested.set()
        if self._deliveries is not None:
            self._deliveries.bound()
        if self._polling is not None:
            self._polling.cancel()
        elif self._root is not None:
            self._root.cancel()
        if self._root is not None:
            self._root.deadline = min(self._root.deadline, trio.current_time() + STOP_GRACE_S)

    def force(self) -> None:
        if self._deliveries is not None:
            self._deliveries.cut()
        if self._root is not None:
            self._root.cancel()


async def run(
    settings: Settings,
    *,
    telegram_transport: httpx.AsyncBaseTransport | None = None,
    comfy_transport: httpx.AsyncBaseTransport | None = None,
    open_ws: OpenWebsocket | Mapping[str, OpenWebsocket] | None = None,
    now: Callable[[], datetime] = utc_now,
    rng: random.Random | None = None,
    stopper: Stopper | None = None,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the bot until stopped. Every external edge can be injected (tests).

    Raises:
        PersonasError, WorkflowError, StoreError, TelegramUnauthorized: start-up
        problems an operator must fix, each with a one-line message.
    """
    rng = rng if rng is not None else random.Random()
    stopper = stopper if stopper is not None else Stopper()
    BUILD.info({"version": __version__})
    personas = load_personas(settings.personas_file)
    template = (
        WorkflowTemplate.from_file(settings.workflow_file) if settings.comfyui_servers else None
    )
    route = route_to(str(settings.telegram_api_base))
    # The instance lock before anything touches the database (docs/decisions.md, D22).
    with hold_instance_lock(settings.database_path), open_store(settings.database_path) as store:
        # Before the first network call: an operator whose network is down still sees
        # what this process is and where it is trying to go.
        log.info(
            "bot_starting",
            extra=fields(
                replies="llm" if settings.llm_base_url else "offline lines",
                images="on" if settings.images_available else "off",
                telegram=route,
            ),
        )
        async with (
            httpx.AsyncClient(transport=telegram_transport, timeout=HTTP_TIMEOUT) as http,
            _comfy_http(settings, comfy_transport) as comfy_http,
            trio.open_nursery() as root,
        ):
            stopper.attach(root=root.cancel_scope)
            if handle_signals:
                await root.start(run_signal_watcher, stopper.stop, stopper.force)
            heartbeat = Heartbeat()
            if settings.metrics_address is not None:
                # Before Telegram is reached, so /healthz tells why the bot is not up yet.
                await root.start(run_listener, settings.metrics_address, heartbeat)
            api = TelegramApi(
                http,
                settings.token,
                base_url=str(settings.telegram_api_base),
                rng=rng,
                throttle=SendThrottle(SendRules.overall(settings.telegram_messages_per_second)),
            )
            # One try per start-up cycle: an outage is one log line per cycle, and the
            # cycles wait it out (bot.app.startup).
            once = TelegramApi(
                http,
                settings.token,
                base_url=str(settings.telegram_api_base),
                rng=rng,
                max_attempts=1,
                max_rate_limit_waits=1,
            )
            me = await wait_for_telegram(once, route=route, rng=rng)
            pictures = build_pictures(
                settings, api, store, template, comfy_http, open_ws=open_ws, rng=rng
            )
            if pictures is not None:
                stopper.attach(deliveries=pictures.deliveries)
            deps = Deps(
                api=api, store=store, personas=personas, settings=settings,
                llm=_llm(settings, http), rng=rng, now=now, bot_username=me.username,
                limits=UserLimits.per_minute(
                    messages=settings.user_messages_per_minute,
                    llm_replies=settings.llm_replies_per_user_per_minute,
                    presses=settings.user_presses_per_minute,
                ),
                offers=partial(buy_keyboard, settings),
            )  # fmt: skip
            log.info("bot_online", extra=fields(username=me.username))
            await until_answered(
                partial(prepare_polling, once), what="getWebhookInfo", route=route, rng=rng
            )
            # Cosmetic and slow to retry (Telegram limits these calls): beside polling.
            root.start_soon(
                partial(
                    set_commands,
                    api,
                    payments_on=settings.payments_on,
                    admins=settings.admin_user_ids,
                ),
                name="telegram-profile",
            )
            if pictures is not None:
                await start_pictures(root, deps, pictures)
            if settings.metrics_address is not None:
                await root.start(
                    partial(
                        run_heartbeat,
                        heartbeat,
                        samplers=[pictures.sample_metrics] if pictures is not None else [],
                        stopping=stopper.requested.is_set,
                    )
                )
            await root.start(resume_unfinished, deps, pictures)
            await root.start(run_retention, store, settings.retention, now)
            await _run_chat(
                deps, pictures, stopper, on_polled=heartbeat.polled, task_status=task_status
            )
            root.cancel_scope.cancel()
    log.info("bot_stopped")


@asynccontextmanager
async def _comfy_http(
    settings: Settings, transport: httpx.AsyncBaseTransport | None
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One HTTP client per ComfyUI server (each with its own base URL and connections)."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=spec.url, transport=transport, timeout=HTTP_TIMEOUT)
            )
            for spec in settings.comfyui_servers
        ]


async def _run_chat(
    deps: Deps,
    pictures: PicturesRuntime | None,
    stopper: Stopper,
    *,
    on_polled: Callable[[], None],
    task_status: trio.TaskStatus[None],
) -> None:
    """Polling beside the dispatcher; returns once polling stopped and handlers finished."""
    send, receive = trio.open_memory_channel[Update](UPDATE_BUFFER)
    async with trio.open_nursery() as chat:
        throttled, handle_throttled = make_throttle(deps)
        await chat.start(
            partial(
                run_dispatcher,
                throttled=throttled,
                handle_throttled=handle_throttled,
                rng=deps.rng,
            ),
            receive,
            make_handler(deps, pictures),
            deps.store.updates,
        )
        with trio.CancelScope() as polling_scope:
            stopper.attach(polling=polling_scope)
            task_status.started()
            await run_polling(deps.api, deps.store.updates, send, rng=deps.rng, on_polled=on_polled)


def _llm(settings: Settings, http: httpx.AsyncClient) -> ChatCompletions | None:
    if settings.llm_base_url is None:
        return None
    return ChatCompletions(
        http,
        base_url=str(settings.llm_base_url),
        model=settings.llm_model,
        api_key=settings.llm_api_key,
        timeout_s=settings.llm_timeout_seconds,
    )
