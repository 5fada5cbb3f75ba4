"""The fake ComfyUI with several GPUs (``parallel``) keeps every one of them busy."""

from __future__ import annotations

from typing import Any

import trio

from tests.fakes.comfy import FakeComfy, PromptScript


def body(prompt_id: str) -> dict[str, Any]:
    graph = {"3": {"class_type": "KSampler", "inputs": {}}}
    return {"prompt": graph, "prompt_id": prompt_id, "client_id": None}


async def test_every_gpu_takes_work_again_after_its_first_prompt(
    autojump_clock: object,
) -> None:
    fake = FakeComfy(parallel=3)
    fake.default_script = PromptScript(run_s=3.0, steps=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.run)
        for round_ in range(3):
            await trio.sleep_until(10.0 * round_)
            for gpu in range(3):
                await fake.enqueue(body(f"r{round_}g{gpu}"))
        await trio.sleep_until(22.9)
        assert len(fake.history) == 6
        await trio.sleep_until(23.1)
        assert len(fake.history) == 9  # the last round, too, ran three at once
        nursery.cancel_scope.cancel()
    assert fake.peak_on_server == 3
