"""The test fakes, instrumented to say *when* things happened (harness clock, real time).

* :class:`TimedTelegram` wraps ``FakeTelegram.handler``: the moment a ``getUpdates``
  answer hands an update out is the moment it *reaches the bot*; every message, photo or
  document the bot sends is indexed per chat as it arrives.
* :class:`TimedComfy` is a ``FakeComfy`` (one prompt at a time, like one GPU, or
  ``parallel`` at once, like several) that records each prompt's run: taken off the
  queue, picture saved, worker free again. With ``image_bytes`` its pictures are that
  large (random, incompressible bytes).
* :func:`instant_llm` is an OpenAI-compatible ``/chat/completions`` that answers at once.

``open_stack`` serves all three on 127.0.0.1 and reports the ports.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import httpx
import trio

from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS
from tests.fakes.comfy import JPEG_MAGIC, FakeComfy, FakePrompt, PromptScript
from tests.fakes.comfy_loopback import serve_fake_comfy
from tests.fakes.loopback_http import serve_handler
from tests.fakes.telegram import FakeTelegram, SentRecord

__all__ = [
    "LLM_REPLY",
    "GpuRun",
    "Ports",
    "Stack",
    "TimedComfy",
    "TimedTelegram",
    "instant_llm",
    "is_preview",
    "open_stack",
]

LLM_REPLY: Final = "Смотри: я сижу у окна, за стеклом закат, а на столе остывает чай."
PressKey = tuple[int, int]  # (chat_id, message_id of the pressed reply)


class TimedTelegram:
    """``FakeTelegram`` plus when updates were handed out and when things were sent."""

    def __init__(self) -> None:
        self.fake = FakeTelegram()
        self.polled = trio.Event()  # the bot asked for updates (getUpdates) at least once
        self.sent_by_chat: dict[int, list[SentRecord]] = defaultdict(list)
        self._handouts: list[tuple[float, bytes]] = []
        self._indexed = 0
        self._edits_seen = 0
        self._sent_changed = trio.Event()

    async def handler(self, request: httpx.Request) -> httpx.Response:
        """The fake's handler; the answer's time is taken before anything else is done."""
        polling = request.url.path.endswith("/getUpdates")
        if polling:
            self.polled.set()  # the long poll is open: updates now reach the bot at once
        response = await self.fake.handler(request)
        if polling:
            # Parsed later (``update_times``), so recording never delays the answer.
            self._handouts.append((trio.current_time(), response.content))
        self._index_sent()
        return response

    def _index_sent(self) -> None:
        # A picture usually lands in its status message (editMessageMedia): the record
        # already indexed turns into a photo in ``fake.sent``, which counts as a change.
        new = self.fake.sent[self._indexed :]
        edits = len(self.fake.media_edits)
        if not new and edits == self._edits_seen:
            return
        self._edits_seen = edits
        self._indexed += len(new)
        for record in new:
            self.sent_by_chat[record.chat_id].append(record)
        self._sent_changed.set()
        self._sent_changed = trio.Event()

    async def wait_sent(self, chat_id: int, count: int, *, kind: str = "message") -> SentRecord:
        """Wait until the bot sent *count* records of *kind* to *chat_id*; the last one."""
        while True:
            records = [r for r in self.fake.sent if r.chat_id == chat_id and r.kind == kind]
            if len(records) >= count:
                return records[count - 1]
            await self._sent_changed.wait()

    async def wait_total(self, kind: str, count: int) -> None:
        """Wait until the bot sent *count* records of *kind* in all chats together (a status
        message showing a preview is no photo yet)."""
        while sum(r.kind == kind and not is_preview(r) for r in self.fake.sent) < count:
            await self._sent_changed.wait()

    def update_times(self) -> tuple[dict[int, float], dict[PressKey, float]]:
        """When each update was first handed out: by ``update_id``, and presses by key."""
        by_id: dict[int, float] = {}
        presses: dict[PressKey, float] = {}
        for at, content in self._handouts:
            body: dict[str, Any] = json.loads(content)
            for update in body.get("result", []) if body.get("ok") else []:
                by_id.setdefault(update["update_id"], at)
                query = update.get("callback_query")
                if query is not None:
                    message = query["message"]
                    presses.setdefault((message["chat"]["id"], message["message_id"]), at)
        return by_id, presses

    def photos(self) -> dict[PressKey, float]:
        """Arrival time of each photo, keyed by the reply it illustrates."""
        return {
            (r.chat_id, r.reply_to_message_id): r.at
            for r in self.fake.sent
            if r.kind in ("photo", "document")
            and r.reply_to_message_id is not None
            and not is_preview(r)
        }

    def first_previews(self) -> dict[PressKey, float]:
        """When each press's status message first showed the forming picture."""
        first: dict[PressKey, float] = {}
        for r in self.fake.media_edits:
            if is_preview(r) and r.reply_to_message_id is not None:
                first.setdefault((r.chat_id, r.reply_to_message_id), r.at)
        return first


