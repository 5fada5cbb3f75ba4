"""``ServerPool`` on its own, against fake ComfyUI servers under the autojump clock."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from bot.pictures.servers import WAIT_FOR_SERVER_S, Server, ServerPool
from comfy import ComfyClient, ComfyUnavailable, Follower, WorkflowTemplate
from comfy.servers import parse_servers
from comfy.workflow import PromptParams
from store import AbandonedPrompts, open_store, utc_now
from tests.fakes.comfy import FakeComfy, PromptScript, open_fake_comfy
from tests.fakes.comfy_fixtures import NoJitter
from tests.harness import comfy_name, host_router

WORKFLOW = Path(__file__).resolve().parent.parent / "workflows" / "sdxl_lora.json"
GRAPH = WorkflowTemplate.from_file(WORKFLOW).build(
    PromptParams(
        checkpoint="sd_xl_base_1.0.safetensors",
        lora_name="anna.safetensors",
        lora_strength_model=0.8,
        lora_strength_clip=0.8,
        positive="anna",
        negative="",
        seed=1,
    )
)


@asynccontextmanager
async def pool_of(
    *fakes: FakeComfy,
    slots: int = 1,
    follower: type[Follower] = Follower,
    remember: AbandonedPrompts | None = None,
) -> AsyncIterator[ServerPool]:
    names = [comfy_name(i) for i in range(1, len(fakes) + 1)]
    specs = parse_servers(",".join(f"http://{n}#{slots}" for n in names), default_slots=1)
    routes = {n.split(":")[0]: f.handler for n, f in zip(names, fakes, strict=True)}
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        servers = []
        for spec, fake in zip(specs, fakes, strict=True):
            http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=spec.url, transport=host_router(routes))
            )
            client = ComfyClient(http)
            servers.append(
                Server(
                    spec, client, follower(client, fake.open_ws, rng=NoJitter()), random.Random(0)
                )
            )
        pool = ServerPool(servers, remember=remember)
        await nursery.start(pool.run)
        await trio.sleep(1)
        yield pool
        nursery.cancel_scope.cancel()


async def test_a_failing_record_of_the_server_gives_the_slot_back(autojump_clock: object) -> None:
    async with open_fake_comfy() as fake, pool_of(fake) as pool:

        def broken(server: str) -> None:
            raise RuntimeError("database is locked")

        with pytest.raises(RuntimeError):
            await pool.generate(GRAPH, prompt_id="p-1", timeout_s=60, on_server=broken)
        assert pool.servers[0].busy == 0
        assert fake.submitted == []
        image = await pool.generate(GRAPH, prompt_id="p-2", timeout_s=60)
        assert image.data
        assert pool.servers[0].busy == 0


async def test_a_cancel_while_waiting_for_a_slot_takes_nothing(autojump_clock: object) -> None:
    async with open_fake_comfy() as fake, pool_of(fake) as pool:
        fake.default_script = PromptScript(run_s=30)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: pool.generate(GRAPH, prompt_id="first", timeout_s=60))
            await trio.sleep(1)
            with trio.move_on_after(5):  # the only slot is taken: this one waits in the bot
                await pool.generate(GRAPH, prompt_id="second", timeout_s=60)
            assert [p.prompt_id for p in fake.submitted] == ["first"]
            assert pool.servers[0].busy == 1
        assert pool.servers[0].busy == 0


async def test_a_server_holds_at_most_its_slots_of_this_bots_prompts(
    autojump_clock: object,
) -> None:
    async with open_fake_comfy() as fake, pool_of(fake, slots=2) as pool:
        t0 = trio.current_time()
        finished: list[float] = []

        async def one(index: int) -> None:
            await pool.generate(GRAPH, prompt_id=f"p-{index}", timeout_s=120)
            finished.append(trio.current_time() - t0)

        async with trio.open_nursery() as nursery:
            for index in range(3):
                nursery.start_soon(one, index)
        assert fake.peak_on_server == 2
        assert len(fake.submitted) == 3
        assert finished == [3.0, 6.0, 9.0]  # the third is submitted only when the first is done


class LosesItsSocketOnce(Follower):
    """A follower whose socket is gone for one look, as if it dropped between the
    placement (which saw it connected) and the submission."""

    lose_next = False

    @property
    def client_id(self) -> str | None:
        if self.lose_next:
            self.lose_next = False
            return None
        return super().client_id


async def test_a_socket_lost_between_placement_and_submission_waits_and_draws(
    autojump_clock: object,
) -> None:
    async with open_fake_comfy() as fake, pool_of(fake, follower=LosesItsSocketOnce) as pool:
        follower = pool.servers[0].follower
        assert isinstance(follower, LosesItsSocketOnce)
        handed: list[str] = []

        def placed(server: str) -> None:
            handed.append(server)
            follower.lose_next = len(handed) == 1

        image = await pool.generate(GRAPH, prompt_id="p-1", timeout_s=60, on_server=placed)
        assert image.data
        assert handed == [comfy_name(1), comfy_name(1)]  # placed again, not failed
        assert [p.prompt_id for p in fake.submitted] == ["p-1"]  # submitted once
        assert pool.servers[0].busy == 0
        assert pool.servers[0].down_until == -math.inf  # not marked down for it


async def test_a_job_waits_in_the_pool_while_its_server_reconnects(autojump_clock: object) -> None:
    async with open_fake_comfy() as fake, pool_of(fake) as pool:
        fake.drop_websockets()
        await pool.servers[0].follower.wait_disconnected()
        t0 = trio.current_time()
        image = await pool.generate(GRAPH, prompt_id="p-1", timeout_s=60)
        assert image.data
        assert [p.prompt_id for p in fake.submitted] == ["p-1"]
        # NoJitter: the follower's first reconnect wait is 1 s, then the fake draws for 3.
        assert trio.current_time() - t0 == 4


async def test_no_server_within_the_wait_fails_as_unavailable(autojump_clock: object) -> None:
    async with open_fake_comfy() as fake, pool_of(fake) as pool:
        fake.unreachable = True
        fake.drop_websockets()
        await trio.sleep(0.5)
        t0 = trio.current_time()
        with pytest.raises(ComfyUnavailable, match=r"no ComfyUI server reachable within 10 s"):
            await pool.generate(GRAPH, prompt_id="p-1", timeout_s=60)
        assert trio.current_time() - t0 == WAIT_FOR_SERVER_S
        assert fake.submitted == []


async def _restart_at(fake: FakeComfy, times: list[float]) -> None:
    start = trio.current_time()
    for at in times:
        await trio.sleep_until(start + at)
        fake.restart()


async def test_a_restart_mid_job_resubmits_once_when_the_server_is_back(
    autojump_clock: object,
) -> None:
    async with open_fake_comfy() as fake, pool_of(fake) as pool:
        fake.default_script = PromptScript(run_s=10.0)
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_restart_at, fake, [2])
            await pool.generate(GRAPH, prompt_id="p-1", timeout_s=120)
        # found missing at once, resubmitted after the 1 s reconnect, then 10 s of work
        assert trio.current_time() - t0 == 13
        assert [p.prompt_id for p in fake.submitted] == ["p-1", "p-1"]
        assert len({p.client_id for p in fake.submitted}) == 2  # a fresh clientId per socket


async def test_restarted_twice_a_job_fails_clearly(autojump_clock: object) -> None:
    async with open_fake_comfy() as fake, pool_of(fake) as pool:
        fake.default_script = PromptScript(run_s=10.0)
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_restart_at, fake, [2, 5])
            with pytest.raises(ComfyUnavailable) as caught:
                await pool.generate(GRAPH, prompt_id="p-1", timeout_s=120)
            nursery.cancel_scope.cancel()
        assert trio.current_time() - t0 == 5
        assert (
            caught.value.detail == "prompt p-1 vanished from ComfyUI (restarted or deleted) again"
        )
        assert len(fake.submitted) == 2


async def test_a_copy_left_where_http_failed_but_the_socket_stayed_is_tidied(
    autojump_clock: object,
) -> None:
    async with (
        open_fake_comfy() as first,
        open_fake_comfy() as second,
        pool_of(first, second) as pool,
    ):
        for fake in (first, second):  # each draws someone else's prompt for a while
            fake.default_script = PromptScript(run_s=30)
            await fake.enqueue({"prompt_id": "theirs", "prompt": GRAPH, "client_id": "other"})
        await trio.sleep(0.1)  # their status frames reached the followers: a tie, to the first
        first.answer_lost_next = 1  # queued on the first, but the answer never came back
        image = await pool.generate(GRAPH, prompt_id="p-1", timeout_s=120)
        assert image.data
        assert [p.prompt_id for p in second.submitted] == ["theirs", "p-1"]  # drawn there
        # The first server's socket never fell: its copy was tidied once its backoff passed.
        assert first.deleted == ["p-1"]
        assert "p-1" not in first.started
        assert pool.servers[0].abandoned == set()


async def test_copies_waiting_for_their_tidy_up_outlive_a_restart(
    tmp_path: Path, autojump_clock: object
) -> None:
    async with open_fake_comfy() as fake:
        fake.default_script = PromptScript(run_s=60)
        await fake.enqueue({"prompt_id": "left", "prompt": GRAPH, "client_id": "gone"})
        await fake.enqueue({"prompt_id": "also", "prompt": GRAPH, "client_id": "gone"})
        with open_store(tmp_path / "bot.db") as store:
            # An earlier process moved these jobs away and was stopped before it tidied.
            store.abandoned.add(comfy_name(1), "left", now=utc_now())
            store.abandoned.add(comfy_name(1), "also", now=utc_now())
            async with pool_of(fake, remember=store.abandoned):
                await trio.sleep(5)
            assert store.abandoned.by_server() == {}
        assert fake.interrupted == ["left"]  # it was running
        assert fake.deleted == ["also"]  # it was queued


def test_a_pool_needs_a_server() -> None:
    with pytest.raises(ValueError, match="at least one server"):
        ServerPool([])
