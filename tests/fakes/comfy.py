"""FakeComfy: an in-memory ComfyUI 0.3.64 for deterministic trio tests.

Built from the recorded transcripts (``tests/transcripts/comfy``, docs/comfyui.md): the same
HTTP bodies, the same ``/ws`` message order, the same quirks (client-chosen prompt_id, a
re-POST queues a second copy, targeted vs bare interrupt, ``{}`` history for unknown
ids, 400 ``value_not_in_list`` for unknown model names). One prompt runs at a time, like
one GPU, each taking scriptable *virtual* time, so tests run under ``autojump_clock``.

Use it from any test (the fixtures live in ``tests/fakes/comfy_fixtures.py``)::

    async def test_picture(comfy_stack: ComfyStack, autojump_clock: object) -> None:
        image = await comfy_stack.comfy.generate(graph, prompt_id=pid, timeout_s=120)
        assert comfy_stack.fake.submitted[0].prompt_id == pid

or wire it by hand (``fake_comfy`` fixture, or ``async with open_fake_comfy() as fake``)::

    http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler),
                             base_url="http://comfy.test")
    client = ComfyClient(http)
    follower = Follower(client, fake.open_ws, rng=random.Random(0))
    await nursery.start(follower.run)
    comfy = Comfy(client, follower)

Scripting: ``fake.default_script = PromptScript(run_s=3.0, steps=5)``,
``fake.script(prompt_id, PromptScript(outcome=Outcome.HANG))`` or
``fake.script_in_turn([PromptScript(), PromptScript(outcome=Outcome.ERROR)])``; outcomes
SUCCESS, ERROR (the recorded ``execution_error`` of a broken LoRA) and HANG (runs until
interrupted).
Knobs: ``unreachable`` (HTTP raises ``httpx.ConnectError``, ws refused),
``sockets.refuse``, ``reject_next_with(status, body)``, ``http_500_next``,
``answer_lost_next`` (POST /prompt queues, then answers 502), ``fail_next_prompts``
(the next prompts end in the recorded ``execution_error``), ``latency_s``
(``{"GET /view": 1.0}``: seconds before a route answers), ``outputs_lost``
(``/view`` answers 404, as after the output folder was emptied),
``drop_websockets()``, ``half_open()``, ``restart()``, ``send_raw(frame)``,
``preview_method`` (the server's ``--preview-method``; a server with ``jobs_api`` also
takes ``extra_data.preview_method`` per prompt, as servers after 0.3.64 do).
Records: ``requests`` ((method, path, json) with ``/api`` stripped), ``submitted``
(``FakePrompt``s), ``deleted``, ``interrupted`` (prompts actually stopped),
``interrupt_requests`` (every POST /interrupt; ``None`` = bare), ``bare_interrupts``,
``history_deleted``, ``started`` (execution order), ``peak_on_server`` (most prompts
queued + running at once), ``sockets.client_ids`` (every websocket opened),
``previews_sent`` (preview frames, one per socket they went to).
"""

from __future__ import annotations

import enum
import itertools
import json
import struct
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio
from trio_websocket import WebSocketConnection

from tests.fakes.comfy_http import handle_request
from tests.fakes.comfy_ws import FakeSockets

__all__ = ["FakeComfy", "FakePrompt", "Outcome", "PromptScript", "open_fake_comfy"]

DEFAULT_CHECKPOINTS = ("sd_xl_base_1.0.safetensors",)
DEFAULT_LORAS = ("persona_default.safetensors", "anna.safetensors")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LORA_ERROR = "Error while deserializing header: header too large\n"  # transcript c
# Preview frames of transcript k: 512 px JPEGs whatever the picture's size, ~24-31 KB.
PREVIEW_SIZES = (23829, 27077, 27011, 31523, 30507, 30536)
JPEG_MAGIC = b"\xff\xd8\xff\xe0"
PREVIEW_METHODS = ("auto", "latent2rgb", "taesd")


class Outcome(enum.Enum):
    SUCCESS = "success"
    ERROR = "error"
    HANG = "hang"


@dataclass(frozen=True)
class PromptScript:
    """How one prompt behaves: *run_s* virtual seconds from start to end, *steps* progress
    messages evenly spread over it (HANG: the steps, then silence until interrupted)."""

    outcome: Outcome = Outcome.SUCCESS
    run_s: float = 3.0
    steps: int = 5
    error_message: str = LORA_ERROR


