"""``ServerPool`` on its own, against fake ComfyUI servers under the autojump clock."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from bot.pictures.servers import Server, ServerPool
from comfy import Comfy, ComfyClient, Follower, WorkflowTemplate
from comfy.servers import parse_servers
from comfy.workflow import PromptParams
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
async def pool_of(*fakes: FakeComfy) -> AsyncIterator[ServerPool]:
    names = [comfy_name(i) for i in range(1, len(fakes) + 1)]
    specs = parse_servers(",".join(f"http://{n}#1" for n in names), default_slots=1)
    routes = {n.split(":")[0]: f.handler for n, f in zip(names, fakes, strict=True)}
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        servers = []
        for spec, fake in zip(specs, fakes, strict=True):
            http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=spec.url, transport=host_router(routes))
            )
            client = ComfyClient(http)
            follower = Follower(client, fake.open_ws, rng=NoJitter())
            comfy = Comfy(client, follower, concurrency=spec.slots)
            servers.append(Server(spec, client, follower, comfy, random.Random(0)))
        pool = ServerPool(servers)
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


def test_a_pool_needs_a_server() -> None:
    with pytest.raises(ValueError, match="at least one server"):
        ServerPool([])
