"""Warm-model placement: the pure rules (assign, Warmth) as tables, then the pool
against fake ComfyUI servers that pay for switching models as the real one does."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import trio
from prometheus_client import REGISTRY

from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS
from bot.pictures.placement import Assignment, ServerView, Waiter, assign
from bot.pictures.warmth import DEFAULT_SWITCH_S, Warmth
from tests.fakes.comfy import FakeComfy
from tests.fakes.telegram import FakeTelegram
from tests.harness import comfy_name, start_bot

A = ("base.safetensors", "alice.safetensors")
B = ("base.safetensors", "bob.safetensors")
C = ("base.safetensors", "carol.safetensors")


def view(
    name: str,
    *,
    warm: tuple[tuple[str, ...], ...] = (),
    busy: int = 0,
    slots: int = 1,
    healthy: bool = True,
    switch_s: float = 5.0,
    models: frozenset[str] | None = None,
    queue: int = 0,
    free_in_s: float = 0.0,
    last_run_at: float = -math.inf,
) -> ServerView:
    return ServerView(
        name=name,
        healthy=healthy,
        slots=slots,
        busy=busy,
        queue_remaining=queue,
        models=models,
        warm=frozenset(warm),
        switch_s=switch_s,
        free_in_s=free_in_s,
        last_run_at=last_run_at,
    )


def waiter(ticket: int, needs: tuple[str, ...], since: float, own: str | None = None) -> Waiter:
    return Waiter(ticket, needs, since, own)


@pytest.mark.parametrize(
    ("waiters", "servers", "now", "expected"),
    [
        pytest.param(
            [waiter(1, A, 0), waiter(2, A, 1)],
            [view("s1")],
            1,
            Assignment({1: "s1"}),
            id="one server, nothing warm: arrival order",
        ),
        pytest.param(
            [waiter(2, A, 1), waiter(1, A, 0)],
            [view("s1", warm=(A,), slots=2)],
            1,
            Assignment({1: "s1", 2: "s1"}),
            id="one persona, warm: arrival order, every free slot",
        ),
        pytest.param(
            [waiter(1, B, 0), waiter(2, A, 1)],
            [view("s1", warm=(A,)), view("s2", warm=(B,), busy=0, queue=3)],
            1,
            Assignment({1: "s2", 2: "s1"}),
            id="each to the server where its models are warm, even a more loaded one",
        ),
        pytest.param(
            [waiter(1, A, 0), waiter(2, B, 1)],
            [view("s1", warm=(B,))],
            1,
            Assignment({2: "s1"}, recheck_at=6, held=frozenset({1})),
            id="a cold job leaves the free server to a warm one behind it, for one switch",
        ),
        pytest.param(
            [Waiter(1, A, 0, held_since=1), waiter(2, B, 1)],
            [view("s1", warm=(B,))],
            6,
            Assignment({1: "s1"}),
            id="one switch cost after it began to hold back, it goes first after all",
        ),
        pytest.param(
            [waiter(1, A, 0)],
            [view("s1", warm=(A,), busy=1, free_in_s=2), view("s2", switch_s=3)],
            2,
            Assignment({}, recheck_at=5, held=frozenset({1})),
            id="a job waits for its warm server, busy but ending sooner than a switch",
        ),
        pytest.param(
            [Waiter(1, A, 0, held_since=2)],
            [view("s1", warm=(A,), busy=1, free_in_s=0), view("s2", switch_s=3)],
            5,
            Assignment({1: "s2"}),
            id="at most one switch of the free one: then it takes that",
        ),
        pytest.param(
            [waiter(1, A, 0)],
            [view("s1", warm=(A,), busy=1, free_in_s=10), view("s2", switch_s=3)],
            2,
            Assignment({1: "s2"}),
            id="a warm server busy for longer than a switch is not waited for",
        ),
        pytest.param(
            [waiter(1, A, 0), waiter(2, C, 1)],
            [view("s1", warm=(B,)), view("s2")],
            1,
            Assignment({1: "s2", 2: "s1"}),
            id="nothing warm for anyone: least loaded, then the fewest warm models evicted",
        ),
        pytest.param(
            [waiter(1, A, 0)],
            [view("s1", warm=(B,), last_run_at=9), view("s2", warm=(C,), last_run_at=4)],
            10,
            Assignment({1: "s2"}),
            id="of two free servers, the one whose warm models went unused longest",
        ),
        pytest.param(
            [waiter(1, A, 0), waiter(2, B, 0.5)],
            [view("s1", warm=(B,)), view("s2", warm=(C,))],
            1,
            Assignment({1: "s2", 2: "s1"}),
            id="a cold job takes the free server nobody behind it wants warm",
        ),
        pytest.param(
            [waiter(1, A, 0), waiter(2, B, 1, own="s2")],
            [view("s1", warm=(B,)), view("s2", busy=1)],
            1,
            Assignment({1: "s1"}),
            id="a job bound elsewhere claims nothing: the cold job need not hold back",
        ),
        pytest.param(
            [waiter(1, A, 0, own="s2"), waiter(2, A, 1)],
            [view("s1", warm=(A,)), view("s2")],
            1,
            Assignment({1: "s2", 2: "s1"}),
            id="a job bound to its own server goes only there",
        ),
        pytest.param(
            [waiter(1, A, 0), waiter(2, A, 1)],
            [view("s1", warm=(A,), healthy=False), view("s2", models=frozenset(B))],
            1,
            Assignment({}),
            id="neither an unhealthy server nor one without the files",
        ),
        pytest.param(
            [waiter(3, A, 2), waiter(1, A, 0), waiter(2, A, 1)],
            [view("s1", warm=(A,), slots=2)],
            3,
            Assignment({1: "s1", 2: "s1"}),
            id="no more than the free slots",
        ),
    ],
)
def test_assign(
    waiters: list[Waiter], servers: list[ServerView], now: float, expected: Assignment
) -> None:
    assert assign(waiters, servers, now=now) == expected


def test_with_nothing_to_hold_for_there_is_no_recheck() -> None:
    assert assign([waiter(1, A, 0)], [view("s1", busy=1)], now=0).recheck_at == math.inf


def test_warmth_follows_the_runs_and_learns_a_deeper_cache() -> None:
    warmth = Warmth()
    warmth.ran(A, cached=False, execution_s=10.0)
    warmth.ran(B, cached=False, execution_s=10.0)
    assert (warmth.is_warm(A), warmth.is_warm(B)) == (False, True)  # the classic cache
    warmth.ran(A, cached=True, execution_s=4.0)  # A was still there: the cache holds two
    assert warmth.depth == 2
    assert warmth.warm == {A, B}
    warmth.ran(C, cached=False, execution_s=10.0)
    warmth.ran(A, cached=False, execution_s=10.0)  # A was second: gone sooner than two
    assert warmth.depth == 1
    assert warmth.warm == {A}


def test_the_switch_cost_is_learned_from_warm_and_cold_runs() -> None:
    warmth = Warmth()
    assert warmth.switch_s == DEFAULT_SWITCH_S
    warmth.ran(A, cached=False, execution_s=9.0)
    assert warmth.switch_s == DEFAULT_SWITCH_S  # no warm run yet
    warmth.ran(A, cached=True, execution_s=3.0)
    assert warmth.switch_s == 6.0
    warmth.ran(A, cached=True, execution_s=4.0)  # a running mean: 3 + 0.3 × (4 - 3)
    assert warmth.switch_s == pytest.approx(9.0 - 3.3)
    warmth.ran(A, cached=None, execution_s=100.0)  # unknown: not a sample
    assert warmth.switch_s == pytest.approx(5.7)
    warmth.forget()
    assert warmth.warm == frozenset()
    assert warmth.switch_s == pytest.approx(5.7)  # the hardware did not change


# -- the pool, against fake servers that pay for switches ----------------------------------


async def test_pictures_of_two_personas_go_to_the_server_where_their_lora_is_warm(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    autojump_clock: object,
) -> None:
    """Two servers of one slot each, two personas taking turns in changing order: once
    each server has one persona's LoRA loaded, every picture goes where its LoRA is warm
    (arrival order with least load swaps them every other round and pays a switch)."""
    loras = tuple(load_personas(SHIPPED_PERSONAS).lora_files())
    fakes = [FakeComfy(tag=str(i), loras=loras, lora_switch_s=4.0) for i in (1, 2)]
    for fake in fakes:
        await nursery.start(fake.run)

    def runs(warm: str) -> float:
        return sum(
            REGISTRY.get_sample_value(
                "persona_bot_comfy_runs_total", {"server": comfy_name(i), "warm": warm}
            )
            or 0.0
            for i in (1, 2)
        )

    before = runs("true"), runs("false")
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfies=fakes, free_images=20)
    users = {"alice": 101, "max": 102}
    for persona, user in users.items():
        fake_telegram.user_says(f"/start {persona}", user_id=user)
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) >= 2)
    for round_ in range(4):
        # The order changes each round: arrival order alone would swap the servers.
        for user in list(users.values())[:: 1 if round_ % 2 == 0 else -1]:
            count = len([s for s in fake_telegram.sent if s.chat_id == user])
            fake_telegram.user_says(f"привет {round_}", user_id=user)
            await fake_telegram.wait_for(
                lambda user=user, count=count: (
                    len([s for s in fake_telegram.sent if s.chat_id == user]) > count
                )
            )
            reply = [s for s in fake_telegram.sent if s.chat_id == user][-1]
            fake_telegram.user_presses(reply.message_id, "look", user_id=user)
        await trio.sleep(30)
    done = sum(len(fake.saved) for fake in fakes)
    assert done == 8
    # Each persona's LoRA was loaded once, on one server, and stayed there.
    loras = [
        {fake.submitted[i].graph[fake.submitted[i].node_of("LoraLoader")]["inputs"]["lora_name"]
         for i in range(len(fake.submitted))}
        for fake in fakes
    ]  # fmt: skip
    assert sorted(len(names) for names in loras) == [1, 1]
    assert sum(fake.switch_time_s for fake in fakes) == 2 * 4.0
    # The bot saw it too, from ComfyUI's execution_cached: two cold runs, six warm.
    assert (runs("true") - before[0], runs("false") - before[1]) == (6, 2)
    await bot.stop()