def is_preview(record: SentRecord) -> bool:
    """A status message showing the forming picture (the fake ComfyUI's previews are
    JPEGs, its pictures PNGs)."""
    return (record.content or b"").startswith(JPEG_MAGIC)


@dataclass(slots=True)
class GpuRun:
    """One prompt on the fake GPU: ``start`` taken off the queue, ``done`` picture saved,
    ``free`` the worker may take the next prompt (after ComfyUI's closing messages)."""

    prompt_id: str
    start: float
    done: float = math.nan
    free: float = math.nan
    filename: str = ""
    fetched: float = math.nan  # the bot asked for the picture (GET /view arrived)

    @property
    def gpu_s(self) -> float:
        return self.done - self.start


class TimedComfy(FakeComfy):
    """``FakeComfy`` that records every run (``runs``, in execution order).

    It hooks the fake's two execution steps (``_execute`` around the whole prompt,
    ``_perform`` around the GPU work), the only places that see a prompt start and end,
    and its HTTP handler, to see when the bot downloads each picture.
    """

    def __init__(
        self, *, run_s: float, image_bytes: int = 0, parallel: int = 1, steps: int = 4
    ) -> None:
        super().__init__(
            loras=tuple(load_personas(SHIPPED_PERSONAS).lora_files()), parallel=parallel
        )
        self.default_script = PromptScript(run_s=run_s, steps=steps)
        self.runs: list[GpuRun] = []
        self._running: dict[int, GpuRun] = {}  # by id() of the FakePrompt being run
        self._by_filename: dict[str, GpuRun] = {}
        self._padding = os.urandom(image_bytes) if image_bytes > 0 else b""

    async def _execute(self, item: FakePrompt) -> None:
        run = GpuRun(item.prompt_id, trio.current_time())
        self.runs.append(run)
        self._running[id(item)] = run
        try:
            await super()._execute(item)
        finally:
            run.free = trio.current_time()
            del self._running[id(item)]

    async def _perform(self, item: FakePrompt) -> tuple[str, dict[str, Any], dict[str, Any]]:
        run = self._running[id(item)]  # with several in parallel, not always the last one
        try:
            result = await super()._perform(item)
        finally:
            run.done = trio.current_time()
        for output in result[2].values():
            for image in output.get("images", []):
                run.filename = image["filename"]
                self._by_filename[run.filename] = run
        return result

    async def handler(self, request: httpx.Request) -> httpx.Response:
        """The fake's routes; the arrival of each GET /view is recorded first."""
        if request.method == "GET" and request.url.path.endswith("/view"):
            run = self._by_filename.get(request.url.params.get("filename", ""))
            if run is not None and math.isnan(run.fetched):
                run.fetched = trio.current_time()
        return await super().handler(request)

    def image_for(self, filename: str) -> bytes | None:
        """The fake's small PNG, padded to ``image_bytes`` (built per request, not kept)."""
        data = super().image_for(filename)
        return data + self._padding if data is not None and self._padding else data


def instant_llm(request: httpx.Request) -> httpx.Response:
    """``POST /v1/chat/completions`` answered at once with :data:`LLM_REPLY`."""
    if not request.url.path.endswith("/chat/completions"):
        return httpx.Response(404, json={"error": {"message": "not found"}})
    choice = {"index": 0, "message": {"role": "assistant", "content": LLM_REPLY}}
    return httpx.Response(
        200, json={"id": "bench", "object": "chat.completion", "choices": [choice]}
    )


@dataclass(frozen=True, slots=True)
class Ports:
    telegram: int
    comfy: int
    llm: int


@dataclass(frozen=True, slots=True)
class Stack:
    """The three fakes of one run and where they listen."""

    telegram: TimedTelegram
    comfy: TimedComfy
    ports: Ports


LlmHandler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


@asynccontextmanager
async def open_stack(
    *,
    run_s: float,
    image_bytes: int = 0,
    llm: LlmHandler = instant_llm,
    parallel: int = 1,
    steps: int = 4,
) -> AsyncIterator[Stack]:
    """Fresh fakes served on 127.0.0.1 for one bot process; stopped on exit. The fake
    ComfyUI draws *parallel* prompts at once (several GPUs), each in *steps* progress steps."""
    telegram = TimedTelegram()
    comfy = TimedComfy(run_s=run_s, image_bytes=image_bytes, parallel=parallel, steps=steps)
    async with trio.open_nursery() as nursery:
        telegram_port: int = await nursery.start(serve_handler, telegram.handler)
        await nursery.start(comfy.run)
        comfy_port: int = await nursery.start(serve_fake_comfy, comfy)
        llm_port: int = await nursery.start(serve_handler, llm)
        yield Stack(telegram, comfy, Ports(telegram_port, comfy_port, llm_port))
        nursery.cancel_scope.cancel()
