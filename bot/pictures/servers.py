"""The ComfyUI servers of one process, and the one ``generate`` the workers call.

Each server has its own client, follower (websocket, heartbeat, reconnect,
reconciliation) and ``comfy.Comfy``; the followers run in the root nursery
(``ServerPool.run``), so a server that is down only keeps its own tasks busy.

The pool is the one owner of two things: a server's slots (how many of this bot's
prompts it holds at once) and the wait for a server (``WAIT_FOR_SERVER_S`` while none is
reachable). ``ServerPool.generate`` places a job by the pure rules of
:mod:`bot.pictures.placement` and waits, in the bot, while every capable server is full
or none is connected. Among the jobs waiting at once, ``placement.assign`` says which
takes a free slot, preferring a server where the job's models are still loaded (each
server's :class:`~bot.pictures.warmth.Warmth`, fed from what ran there and ComfyUI's
``execution_cached``), never holding a job back more than one switch cost. The job's one
budget
(``COMFYUI_TIMEOUT_SECONDS``) starts when it first reaches a server and covers every
server it is tried on; the prompt keeps its ``prompt_id`` throughout, so the charge stays
one (docs/architecture.md, §7). A server is left behind when:

* its websocket stays lost for ``FAILOVER_AFTER_S`` while the job is on it and another
  capable server is healthy (a shorter blip, or a loss with nowhere else to go, is the
  follower's to reconcile when the server is back, as with one server), or
* a call to it fails as ``ComfyUnavailable``.

It is then marked down for a backoff, the prompt is remembered as abandoned there (in
SQLite too, so a restart does not forget it) and deleted or interrupted as soon as the
server is healthy again, whether its websocket dropped or only its HTTP failed, so it is
never drawn to the end twice; and the job moves on to another capable server if there is
one; with none left, the job fails with the error that ended its last attempt. A
``value_not_in_list`` rejection re-reads that server's model list and places the job
again.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import random
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from bot.pictures.placement import Placement, ServerView, Verdict, Waiter, assign, place
from bot.pictures.warmth import Warmth
from comfy import (
    Comfy,
    ComfyClient,
    ComfyError,
    ComfyUnavailable,
    Follower,
    GeneratedImage,
    GenerationTimedOut,
    NotConnected,
    ProgressStage,
    PromptProgress,
    PromptRejected,
)
from comfy.follower import probe_prompt
from comfy.generate import RESUBMIT_MIN_REMAINING_S
from comfy.preflight import MODEL_INPUTS, model_lists
from comfy.protocol import Signal
from comfy.servers import ServerSpec
from common.backoff import backoff_delays
from common.logfields import fields
from common.metrics import (
    COMFY_PROMPT_SECONDS,
    COMFY_QUEUE,
    COMFY_RUNS,
    COMFY_SLOT_WAIT_SECONDS,
    COMFY_SLOTS,
    COMFY_SLOTS_BUSY,
    COMFY_SWITCH_SECONDS,
    COMFY_UP,
)
from store import AbandonedPrompts, is_transient, utc_now

__all__ = [
    "FAILOVER_AFTER_S",
    "MODELS_REFRESH_S",
    "WAIT_FOR_SERVER_S",
    "Server",
    "ServerPool",
    "model_needs",
]

log = logging.getLogger(__name__)

# A lost websocket that is back within this is a blip (or a restart the follower
# reconciles); longer, and the jobs on that server move. Above the follower's first
# reconnect waits (1-2 s, then 2-4 s).
FAILOVER_AFTER_S: Final = 5.0
# With no server healthy (its websocket connected, not in a backoff), a job waits this
# long for one before it fails: the one wait for a server in the bot.
WAIT_FOR_SERVER_S: Final = 10.0
MODELS_REFRESH_S: Final = 300.0  # each server's model list is read again this often
MODELS_TIMEOUT_S: Final = 10.0
DOWN_BACKOFF_INITIAL_S: Final = 2.0  # a server marked down is not tried again for this,
DOWN_BACKOFF_MAXIMUM_S: Final = 60.0  # doubling while it keeps failing
CLEANUP_TIMEOUT_S: Final = 5.0


def _nothing() -> None:
    pass


def model_needs(graph: dict[str, Any]) -> tuple[str, ...]:
    """The checkpoint and LoRA files a filled-in workflow loads, in graph order."""
    needs: list[str] = []
    for node in graph.values():
        if not isinstance(node, dict):
            continue
        inputs = node.get("inputs")
        for class_type, input_name in MODEL_INPUTS:
            if node.get("class_type") == class_type and isinstance(inputs, dict):
                value = inputs.get(input_name)
                if isinstance(value, str) and value not in needs:
                    needs.append(value)
    return tuple(needs)


def loader_nodes(graph: dict[str, Any]) -> frozenset[str]:
    """The ids of the nodes that load those files (what ``execution_cached`` may name)."""
    loaders = {class_type for class_type, _ in MODEL_INPUTS}
    return frozenset(
        node_id
        for node_id, node in graph.items()
        if isinstance(node, dict) and node.get("class_type") in loaders
    )


class _ServerLost(Exception):
    """The job's server stayed unreachable for ``FAILOVER_AFTER_S``."""


