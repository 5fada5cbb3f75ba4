"""Run the whole bot in-process against the fakes, under the test's clock.

``start_bot`` calls ``bot.app.run`` in the test's nursery with every edge injected: the
fake Bot API (and an optional fake LLM) behind one ``MockTransport`` routed by host, the
fake ComfyUI's HTTP handler and in-memory websocket, a seeded Random and a fixed
wall clock. ``Bot.stop()`` asks for the same graceful stop a SIGTERM would.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import trio
import trio.testing

from bot import app
from bot.core.settings import Settings, load_settings
from comfy import SHIPPED_WORKFLOW
from store import Store, open_store
from tests.fakes.telegram import FAKE_BASE_URL, TEST_TOKEN, FakeTelegram

__all__ = [
    "LLM_BASE_URL",
    "Bot",
    "Clock",
    "comfy_name",
    "host_router",
    "start_bot",
    "threads_run_in_real_time",
]

LLM_BASE_URL = "http://llm.test/v1"
COMFY_BASE_URL = "http://comfy.test:8188"
Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def comfy_name(index: int) -> str:
    """The name (host:port) of the *index*-th of several fake ComfyUI servers, from 1."""
    return f"comfy{index}.test:8188"


@dataclass
class Clock:
    """Wall-clock UTC that tests move by hand (``advance``) beside trio's virtual time."""

    moment: datetime = field(default_factory=lambda: datetime(2026, 11, 28, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


@dataclass(frozen=True)
class CrashPoint:
    """Kill the bot when a request matching *when* reaches a fake: *before* the fake
    handles it (the request is lost) or *after* (the fake acted, the answer is lost)."""

    when: Callable[[httpx.Request], bool]
    after: bool = False


@dataclass
class Process:
    """What a SIGKILL takes away: the run's cancel scope and every connection."""

    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    dead: bool = False
    crash_points: list[CrashPoint] = field(default_factory=list)
    # What a kill also ends: scopes shielded from a stop (uploads in flight) are not
    # reached by ``scope``, and a SIGKILL spares nothing.
    also_on_kill: list[Callable[[], None]] = field(default_factory=list)

    def kill(self) -> None:
        self.dead = True
        self.scope.cancel()
        for hook in self.also_on_kill:
            hook()

    def guard(self, handler: Handler) -> Handler:
        async def guarded(request: httpx.Request) -> httpx.Response:
            if self.dead:
                raise httpx.ConnectError("the bot process is dead", request=request)
            point = next((p for p in self.crash_points if p.when(request)), None)
            if point is not None and not point.after:
                self.crash_points.remove(point)
                self.kill()
                raise httpx.ConnectError("killed before the request left", request=request)
            response = await handler(request)
            if point is not None:
                self.crash_points.remove(point)
                self.kill()
                raise httpx.ConnectError("killed before the answer arrived", request=request)
            return response

        return guarded


def host_router(routes: dict[str, Handler]) -> httpx.MockTransport:
    """One transport for the shared client: each host goes to its own fake."""

    async def route(request: httpx.Request) -> httpx.Response:
        handler = routes.get(request.url.host)
        if handler is None:
            raise httpx.ConnectError(f"no fake serves {request.url.host}", request=request)
        return await handler(request)

    return httpx.MockTransport(route)


@dataclass
class Bot:
    telegram: FakeTelegram
    settings: Settings
    stopper: app.Stopper
    clock: Clock
    done: trio.Event
    process: Process

    def store(self) -> Store:
        """A second connection to the bot's database (WAL lets it read beside the bot)."""
        return open_store(self.settings.database_path)

    async def stop(self) -> None:
        self.stopper.stop()
        await self.done.wait()

    async def kill(self) -> None:
        """As SIGKILL: no graceful stop, no answers to requests in flight."""
        self.process.kill()
        await self.done.wait()

    def crash_at(self, when: Callable[[httpx.Request], bool], *, after: bool = False) -> None:
        self.process.crash_points.append(CrashPoint(when, after))


async def start_bot(
    nursery: trio.Nursery,
    tmp_path: Path,
    telegram: FakeTelegram,
    *,
    comfy: Any | None = None,
    comfies: Sequence[Any] = (),
    llm: Handler | None = None,
    clock: Clock | None = None,
    seed: int = 1,
    **overrides: object,
) -> Bot:
    """Start the bot and return once it is polling.

    *comfies* are several fake ComfyUI servers, named ``comfy_name(1)``, ``comfy_name(2)``,
    ...; pass ``comfyui_base_url`` to give them slots of their own (``http://...#N``).
    """
    values: dict[str, object] = {
        "telegram_bot_token": TEST_TOKEN,
        "telegram_api_base": FAKE_BASE_URL,
        "database_path": tmp_path / "data" / "bot.db",
        "comfyui_base_url": COMFY_BASE_URL if comfy is not None else "",
        "llm_base_url": LLM_BASE_URL if llm is not None else "",
        "workflow_file": SHIPPED_WORKFLOW,
    }
    if comfies:
        values["comfyui_base_url"] = ",".join(
            f"http://{comfy_name(i)}" for i in range(1, len(comfies) + 1)
        )
    values.update(overrides)
    settings = load_settings(env_file=None, **values)
    process = Process()
    routes: dict[str, Handler] = {httpx.URL(FAKE_BASE_URL).host: process.guard(telegram.handler)}
    if llm is not None:
        routes[httpx.URL(LLM_BASE_URL).host] = process.guard(llm)
    clock = clock if clock is not None else Clock()
    stopper = app.Stopper()
    process.also_on_kill.append(stopper.force)
    done = trio.Event()

    comfy_transport: httpx.AsyncBaseTransport | None = None
    open_ws: Any = None
    if comfy is not None:
        comfy_transport = httpx.MockTransport(process.guard(comfy.handler))
        open_ws = comfy.open_ws
    elif comfies:
        names = [comfy_name(i) for i in range(1, len(comfies) + 1)]
        comfy_transport = host_router(
            {
                name.split(":")[0]: process.guard(fake.handler)
                for name, fake in zip(names, comfies, strict=True)
            }
        )
        open_ws = {name: fake.open_ws for name, fake in zip(names, comfies, strict=True)}

    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with process.scope:
                await app.run(
                    settings,
                    telegram_transport=host_router(routes),
                    comfy_transport=comfy_transport,
                    open_ws=open_ws,
                    now=clock,
                    rng=random.Random(seed),
                    stopper=stopper,
                    handle_signals=False,
                    task_status=task_status,
                )
        finally:
            done.set()

    await nursery.start(run)
    return Bot(
        telegram=telegram,
        settings=settings,
        stopper=stopper,
        clock=clock,
        done=done,
        process=process,
    )


@contextmanager
def threads_run_in_real_time(clock: object, *, idle_s: float = 5.0) -> Iterator[None]:
    """Inside: the autojump clock jumps only after *idle_s* of real idleness.

    A worker thread (``/stats`` reads its report in one) is invisible to trio, so with the
    default threshold of 0 the clock would jump to the test's next deadline while the
    thread still runs. Waiting on a thread's answer needs this around it.
    """
    assert isinstance(clock, trio.testing.MockClock)
    before = clock.autojump_threshold
    clock.autojump_threshold = idle_s
    try:
        yield
    finally:
        clock.autojump_threshold = before
