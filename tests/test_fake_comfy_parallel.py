"""The fake ComfyUI with several GPUs (``parallel``) keeps every one of them busy."""

from __future__ import annotations

from typing import Any

import trio

from tests.fakes.comfy import FakeComfy, PromptScript

GPUS = 4
RUN_S = 2.0


def body(prompt_id: str) -> dict[str, Any]:
    graph = {"3": {"class_type": "KSampler", "inputs": {}}}
    return {"prompt": graph, "prompt_id": prompt_id, "client_id": None}


async def test_every_gpu_keeps_taking_work_under_a_steady_stream(autojump_clock: object) -> None:
    fake = FakeComfy(parallel=GPUS)
    fake.default_script = PromptScript(run_s=RUN_S, steps=2)
    prompts = 40
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.run)
        # One prompt every RUN_S / GPUS: exactly what the GPUs draw, so none should queue.
        for index in range(prompts):
            await trio.sleep_until(index * RUN_S / GPUS)
            await fake.enqueue(body(f"p{index}"))
        await trio.sleep_until(prompts * RUN_S / GPUS + RUN_S + 0.1)
        assert len(fake.history) == prompts
        nursery.cancel_scope.cancel()
    # A prompt may arrive at the instant another ends, before it has left the queue.
    assert fake.peak_on_server <= GPUS + 1