@dataclass(eq=False)
class Server:
    """One ComfyUI server and what the pool knows of it."""

    spec: ServerSpec
    client: ComfyClient
    follower: Follower
    rng: random.Random
    comfy: Comfy = field(init=False)
    busy: int = 0  # this bot's jobs on it: the pool's count of its slots in use
    models: frozenset[str] | None = None
    down_until: float = -math.inf
    abandoned: set[str] = field(default_factory=set)
    refresh_now: trio.Event = field(default_factory=trio.Event)
    warmth: Warmth = field(default_factory=Warmth)  # what ComfyUI has loaded for us
    running_since: list[float] = field(default_factory=list)  # our jobs' hand-over times
    last_run_at: float = -math.inf  # when our last job there ended
    _downs: Iterator[float] | None = None

    def __post_init__(self) -> None:
        self.comfy = Comfy(self.client, self.follower)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def healthy(self) -> bool:
        return self.follower.connected and trio.current_time() >= self.down_until

    def view(self, *, warmth: bool = True) -> ServerView:
        return ServerView(
            name=self.name,
            healthy=self.healthy,
            slots=self.spec.slots,
            busy=self.busy,
            queue_remaining=self.follower.queue_remaining,
            models=self.models,
            warm=self.warmth.warm if warmth else frozenset(),
            switch_s=self.warmth.switch_s if warmth else 0.0,
            free_in_s=self._free_in_s(),
            last_run_at=self.last_run_at,
        )

    def _free_in_s(self) -> float:
        """0 with a free slot; else about when its oldest job should end."""
        if self.busy < self.spec.slots or not self.running_since:
            return 0.0
        elapsed = trio.current_time() - min(self.running_since)
        return max(0.0, self.warmth.expected_s - elapsed)

    def mark_down(self, why: str) -> None:
        if self._downs is None:
            self._downs = backoff_delays(
                initial_s=DOWN_BACKOFF_INITIAL_S,
                maximum_s=DOWN_BACKOFF_MAXIMUM_S,
                jitter="equal",
                rng=self.rng,
            )
        delay = next(self._downs)
        self.down_until = trio.current_time() + delay
        log.warning(
            "comfy_server_down",
            extra=fields(server=self.name, retry_in_s=round(delay, 1), reason=why),
        )

    def mark_up(self) -> None:
        self._downs = None  # the next failure starts the backoff afresh


