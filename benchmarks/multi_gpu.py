"""Several GPUs: does a burst finish N times sooner on N servers, with no GPU left idle?

One bot process (``python -m bot``) drives 1, 2 and then 4 fake ComfyUI servers on
127.0.0.1, each drawing one prompt at a time in ``RUN_S`` (the same per-job GPU time),
each with ``COMFYUI_CONCURRENCY=2`` slots. ``USERS`` users press ``PER_USER`` replies each
in one burst. Figures:

* makespan: from the presses reaching the bot to the last photo at the Bot API; the
  ratio of 4 servers to 1 (ideal 0.25);
* idle gaps on each server: the next run's start minus the moment that server's GPU was
  free after the previous one, every gap of the burst on every server of the run (the
  target is checked on 4 servers);
* one of 4 servers killed mid-burst (its listener, connections and GPU stop at once,
  after a third of the jobs started): every press gets exactly one photo, every job is
  delivered and charged once.

    .venv/bin/python -m benchmarks.multi_gpu
"""

from __future__ import annotations

import itertools
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from benchmarks.fakes import GpuRun, Ports, Stack, TimedComfy, TimedTelegram, instant_llm
from benchmarks.load import interleave, prepare_replies, press_all, user_ids
from benchmarks.process import bot_environment, running_bot
from benchmarks.report import Figure, Report, machine_line, percentile, print_report
from benchmarks.timeline import idle_gaps
from store import open_store
from tests.fakes.comfy_loopback import serve_fake_comfy
from tests.fakes.loopback_http import serve_handler

__all__ = ["measure"]

RUN_S: Final = 0.25
USERS: Final = 32
PER_USER: Final = 2
SLOTS: Final = 2
SERVER_COUNTS: Final = (1, 2, 4)
KILL_AFTER_FRACTION: Final = 1 / 3  # of the jobs started, when one of 4 servers dies
TARGET_RATIO: Final = 0.27
TARGET_IDLE_P99_MS: Final = 5.0
BURST_TIMEOUT_S: Final = 120.0
SETTLE_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class _Server:
    comfy: TimedComfy
    port: int
    scope: trio.CancelScope  # cancelled: the server is gone, as by a kill


@dataclass(frozen=True, slots=True)
class _Burst:
    makespan_s: float
    runs_by_server: list[list[GpuRun]]
    photos_per_press: Counter[tuple[int, int]]
    presses: int
    delivered_jobs: int
    generated_events: int
    log_problems: int


@asynccontextmanager
async def _servers(count: int) -> AsyncIterator[list[_Server]]:
    async with trio.open_nursery() as nursery:
        servers = []
        for _ in range(count):
            servers.append(await nursery.start(_serve_one))
        yield servers
        nursery.cancel_scope.cancel()


async def _serve_one(*, task_status: trio.TaskStatus[_Server]) -> None:
    comfy = TimedComfy(run_s=RUN_S)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(comfy.run)
            port: int = await nursery.start(serve_fake_comfy, comfy)
            task_status.started(_Server(comfy, port, scope))


async def _kill_when_started(servers: list[_Server], victim: _Server, jobs: int) -> None:
    """Kill *victim* once a share of the jobs has started anywhere."""
    threshold = jobs * KILL_AFTER_FRACTION
    while sum(len(s.comfy.runs) for s in servers) < threshold:  # noqa: ASYNC110 (no event)
        await trio.sleep(0.005)
    victim.scope.cancel()


