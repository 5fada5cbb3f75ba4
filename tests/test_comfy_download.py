"""The picture's download, and forgetting its history entry beside it, not after it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

from comfy import ComfyError, PromptParams, WorkflowTemplate
from tests.fakes.comfy import open_fake_comfy
from tests.fakes.comfy_fixtures import open_comfy_stack

TEMPLATE = WorkflowTemplate.from_file(
    Path(__file__).resolve().parent.parent / "workflows" / "sdxl_lora.json"
)
ROUND_TRIP_S = 1.0


def graph() -> dict[str, Any]:
    params = PromptParams("sd_xl_base_1.0.safetensors", "anna.safetensors", 0.8, 0.8, "a", "", 7)
    return TEMPLATE.build(params)


async def test_history_is_forgotten_while_the_picture_downloads(autojump_clock: object) -> None:
    async with open_fake_comfy() as fake:
        fake.latency_s.update({"GET /view": ROUND_TRIP_S, "POST /history": ROUND_TRIP_S})
        async with open_comfy_stack(fake) as stack:
            start = trio.current_time()
            pid = str(uuid.uuid4())
            await stack.comfy.generate(graph(), prompt_id=pid, timeout_s=60)
            # 3 s of drawing, then one round trip for both, not two in a row.
            assert trio.current_time() - start == 3.0 + ROUND_TRIP_S
            assert fake.history_deleted == [pid]


async def test_a_failed_download_raises_its_own_error(autojump_clock: object) -> None:
    async with open_fake_comfy() as fake, open_comfy_stack(fake) as stack:
        fake.outputs_lost = True
        with pytest.raises(ComfyError) as caught:
            await stack.comfy.generate(graph(), prompt_id=str(uuid.uuid4()), timeout_s=60)
        assert not isinstance(caught.value, BaseExceptionGroup)
        assert "/view" in str(caught.value)