class ServerPool:
    """Every ComfyUI server of the process, their slots, and the wait for one."""

    def __init__(
        self,
        servers: Sequence[Server],
        *,
        remember: AbandonedPrompts | None = None,
        prefer_warm: bool = True,
        on_waiting: Callable[[], None] = _nothing,
    ) -> None:
        """*remember* keeps the copies waiting to be tidied across restarts; without
        *prefer_warm*, jobs take free slots in arrival order only (the benchmark's
        baseline); *on_waiting* is called whenever a job starts or stops waiting for a
        slot (the queue's places count those jobs)."""
        if not servers:
            raise ValueError("a server pool needs at least one server")
        self.servers = tuple(servers)
        self._prefer_warm = prefer_warm
        self._on_waiting = on_waiting
        self._waiters: dict[int, Waiter] = {}
        self._tickets = itertools.count()
        self._by_name = {server.name: server for server in self.servers}
        self._changed = trio.Event()
        self._remember = remember
        if remember is not None:
            for name, prompt_ids in remember.by_server().items():
                if name in self._by_name:
                    self._by_name[name].abandoned |= prompt_ids

    @property
    def slots(self) -> int:
        return sum(server.spec.slots for server in self.servers)

    def server(self, name: str | None) -> Server | None:
        return self._by_name.get(name) if name is not None else None

    def sample_metrics(self) -> None:
        """Set the servers' gauges to what the pool knows now (the heartbeat calls it)."""
        for server in self.servers:
            view = server.view()
            COMFY_UP.labels(server=view.name).set(1 if view.healthy else 0)
            COMFY_SLOTS.labels(server=view.name).set(view.slots)
            COMFY_SLOTS_BUSY.labels(server=view.name).set(view.busy)
            COMFY_QUEUE.labels(server=view.name).set(view.queue_remaining)
            COMFY_SWITCH_SECONDS.labels(server=view.name).set(server.warmth.switch_s)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Every server's follower and upkeep; until cancelled."""
        async with trio.open_nursery() as nursery:
            for server in self.servers:
                await nursery.start(server.follower.run)
                nursery.start_soon(self._keep, server, name=f"comfy-server-{server.name}")
            task_status.started()

    # -- upkeep ---------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _keep(self, server: Server) -> None:
        """Per server: wake waiters on every connect and loss; tidy up; read the models."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._refresh_models, server)
            nursery.start_soon(self._tidy, server)
            while True:
                await server.follower.wait_connected()
                server.mark_up()
                server.refresh_now.set()
                self._notify()
                await server.follower.wait_disconnected()
                server.warmth.forget()  # a restart, or not: what it had loaded is unknown
                self._notify()

    def _abandon(self, server: Server, prompt_id: str) -> None:
        """A copy of *prompt_id* may be left on *server*: tidy it once the server answers."""
        server.abandoned.add(prompt_id)
        self._write(lambda store: store.add(server.name, prompt_id, now=utc_now()))
        self._notify()

    def _reclaim(self, server: Server, prompt_id: str) -> None:
        """*prompt_id* on *server* is looked after again (tidied, or its job is back)."""
        if prompt_id in server.abandoned:
            server.abandoned.discard(prompt_id)
            self._write(lambda store: store.remove(server.name, prompt_id))

    def _write(self, operation: Callable[[AbandonedPrompts], None]) -> None:
        """The copies' record, for the next start; a locked database costs at most a copy
        left untidied after a restart, so it is logged, not waited for (no await here)."""
        if self._remember is None:
            return
        try:
            operation(self._remember)
        except sqlite3.Error as exc:
            if not is_transient(exc):
                raise
            log.warning("comfy_abandoned_prompt_not_recorded", extra=fields(error=str(exc)))

    async def _refresh_models(self, server: Server) -> None:
        while True:
            with trio.move_on_after(MODELS_REFRESH_S):
                await server.refresh_now.wait()
            server.refresh_now = trio.Event()
            await self._read_models(server)

    async def _read_models(self, server: Server) -> None:
        with trio.move_on_after(MODELS_TIMEOUT_S):
            try:
                files = (await model_lists(server.client)).files
            except ComfyError as exc:
                log.info(
                    "comfy_models_not_read", extra=fields(server=server.name, error=str(exc.detail))
                )
                return
            except Exception:  # a bug below the client must not end the root nursery
                log.exception("comfy_models_not_read", extra=fields(server=server.name))
                return
            server.models = files
            log.debug("comfy_models_read", extra=fields(server=server.name, files=len(files)))
            self._notify()

    async def _tidy(self, server: Server) -> None:
        """Whenever *server* is healthy with copies left on it, tidy them; a failure marks
        it down, and its backoff says when to try again (its websocket may never drop)."""
        while True:
            changed = self._changed
            if server.abandoned and server.healthy:
                if await self._clean_abandoned(server):
                    server.mark_up()
                continue
            with trio.move_on_at(self._next_back_up()):
                await changed.wait()

    @staticmethod
    async def _stop_abandoned(server: Server, prompt_id: str) -> str | None:
        """Stop an abandoned prompt there; what was found, or None when the prompt was
        handed back to the server meanwhile (it is that job's own again)."""
        if await server.follower.jobs_api():  # one atomic call: dequeue, or interrupt
            if prompt_id not in server.abandoned:
                return None
            cancelled = await server.client.cancel_job(prompt_id)
            return "cancelled" if cancelled else "nothing to cancel"
        probe = await probe_prompt(server.client, prompt_id)
        if prompt_id not in server.abandoned:
            return None
        if probe.signal is Signal.SEEN_PENDING:
            await server.client.delete_queued(prompt_id)
        elif probe.signal is Signal.SEEN_RUNNING:
            await server.client.interrupt(prompt_id)
        return probe.signal.value

    async def _clean_abandoned(self, server: Server) -> bool:
        """Prompts left on a server that was lost: never let them draw to the end. True
        when every one was tidied; else the server is marked down (try again later)."""
        for prompt_id in sorted(server.abandoned):
            tidied = False
            with trio.move_on_after(CLEANUP_TIMEOUT_S):
                try:
                    found = await self._stop_abandoned(server, prompt_id)
                    if found is None:
                        continue  # handed back to this server meanwhile: its own now
                    log.info(
                        "comfy_abandoned_prompt_tidied",
                        extra=fields(prompt_id=prompt_id, server=server.name, found=found),
                    )
                    tidied = True
                except ComfyError as exc:
                    log.info(
                        "comfy_abandoned_prompt_not_tidied",
                        extra=fields(prompt_id=prompt_id, server=server.name, error=exc.detail),
                    )
                except Exception:  # a bug below the client must not end the root nursery
                    log.exception(
                        "comfy_abandoned_prompt_not_tidied", extra=fields(prompt_id=prompt_id)
                    )
            if not tidied:
                server.mark_down(f"prompt {prompt_id} left there not tidied yet")
                return False
            self._reclaim(server, prompt_id)
        return True

    # -- one job --------------------------------------------------------------------------

    async def generate(
        self,
        graph: dict[str, Any],
        *,
        prompt_id: str,
        timeout_s: float,
        on_progress: Callable[[PromptProgress], None] | None = None,
        recover: bool = False,
        last_server: str | None = None,
        on_server: Callable[[str], None] | None = None,
        preview_method: str | None = None,
    ) -> GeneratedImage:
        """Draw *graph* as *prompt_id* on whichever server can; see the module docstring.

        Args:
            recover: the prompt may already be on *last_server* (an earlier process handed
                it there): it is looked up there first.
            on_server: called with the server's name before the job is handed to it.
            preview_method: asked of the server for this prompt (``Comfy.generate``).

        Raises:
            ComfyError: the last attempt's error, or ``PromptRejected`` naming the model
                files no healthy server has, or ``ComfyUnavailable`` when no server was
                reachable for ``WAIT_FOR_SERVER_S``.
        """
        needs = model_needs(graph)
        report = on_progress or _ignore
        deadline: float | None = None
        # Its place in the line for a slot, kept when it moves to another server.
        ticket, since = next(self._tickets), trio.current_time()
        # Recovery looks on the job's own server first. A job that names no server we know
        # (a row from before the bot drove several) is looked up wherever it is placed.
        own = self.server(last_server) if recover else None
        look_up = recover
        rejected: set[str] = set()
        resubmits = 1  # a prompt that vanishes (ComfyUI restarted) is submitted again once
        while True:
            if deadline is None:
                server = await self._wait_for_place(
                    Waiter(ticket, needs, since, own.name if own else None), report=report
                )
            else:  # moved on after a failure: the wait counts against its budget
                with trio.move_on_at(deadline) as waiting:
                    server = await self._wait_for_place(
                        Waiter(ticket, needs, since, own.name if own else None), report=report
                    )
                if waiting.cancelled_caught:
                    raise GenerationTimedOut(
                        f"no picture within {timeout_s:g} s (prompt {prompt_id});"
                        " no other ComfyUI server was free in time"
                    )
            if server is None:
                assert own is not None
                self._abandon(own, prompt_id)  # tidied there once it is back
                log.warning(
                    "comfy_job_leaves_unreachable_server",
                    extra=fields(prompt_id=prompt_id, server=own.name),
                )
                own = None  # look_up stays: it may still be anywhere an earlier process put it
                continue
            if deadline is None:
                deadline = trio.current_time() + timeout_s
            # Back on a server it was taken from: the old copy may still be there, so look
            # it up instead of queueing a second one, and keep the tidy-up off it.
            here = look_up or prompt_id in server.abandoned
            self._reclaim(server, prompt_id)
            try:
                return await self._attempt(
                    server,
                    graph,
                    prompt_id,
                    deadline,
                    report,
                    needs,
                    recover=here,
                    resubmits=resubmits,
                    on_server=on_server,
                    preview_method=preview_method,
                )
            except NotConnected as exc:
                # Its websocket was down when the prompt was to be (re)submitted: nothing
                # reached it. A blip (a restart) keeps the job there, as for a job running
                # there; after FAILOVER_AFTER_S it may go elsewhere.
                resubmits = exc.resubmits_left
                own = server
                continue
            except _ServerLost:
                self._abandon(server, prompt_id)
                server.mark_down(f"websocket lost for {FAILOVER_AFTER_S:g} s with a job on it")
                error: ComfyError = ComfyUnavailable(
                    f"ComfyUI server {server.name} lost with prompt {prompt_id} on it"
                    f" ({server.follower.last_error})"
                )
            except ComfyUnavailable as exc:
                self._abandon(server, prompt_id)
                server.mark_down(exc.detail)
                error = exc
            except PromptRejected as exc:
                # value_not_in_list reads "... 'x.safetensors' not in list" (comfy.client)
                if "not in list" not in exc.detail or server.name in rejected:
                    raise
                rejected.add(server.name)
                await self._read_models(server)  # it may have lost a file: look again
                error = exc
            finally:
                self._notify()
            own, look_up = None, False  # where it was is known now: nowhere else
            if not self._may_move(needs, deadline):
                raise error
            log.warning(
                "comfy_job_moves",
                extra=fields(prompt_id=prompt_id, server=server.name, error=str(error)),
            )

    def _may_move(self, needs: Sequence[str], deadline: float) -> bool:
        """Another server may take the job: one is healthy and capable, and time is left."""
        if deadline - trio.current_time() < RESUBMIT_MIN_REMAINING_S:
            return False
        placement = place([server.view() for server in self.servers], needs)
        return placement.verdict in (Verdict.CHOSEN, Verdict.WAIT_FOR_SLOT)

    async def _wait_for_place(
        self, waiter: Waiter, *, report: Callable[[PromptProgress], None]
    ) -> Server | None:
        """A free slot on a capable server, taken; waits in the bot, not on ComfyUI.

        Among the jobs waiting at once, :func:`~bot.pictures.placement.assign` says which
        takes a free slot. With ``waiter.own``, only that server is considered; None if
        it stays unreachable for ``FAILOVER_AFTER_S``.
        """
        own = self._by_name[waiter.own] if waiter.own is not None else None
        no_server_since: float | None = None
        started = trio.current_time()
        self._waiters[waiter.ticket] = waiter
        self._on_waiting()
        try:
            while True:
                changed = self._changed
                candidates = [own] if own is not None else self.servers
                placement = place([server.view() for server in candidates], waiter.needs)
                wake_at = self._next_back_up()
                if placement.verdict is Verdict.CHOSEN:
                    now = trio.current_time()
                    views = [server.view(warmth=self._prefer_warm) for server in self.servers]
                    assignment = assign(list(self._waiters.values()), views, now=now)
                    name = assignment.chosen.get(waiter.ticket)
                    self._mark_held(assignment.held, now)
                    if name is not None:
                        server = self._by_name[name]
                        server.busy += 1
                        COMFY_SLOT_WAIT_SECONDS.observe(now - started)
                        return server
                    wake_at = min(wake_at, assignment.recheck_at)  # another goes first
                if placement.verdict in (Verdict.CHOSEN, Verdict.WAIT_FOR_SLOT):
                    report(
                        PromptProgress(ProgressStage.WAITING_FOR_SLOT, place=self._place_of(waiter))
                    )
                elif placement.verdict is Verdict.MISSING:
                    raise PromptRejected(_missing_detail(placement))
                elif placement.verdict is Verdict.WAIT_FOR_SERVER:
                    now = trio.current_time()
                    no_server_since = now if no_server_since is None else no_server_since
                    limit = FAILOVER_AFTER_S if own is not None else WAIT_FOR_SERVER_S
                    left = no_server_since + limit - now
                    if left <= 0:
                        if own is not None:
                            return None  # its own server stays away: the caller moves on
                        raise ComfyUnavailable(self._none_reachable(limit))
                    report(PromptProgress(ProgressStage.WAITING_FOR_SERVER))
                    wake_at = min(now + left, wake_at)
                if placement.verdict is not Verdict.WAIT_FOR_SERVER:
                    no_server_since = None
                with trio.move_on_at(wake_at):
                    await changed.wait()
        finally:
            del self._waiters[waiter.ticket]
            self._on_waiting()
            self._notify()  # a job that held back for this one may go now

    @property
    def waiting(self) -> int:
        """Jobs waiting in the pool for a slot (they are ahead of the bot's queue)."""
        return len(self._waiters)

    def _place_of(self, waiter: Waiter) -> int:
        """*waiter*'s 1-based place among the jobs waiting for a slot, in arrival order."""
        return 1 + sum(
            (other.since, other.ticket) < (waiter.since, waiter.ticket)
            for other in self._waiters.values()
        )

    def _mark_held(self, held: frozenset[int], now: float) -> None:
        """Stamp the jobs that began holding back now: their bound counts from here."""
        for ticket in held:
            waiter = self._waiters[ticket]
            if waiter.held_since is None:
                self._waiters[ticket] = dataclasses.replace(waiter, held_since=now)

    def _next_back_up(self) -> float:
        """When the first server in a backoff may be tried again (nothing announces it)."""
        now = trio.current_time()
        return min((s.down_until for s in self.servers if s.down_until > now), default=math.inf)

    async def _attempt(
        self,
        server: Server,
        graph: dict[str, Any],
        prompt_id: str,
        deadline: float,
        report: Callable[[PromptProgress], None],
        needs: Sequence[str],
        *,
        recover: bool,
        resubmits: int,
        on_server: Callable[[str], None] | None,
        preview_method: str | None = None,
    ) -> GeneratedImage:
        """One server's try, watched: a lost server cancels it (its cleanup runs there).

        The slot *server* was given is given back however this ends.
        """

        outcome: list[GeneratedImage | ComfyError] = []
        handed_at = trio.current_time()
        server.running_since.append(handed_at)
        try:
            if on_server is not None:
                on_server(server.name)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_server, server, needs, nursery.cancel_scope)
                try:
                    outcome.append(
                        await server.comfy.generate(
                            graph,
                            prompt_id=prompt_id,
                            timeout_s=max(deadline - trio.current_time(), 0.0),
                            on_progress=report,
                            recover=recover,
                            resubmits=resubmits,
                            preview_method=preview_method,
                        )
                    )
                except ComfyError as exc:  # kept out of the nursery's exception group
                    outcome.append(exc)
                nursery.cancel_scope.cancel()
        finally:
            server.busy -= 1
            server.running_since.remove(handed_at)
            server.last_run_at = trio.current_time()
        if not outcome:
            raise _ServerLost()
        if isinstance(outcome[0], ComfyError):
            raise outcome[0]
        image = outcome[0]
        COMFY_PROMPT_SECONDS.labels(server=server.name).observe(trio.current_time() - handed_at)
        loaders = loader_nodes(graph)
        cached = None if image.cached is None else loaders <= set(image.cached)
        server.warmth.ran(tuple(needs), cached=cached, execution_s=image.execution_s)
        warm = "unknown" if cached is None else str(cached).lower()
        COMFY_RUNS.labels(server=server.name, warm=warm).inc()
        return image

    async def _watch_server(
        self, server: Server, needs: Sequence[str], attempt: trio.CancelScope
    ) -> None:
        """Cancel *attempt* once the server's websocket has been lost for
        ``FAILOVER_AFTER_S`` and another capable server is healthy. With none, the job
        stays, as with one server: its follower reconciles it when the server is back."""
        while True:
            await server.follower.wait_disconnected()
            with trio.move_on_after(FAILOVER_AFTER_S):
                await server.follower.wait_connected()
                continue
            while not server.follower.connected:
                if self._elsewhere(server, needs):
                    attempt.cancel()
                    return
                changed = self._changed  # a connect or a loss anywhere, a model list
                with trio.move_on_at(self._next_back_up()):
                    await changed.wait()

    def _elsewhere(self, server: Server, needs: Sequence[str]) -> bool:
        """Another healthy server could take the job now or once it has a free slot."""
        others = [s.view() for s in self.servers if s is not server]
        return place(others, needs).verdict in (Verdict.CHOSEN, Verdict.WAIT_FOR_SLOT)

    def _none_reachable(self, waited_s: float) -> str:
        why = "; ".join(f"{s.name}: {s.follower.last_error}" for s in self.servers)
        return f"no ComfyUI server reachable within {waited_s:g} s ({why})"


def _missing_detail(placement: Placement) -> str:
    files = ", ".join(placement.missing)
    return f"no healthy ComfyUI server has the model file(s) {files}"


def _ignore(_: PromptProgress) -> None:
    pass