async def _burst(count: int, *, kill_one: bool = False) -> _Burst:
    jobs = USERS * PER_USER
    telegram = TimedTelegram()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        async with trio.open_nursery() as fakes, _servers(count) as servers:
            telegram_port: int = await fakes.start(serve_handler, telegram.handler)
            llm_port: int = await fakes.start(serve_handler, instant_llm)
            stack = Stack(
                telegram, servers[0].comfy, Ports(telegram_port, servers[0].port, llm_port)
            )
            urls = ",".join(f"http://127.0.0.1:{s.port}" for s in servers)
            env = bot_environment(
                stack,
                Path(tmp),
                COMFYUI_BASE_URL=urls,
                COMFYUI_CONCURRENCY=str(SLOTS),
                FREE_IMAGES=str(PER_USER),
                IMAGE_QUEUE_SIZE=str(jobs + 10),
            )
            async with running_bot(stack, env) as bot:
                with trio.fail_after(30):
                    while not all(s.comfy.sockets.live_client_ids for s in servers):  # noqa: ASYNC110
                        await trio.sleep(0.01)
                keys = interleave(
                    await prepare_replies(telegram, user_ids(USERS), per_user=PER_USER)
                )
                await trio.sleep(SETTLE_S)
                async with trio.open_nursery() as burst:
                    if kill_one:
                        burst.start_soon(_kill_when_started, servers, servers[-1], jobs)
                    with trio.fail_after(BURST_TIMEOUT_S):
                        press_all(telegram, keys)
                        await telegram.wait_total("photo", len(keys))
                    await trio.sleep(1.0)  # a second photo for a press would show up now
            fakes.cancel_scope.cancel()
        _, presses = telegram.update_times()
        photos = [
            (r.chat_id, r.reply_to_message_id, r.at)
            for r in telegram.fake.sent
            if r.kind in ("photo", "document") and r.reply_to_message_id is not None
        ]
        with open_store(bot.database) as store:
            delivered = len(list(store.db.query("SELECT 1 FROM jobs WHERE state = 'delivered'")))
            generated = store.events.count("image_generated")
    return _Burst(
        makespan_s=max(at for _, _, at in photos) - min(presses.values()),
        runs_by_server=[list(s.comfy.runs) for s in servers],
        photos_per_press=Counter((chat, message) for chat, message, _ in photos),
        presses=len(keys),
        delivered_jobs=delivered,
        generated_events=generated,
        log_problems=bot.problems(),
    )


def _gaps_ms(burst: _Burst) -> list[float]:
    return list(
        itertools.chain.from_iterable(
            [gap * 1000 for gap in idle_gaps(runs)] for runs in burst.runs_by_server
        )
    )


async def measure() -> Report:
    """Makespan on 1, 2 and 4 servers, idle gaps per server, a server killed mid-burst."""
    jobs = USERS * PER_USER
    report = Report(
        f"Several GPUs: burst of {jobs} jobs, GPU {RUN_S:g} s each, {SLOTS} slots a server"
    )
    makespans: dict[int, Figure] = {}
    idle: dict[int, Figure] = {}
    for count in SERVER_COUNTS:
        burst = await _burst(count)
        makespans[count] = report.add(f"makespan, {count} server(s)", burst.makespan_s, "s")
        counts = ", ".join(str(len(runs)) for runs in burst.runs_by_server)
        report.notes.append(f"{count} server(s): jobs per server {counts}")
        if burst.log_problems:
            report.notes.append(f"{count} server(s): {burst.log_problems} WARNING/ERROR lines")
        gaps = _gaps_ms(burst)
        idle[count] = report.add(f"p99 idle gap, {count} server(s)", percentile(gaps, 99), "ms")
    ratio = report.add("makespan ratio 4 / 1", makespans[4].value / makespans[1].value, "×")
    report.add("makespan ratio 2 / 1", makespans[2].value / makespans[1].value, "×")
    report.check(ratio, f"≤ {TARGET_RATIO:g}×", passed=ratio.value <= TARGET_RATIO)
    report.check(
        idle[4], f"≤ {TARGET_IDLE_P99_MS:g} ms", passed=idle[4].value <= TARGET_IDLE_P99_MS
    )

    killed = await _burst(4, kill_one=True)
    report.add("makespan, 4 servers, one killed", killed.makespan_s, "s")
    once = sum(1 for n in killed.photos_per_press.values() if n == 1)
    exactly_once = report.add("presses with exactly one photo, one killed", once, "")
    report.add("jobs delivered, one killed", killed.delivered_jobs, "")
    report.add("image_generated events, one killed", killed.generated_events, "")
    counts = ", ".join(str(len(runs)) for runs in killed.runs_by_server)
    report.notes.append(f"one of 4 killed: runs started per server {counts}")
    all_once = (
        once == killed.presses == killed.delivered_jobs == killed.generated_events
        and len(killed.photos_per_press) == killed.presses
    )
    report.check(
        exactly_once, f"= {killed.presses}, each delivered and charged once", passed=all_once
    )
    return report


def main() -> None:
    print(machine_line())
    print_report(trio.run(measure))


if __name__ == "__main__":
    main()
