"""Warm-model placement: GPU time lost to model switches, today's placement beside it.

The bot's real ``ServerPool`` drives fake ComfyUI servers that pay for loading models as
a real ComfyUI 0.3.64 did (CPU, 64×64, 2 steps; docs/comfyui.md, C27): a run with the
same checkpoint and LoRA as the server's last one takes ``WARM_S``; a new LoRA adds
``LORA_SWITCH_S``, a new checkpoint ``CHECKPOINT_SWITCH_S`` more (the classic cache keeps
only the last prompt). Personas take turns over two checkpoints, each with a LoRA of its
own. Jobs arrive as users do (seeded): sessions of a few pictures of one persona, started
at random and overlapping, at about 90 % of what the servers can draw warm; they go
through the bot's path: a FIFO queue, two workers per slot, the pool's wait for a place.

Each setup runs twice on the same arrivals: with warm placement (the bot) and with
``prefer_warm=False`` (arrival order, least loaded: the placement before it). Figures:
switch time (the fakes' own count of loading), makespan (first arrival to last picture)
and the p99 wait (arrival to the prompt handed to a server), over five arrival streams
(times summed, waits pooled). The runs are in trio's
virtual time (``MockClock``): the figures are properties of the placement, the same on
any machine, and the benchmark takes seconds.

    .venv/bin/python -m benchmarks.placement
"""

from __future__ import annotations

import random
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import trio
from trio.testing import MockClock

from benchmarks.report import Report, machine_line, percentile, print_report
from bot.pictures.servers import Server, ServerPool
from comfy import ComfyClient, Follower, WorkflowTemplate
from comfy.servers import parse_servers
from comfy.workflow import PromptParams
from tests.fakes.comfy import FakeComfy, PromptScript
from tests.fakes.comfy_fixtures import NoJitter
from tests.harness import comfy_name, host_router

WORKFLOW: Final = Path(__file__).resolve().parent.parent / "workflows" / "sdxl_lora.json"
WARM_S: Final = 2.4  # same checkpoint and LoRA: 2.3-2.5 s a prompt
LORA_SWITCH_S: Final = 0.9  # two LoRAs alternating: +38 % over six prompts
CHECKPOINT_SWITCH_S: Final = 1.35  # two checkpoints alternating: +93 % (the LoRA again too)
LOAD: Final = 0.9  # arrivals per second over what the servers draw warm
JOBS_PER_SERVER: Final = 40
SESSION_MAX: Final = 6  # pictures one user asks for in a row
SESSION_GAP_S: Final = (2.0, 6.0)  # between them
SEEDS: Final = range(1, 6)  # five arrival streams per setup, their figures summed
TIMEOUT_S: Final = 3600.0


@dataclass(frozen=True, slots=True)
class Setup:
    servers: int
    personas: int
    cache_lru: int = 1  # ComfyUI's --cache-lru (1: the classic cache)

    @property
    def label(self) -> str:
        cache = f", --cache-lru {self.cache_lru}" if self.cache_lru > 1 else ""
        servers = f"{self.servers} server{'s' if self.servers > 1 else ''}"
        personas = f"{self.personas} persona{'s' if self.personas > 1 else ''}"
        return f"{servers} × {personas}{cache}"


@dataclass(frozen=True, slots=True)
class Outcome:
    switch_s: float
    makespan_s: float
    waits: tuple[float, ...]
    pictures: int

    @property
    def p99_wait_s(self) -> float:
        return percentile(self.waits, 99)

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(
            self.switch_s + other.switch_s,
            self.makespan_s + other.makespan_s,
            self.waits + other.waits,
            self.pictures + other.pictures,
        )


def persona_graph(template: WorkflowTemplate, persona: int, seed: int) -> dict[str, object]:
    checkpoint = f"base_{persona % 2}.safetensors"  # two checkpoints, personas take turns
    return template.build(
        PromptParams(checkpoint, f"persona_{persona}.safetensors", 0.8, 0.8, "p", "", seed)
    )


def arrivals(setup: Setup, seed: int) -> list[tuple[float, int]]:
    """(time, persona) of every job, in time order: users' sessions that start as a
    Poisson stream, each a run of 1-6 pictures of one persona a few seconds apart (a
    picture, then «another variant»), overlapping into a mixed stream at LOAD of what
    the servers draw warm."""
    rng = random.Random(seed)
    total = JOBS_PER_SERVER * setup.servers
    mean_run = (1 + SESSION_MAX) / 2
    session_rate = LOAD * setup.servers / WARM_S / mean_run
    at, jobs = 0.0, []
    while len(jobs) < total:
        at += rng.expovariate(session_rate)
        persona, when = rng.randrange(setup.personas), at
        for _ in range(rng.randint(1, SESSION_MAX)):
            jobs.append((when, persona))
            when += rng.uniform(*SESSION_GAP_S)
    return sorted(jobs)[:total]