@dataclass(eq=False)
class FakePrompt:
    """One queued copy of a prompt (a re-POST of the same id is a second copy)."""

    number: float
    seq: int
    prompt_id: str
    graph: dict[str, Any]
    client_id: str | None
    script: PromptScript
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    interrupted: bool = False
    killed: bool = False
    cached: list[str] = field(default_factory=list)  # execution_cached's nodes
    preview_method: str | None = None  # extra_data.preview_method of its POST

    def node_of(self, class_type: str) -> str:
        return next(
            (nid for nid, n in self.graph.items() if n.get("class_type") == class_type), "?"
        )

    def queue_item(self) -> list[Any]:
        outputs = [self.node_of("SaveImage")]
        return [self.number, self.prompt_id, self.graph, {"client_id": self.client_id}, outputs]


class FakeComfy:
    """State and GPU worker; HTTP routes in ``comfy_http``, sockets in ``comfy_ws``."""

    def __init__(
        self,
        *,
        checkpoints: tuple[str, ...] = DEFAULT_CHECKPOINTS,
        loras: tuple[str, ...] = DEFAULT_LORAS,
        parallel: int = 1,
        object_info_style: str = "v1",
        tag: str = "",
        checkpoint_switch_s: float = 0.0,
        lora_switch_s: float = 0.0,
        cache_lru: int = 1,
    ) -> None:
        self.checkpoints = list(checkpoints)
        self.loras = list(loras)
        self.parallel = parallel
        self.object_info_style = object_info_style
        self.tag = tag  # in every picture's bytes: two fakes never save the same picture
        # ComfyUI's node cache (docs/comfyui.md, C27): a loader whose inputs match one of
        # the last *cache_lru* runs is not re-run (execution_cached names it); one that
        # does run costs its switch time. 1 is the classic cache (the last prompt only).
        self.checkpoint_switch_s = checkpoint_switch_s
        self.lora_switch_s = lora_switch_s
        self.cache_lru = cache_lru
        self.version = "0.3.64"
        self.argv = ["main.py", "--listen", "127.0.0.1"] + (
            ["--cache-lru", str(cache_lru)] if cache_lru > 1 else []
        )
        self.jobs_api = False  # True: a server after 0.3.64 (GET /api/jobs answers)
        self.preview_method = "none"  # the server's --preview-method
        self.previews_sent = 0
        self._preview_sizes = itertools.cycle(PREVIEW_SIZES)
        self.warm: list[tuple[str, str]] = []  # (checkpoint, LoRA) runs, newest first
        self.switch_time_s = 0.0  # total time spent loading models, for benchmarks
        self.default_script = PromptScript()
        self.sockets = FakeSockets(self.queue_remaining, lambda: self.unreachable)
        self.unreachable = False
        self.http_500_next = 0
        self.answer_lost_next = 0  # POST /prompt queues the prompt, then answers 502
        self.fail_next_prompts = 0  # the next prompts end in a node's execution_error
        self.latency_s: dict[str, float] = {}  # "METHOD /path" (no /api) -> seconds
        self.outputs_lost = False
        self.pending: list[FakePrompt] = []
        self.running: list[FakePrompt] = []
        self.history: dict[str, dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}
        self.counter = 0
        self._seq = 0
        self._file_counter = 0
        self._scripts: dict[str, PromptScript] = {}
        self._scripts_in_turn: list[PromptScript] = []
        self._turn = 0
        self.prompt_overrides: list[tuple[int, Any]] = []
        self._wakeup = trio.Event()
        # records
        self.requests: list[tuple[str, str, Any]] = []
        self.submitted: list[FakePrompt] = []
        self.deleted: list[str] = []
        self.interrupted: list[str] = []  # prompts actually interrupted
        self.interrupt_requests: list[str | None] = []  # every POST /interrupt, None = bare
        self.bare_interrupts = 0
        self.history_deleted: list[str] = []
        self.job_cancels: list[str] = []  # POST /api/jobs/{id}/cancel (jobs_api servers)
        self.saved: list[tuple[str, str]] = []  # (prompt_id, filename) of every picture saved
        self.started: list[str] = []
        self.peak_on_server = 0

    # -- wiring -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The GPU worker(s) and the sockets' tasks; start with ``nursery.start(fake.run)``."""
        async with trio.open_nursery() as nursery:
            self.sockets.attach(nursery)
            for _ in range(self.parallel):
                nursery.start_soon(self._worker)
            task_status.started()
            await trio.sleep_forever()

    def open_ws(self, client_id: str) -> AbstractAsyncContextManager[WebSocketConnection]:
        """A ``comfy.follower.OpenWebsocket``; refused while ``unreachable``."""
        return self.sockets.open_ws(client_id)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        """The ``httpx.MockTransport`` handler (every route also under ``/api``)."""
        return await handle_request(self, request)

    # -- knobs --------------------------------------------------------------------------

    def script(self, prompt_id: str, script: PromptScript) -> None:
        self._scripts[prompt_id] = script

    def script_in_turn(self, scripts: list[PromptScript]) -> None:
        """Prompts without a script of their own take these in turn, round and round."""
        self._scripts_in_turn = list(scripts)
        self._turn = 0

    def _next_in_turn(self) -> PromptScript | None:
        if not self._scripts_in_turn:
            return None
        script = self._scripts_in_turn[self._turn % len(self._scripts_in_turn)]
        self._turn += 1
        return script

    def reject_next_with(self, status: int, body: Any) -> None:
        """The next POST /prompt answers *status* with *body* (dict → JSON, str → text)."""
        self.prompt_overrides.append((status, body))

    def drop_websockets(self) -> None:
        self.sockets.drop_all()

    def half_open(self) -> None:
        self.sockets.half_open()

    def restart(self) -> None:
        """ComfyUI restarted: sockets gone, running prompt killed, queue and history
        forgotten, the counter back to 0; files on disk stay."""
        self.sockets.drop_all()
        for item in self.running:
            item.killed = True
            item.scope.cancel()
        self.pending.clear()
        self.history.clear()
        self.counter = 0
        self.warm.clear()  # a new process: nothing loaded

    async def send_raw(self, frame: str | bytes, *, client_id: str | None = None) -> None:
        """Send *frame* verbatim to one clientId's socket, or to every socket."""
        if client_id is None:
            await self.sockets.broadcast(frame)
        else:
            await self.sockets.send(client_id, frame)

    # -- queue --------------------------------------------------------------------------

    def queue_remaining(self) -> int:
        return len(self.pending) + len(self.running)

    async def _broadcast_status(self) -> None:
        status = {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}
        await self.sockets.broadcast({"type": "status", "data": status})

    async def enqueue(self, body: dict[str, Any]) -> FakePrompt:
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        number = body["number"] if isinstance(body.get("number"), int | float) else self.counter
        self.counter += 1
        self._seq += 1
        script = self._scripts.get(prompt_id) or self._next_in_turn() or self.default_script
        if self.fail_next_prompts > 0:
            self.fail_next_prompts -= 1
            script = PromptScript(outcome=Outcome.ERROR, run_s=script.run_s)
        item = FakePrompt(
            number, self._seq, prompt_id, body["prompt"], body.get("client_id"), script
        )
        extra = body.get("extra_data")
        if isinstance(extra, dict) and isinstance(extra.get("preview_method"), str):
            item.preview_method = extra["preview_method"]
        self.pending.append(item)
        self.submitted.append(item)
        self.peak_on_server = max(self.peak_on_server, self.queue_remaining())
        await self._broadcast_status()  # ComfyUI sends status on put() ...
        # Wake every idle worker; each one waits on the event current when it went idle.
        self._wakeup.set()
        self._wakeup = trio.Event()
        return item

    async def _worker(self) -> None:
        while True:
            while not self.pending:
                await self._wakeup.wait()
            item = min(self.pending, key=lambda p: (p.number, p.seq))
            self.pending.remove(item)
            self.running.append(item)
            self.started.append(item.prompt_id)
            await self._execute(item)

    def _data(self, item: FakePrompt, **extra: Any) -> dict[str, Any]:
        return {"prompt_id": item.prompt_id, **extra}

    def _stamp(self) -> int:
        return int(trio.current_time() * 1000)

    async def _to(self, item: FakePrompt, kind: str, data: dict[str, Any]) -> None:
        """Route like ComfyUI: to the submitter; without client_id only progress is sent,
        and to everyone (transcript g)."""
        message = {"type": kind, "data": data}
        if item.client_id is not None:
            await self.sockets.send(item.client_id, message)
        elif kind in ("progress", "progress_state"):
            await self.sockets.broadcast(message)

    def _models(self, item: FakePrompt) -> tuple[str, str]:
        def name(class_type: str, field: str) -> str:
            node = item.graph.get(item.node_of(class_type), {})
            return str(node.get("inputs", {}).get(field, ""))

        return name("CheckpointLoaderSimple", "ckpt_name"), name("LoraLoader", "lora_name")

    def _cached_loaders(self, item: FakePrompt) -> list[str]:
        """The loader nodes this run finds in the cache; the run enters the cache."""
        models = self._models(item)
        checkpoint = models[0]
        recent = self.warm[: self.cache_lru]
        cached = []
        if any(ckpt == checkpoint for ckpt, _ in recent):
            cached.append(item.node_of("CheckpointLoaderSimple"))
            if models in recent:  # a LoRA's output depends on the checkpoint's too
                cached.append(item.node_of("LoraLoader"))
        if models in self.warm:
            self.warm.remove(models)
        self.warm.insert(0, models)
        del self.warm[max(self.cache_lru, 8) :]
        return cached

    def _switch_s(self, item: FakePrompt, cached: list[str]) -> float:
        switch = 0.0
        if item.node_of("CheckpointLoaderSimple") not in cached:
            switch += self.checkpoint_switch_s
        if item.node_of("LoraLoader") not in cached:
            switch += self.lora_switch_s
        return switch

    async def _execute(self, item: FakePrompt) -> None:
        await self._broadcast_status()  # ... and again on get() (transcript a)
        item.cached = self._cached_loaders(item)
        start = ["execution_start", self._data(item, timestamp=self._stamp())]
        cached = ["execution_cached", self._data(item, nodes=item.cached, timestamp=self._stamp())]
        for kind, data in (start, cached):
            await self._to(item, kind, data)
        result: tuple[str, dict[str, Any], dict[str, Any]] | None = None
        with item.scope:
            result = await self._perform(item)
        if item.killed:  # restart(): the process died, nothing more is sent or stored
            self.running.remove(item)
            return
        if result is None:  # interrupted (transcript d)
            sampler = item.node_of("KSampler")
            data = self._data(
                item, node_id=sampler, node_type="KSampler", executed=[], timestamp=self._stamp()
            )
            result = ("execution_interrupted", data, {})
        final, data, outputs = result
        await self._to(item, final, data)
        ok = final == "execution_success"
        # Like ComfyUI's task_done: leaving the queue and entering history is one step, so
        # GET /queue + GET /history never see the prompt in neither.
        self.running.remove(item)
        self.history[item.prompt_id] = {
            "prompt": item.queue_item(),
            "outputs": outputs,
            "status": {
                "status_str": "success" if ok else "error",
                "completed": ok,
                "messages": [start, cached, [final, data]],
            },
            "meta": {},
        }
        await self._broadcast_status()
        await self._to(item, "executing", {"node": None, "prompt_id": item.prompt_id})

    async def _perform(self, item: FakePrompt) -> tuple[str, dict[str, Any], dict[str, Any]]:
        script = item.script
        sampler, lora = item.node_of("KSampler"), item.node_of("LoraLoader")
        for node in (item.node_of("CheckpointLoaderSimple"), lora):
            if node in item.cached:  # ComfyUI sends no `executing` for a cached node
                continue
            await self._to(item, "executing", self._data(item, node=node, display_node=node))
        switch = self._switch_s(item, item.cached)
        if switch:
            self.switch_time_s += switch
            await trio.sleep(switch)
        if script.outcome is Outcome.ERROR:
            await trio.sleep(script.run_s)
            return (
                "execution_error",
                self._data(
                    item,
                    node_id=lora,
                    node_type="LoraLoader",
                    executed=[],
                    exception_message=script.error_message,
                    exception_type="safetensors._safetensors_rust.SafetensorError",
                    traceback=['  File "/srv/ComfyUI/execution.py", line 496, in execute\n'],
                    current_inputs={},
                    current_outputs=[],
                    timestamp=self._stamp(),
                ),
                {},
            )
        await self._to(item, "executing", self._data(item, node=sampler, display_node=sampler))
        started = trio.current_time()
        previews = self._previews_on(item)
        for step in range(1, script.steps + 1):  # sleep_until: exact end times, no float drift
            await trio.sleep_until(started + script.run_s * step / script.steps)
            await self._to(item, "progress_state", self._data(item, nodes={}))
            if previews:  # event 4 just before the step's progress (transcript k) ...
                await self._preview(item, sampler, step, metadata=True)
            await self._to(
                item, "progress", self._data(item, value=step, max=script.steps, node=sampler)
            )
            if previews:  # ... event 1 just after it
                await self._preview(item, sampler, step, metadata=False)
        if script.outcome is Outcome.HANG:
            await trio.sleep_forever()
        save = item.node_of("SaveImage")
        for node in (item.node_of("VAEDecode"), save):
            await self._to(item, "executing", self._data(item, node=node, display_node=node))
        prefix = item.graph.get(save, {}).get("inputs", {}).get("filename_prefix", "ComfyUI")
        self._file_counter += 1
        filename = f"{prefix}_{self._file_counter:05d}_.png"
        self.files[filename] = PNG_MAGIC + (self.tag + filename).encode()
        self.saved.append((item.prompt_id, filename))
        outputs = {save: {"images": [{"filename": filename, "subfolder": "", "type": "output"}]}}
        await self._to(
            item, "executed", self._data(item, node=save, display_node=save, output=outputs[save])
        )
        return "execution_success", self._data(item, timestamp=self._stamp()), outputs

    def _previews_on(self, item: FakePrompt) -> bool:
        """The server's flag decides on 0.3.64; a newer server also takes the prompt's
        ``extra_data.preview_method`` (and its flag only sets the default)."""
        if self.jobs_api and item.preview_method is not None:
            return item.preview_method in PREVIEW_METHODS
        return self.preview_method in PREVIEW_METHODS

    async def _preview(self, item: FakePrompt, node: str, step: int, *, metadata: bool) -> None:
        wanted = self.sockets.wants_metadata(item.client_id)
        if metadata not in wanted:
            return
        size = next(self._preview_sizes)
        image = JPEG_MAGIC + f"{self.tag}preview {item.prompt_id} {step}".encode()
        if metadata:
            meta = {
                "node_id": node,
                "prompt_id": item.prompt_id,
                "display_node_id": node,
                "parent_node_id": None,
                "real_node_id": node,
                "image_type": "image/jpeg",
            }
            raw = json.dumps(meta).encode()
            head = struct.pack(">II", 4, len(raw)) + raw
        else:
            head = struct.pack(">II", 1, 1)  # PREVIEW_IMAGE, JPEG
        frame = head + image + b"\0" * max(0, size - len(head) - len(image))
        self.previews_sent += wanted.count(metadata)
        await self.sockets.send_preview(item.client_id, metadata=metadata, frame=frame)

    def interrupt(self, prompt_id: str | None) -> None:
        """POST /interrupt: targeted, or (no prompt_id) whatever runs, like ComfyUI."""
        self.interrupt_requests.append(prompt_id)
        if prompt_id is None:
            self.bare_interrupts += 1
        for item in self.running:
            if prompt_id is None or item.prompt_id == prompt_id:
                self.interrupted.append(item.prompt_id)
                item.interrupted = True
                item.scope.cancel()

    def cancel_job(self, prompt_id: str) -> bool:
        """POST /api/jobs/{id}/cancel: dequeue it if pending, interrupt it only if it runs."""
        self.job_cancels.append(prompt_id)
        if any(item.prompt_id == prompt_id for item in self.pending):
            self.delete_pending(prompt_id)
            return True
        for item in self.running:
            if item.prompt_id == prompt_id:
                self.interrupted.append(prompt_id)
                item.interrupted = True
                item.scope.cancel()
                return True
        return False

    def delete_pending(self, prompt_id: str) -> None:
        """Remove the first pending copy only, like ComfyUI (docs/comfyui.md, C16)."""
        for item in self.pending:
            if item.prompt_id == prompt_id:
                self.pending.remove(item)
                self.deleted.append(prompt_id)
                return

    def image_for(self, filename: str) -> bytes | None:
        return None if self.outputs_lost else self.files.get(filename)


@asynccontextmanager
async def open_fake_comfy(**options: Any) -> AsyncIterator[FakeComfy]:
    """A started ``FakeComfy`` for one test body (fixtures use ``fake_comfy`` instead)."""
    fake = FakeComfy(**options)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.run)
        yield fake
        nursery.cancel_scope.cancel()