async def run(setup: Setup, prefer_warm: bool, seed: int) -> Outcome:
    template = WorkflowTemplate.from_file(WORKFLOW)
    fakes = [
        FakeComfy(
            checkpoints=tuple(f"base_{i}.safetensors" for i in range(2)),
            loras=tuple(f"persona_{i}.safetensors" for i in range(setup.personas)),
            lora_switch_s=LORA_SWITCH_S,
            checkpoint_switch_s=CHECKPOINT_SWITCH_S,
            cache_lru=setup.cache_lru,
            tag=str(index),
        )
        for index in range(setup.servers)
    ]
    for fake in fakes:
        fake.default_script = PromptScript(run_s=WARM_S, steps=2)
    names = [comfy_name(i) for i in range(1, setup.servers + 1)]
    specs = parse_servers(",".join(f"http://{n}#1" for n in names), default_slots=1)
    routes = {n.split(":")[0]: f.handler for n, f in zip(names, fakes, strict=True)}
    waits: list[float] = []
    finished: list[float] = []
    jobs = arrivals(setup, seed)
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        for fake in fakes:
            await nursery.start(fake.run)
        servers = []
        for spec, fake in zip(specs, fakes, strict=True):
            http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=spec.url, transport=host_router(routes))
            )
            client = ComfyClient(http)
            follower = Follower(client, fake.open_ws, rng=NoJitter())
            servers.append(Server(spec, client, follower, random.Random(0)))
        pool = ServerPool(servers, prefer_warm=prefer_warm)
        await nursery.start(pool.run)
        await trio.sleep(1)
        start = trio.current_time()
        send, receive = trio.open_memory_channel[tuple[float, int, int]](len(jobs))

        async def worker() -> None:
            async for arrived, persona, seed in receive:
                handed: list[float] = []
                await pool.generate(
                    persona_graph(template, persona, seed),
                    prompt_id=str(uuid.UUID(int=seed + 1)),
                    timeout_s=TIMEOUT_S,
                    on_server=lambda _, handed=handed: handed.append(trio.current_time()),
                )
                waits.append(handed[0] - arrived)
                finished.append(trio.current_time())

        async with trio.open_nursery() as workers:
            for _ in range(2 * setup.servers):  # the bot's two workers per slot
                workers.start_soon(worker)
            async with send:
                for seed, (at, persona) in enumerate(jobs):
                    await trio.sleep_until(start + at)
                    await send.send((trio.current_time(), persona, seed))
        nursery.cancel_scope.cancel()
    return Outcome(
        switch_s=sum(fake.switch_time_s for fake in fakes),
        makespan_s=max(finished) - start - jobs[0][0],
        waits=tuple(waits),
        pictures=len(finished),
    )


def compare(report: Report, setup: Setup) -> None:
    label = setup.label
    ours, today = (
        sum(
            (trio.run(run, setup, warm, seed, clock=MockClock(autojump_threshold=0))
             for seed in SEEDS),
            Outcome(0.0, 0.0, (), 0),
        )
        for warm in (True, False)
    )  # fmt: skip
    assert ours.pictures == today.pictures == JOBS_PER_SERVER * setup.servers * len(SEEDS)
    switch = report.add(f"{label}: switch time, warm", ours.switch_s, "s")
    report.add(f"{label}: switch time, today", today.switch_s, "s")
    makespan = report.add(f"{label}: makespan, warm", ours.makespan_s, "s")
    report.add(f"{label}: makespan, today", today.makespan_s, "s")
    wait = report.add(f"{label}: p99 wait for a server, warm", ours.p99_wait_s, "s")
    report.add(f"{label}: p99 wait for a server, today", today.p99_wait_s, "s")
    if setup.personas == 1:
        report.check(switch, "= today's", passed=ours.switch_s == today.switch_s)
        report.check(makespan, "= today's", passed=ours.makespan_s == today.makespan_s)
        return
    switch_ratio = ours.switch_s / today.switch_s
    makespan_ratio = ours.makespan_s / today.makespan_s
    report.notes.append(
        f"{label}: switch time {switch_ratio:.2f}× today's, makespan {makespan_ratio:.2f}×,"
        f" p99 wait {ours.p99_wait_s:.1f} s against {today.p99_wait_s:.1f} s"
    )
    report.check(switch, "≤ 0.3× today's", passed=switch_ratio <= 0.3)
    report.check(makespan, "≤ 0.8× today's", passed=makespan_ratio <= 0.8)
    bound = today.p99_wait_s + CHECKPOINT_SWITCH_S + LORA_SWITCH_S
    report.check(wait, "≤ today's p99 + one switch", passed=ours.p99_wait_s <= bound)


def measure_in_virtual_time() -> Report:
    report = Report("placement: model switches with warm placement and with today's")
    for setup in (Setup(1, 1), Setup(2, 4), Setup(4, 8), Setup(2, 4, cache_lru=2)):
        compare(report, setup)
    report.notes.append(machine_line())
    return report


async def measure() -> Report:
    """For run_all: the virtual-time runs need trio loops of their own, so a thread."""
    return await trio.to_thread.run_sync(measure_in_virtual_time)


def main() -> None:
    print_report(measure_in_virtual_time())


if __name__ == "__main__":
    main()
