"""Start-up model check: what ComfyUI lacks is reported, never raised."""

from __future__ import annotations

import httpx
import pytest

from comfy import ComfyClient, ComfyUnavailable, MissingModel, check_models
from comfy.messages import NodeInfo
from comfy.preflight import input_options
from tests.fakes.comfy import FakeComfy, open_fake_comfy
from tests.fakes.comfy_fixtures import FAKE_BASE_URL


def client_for(fake: FakeComfy) -> ComfyClient:
    return ComfyClient(
        httpx.AsyncClient(transport=httpx.MockTransport(fake.handler), base_url=FAKE_BASE_URL)
    )


async def test_everything_present(fake_comfy: FakeComfy) -> None:
    missing = await check_models(
        client_for(fake_comfy), checkpoint="sd_xl_base_1.0.safetensors", loras=["anna.safetensors"]
    )
    assert missing == []
    assert [r[:2] for r in fake_comfy.requests] == [
        ("GET", "/object_info/CheckpointLoaderSimple"),
        ("GET", "/object_info/LoraLoader"),
    ]


async def test_missing_checkpoint_and_loras_are_listed_once_in_order(fake_comfy: FakeComfy) -> None:
    missing = await check_models(
        client_for(fake_comfy),
        checkpoint="sd_xl_refiner.safetensors",
        loras=["anna.safetensors", "bob.safetensors", "chars/cleo.safetensors", "bob.safetensors"],
    )
    assert missing == [
        MissingModel("checkpoint", "sd_xl_refiner.safetensors"),
        MissingModel("lora", "bob.safetensors"),
        MissingModel("lora", "chars/cleo.safetensors"),
    ]


async def test_v3_combo_shape_is_read_too() -> None:
    async with open_fake_comfy(object_info_style="v3", loras=("a.safetensors",)) as fake:
        missing = await check_models(
            client_for(fake),
            checkpoint="sd_xl_base_1.0.safetensors",
            loras=["a.safetensors", "b.safetensors"],
        )
    assert missing == [MissingModel("lora", "b.safetensors")]


def test_input_options_shapes() -> None:
    v1 = NodeInfo.model_validate(
        {"input": {"required": {"ckpt_name": [["a", "b"], {"tooltip": "t"}]}}}
    )
    v3 = NodeInfo.model_validate(
        {"input": {"optional": {"ckpt_name": ["COMBO", {"options": ["c"]}]}}}
    )
    odd = NodeInfo.model_validate({"input": {"required": {"ckpt_name": "STRING"}}})
    assert input_options(v1, "ckpt_name") == {"a", "b"}
    assert input_options(v3, "ckpt_name") == {"c"}
    assert input_options(odd, "ckpt_name") == frozenset()
    assert input_options(None, "ckpt_name") == frozenset()


async def test_a_server_without_lora_loader_reports_every_lora_missing(
    fake_comfy: FakeComfy,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/LoraLoader"):
            return httpx.Response(200, json={})  # unknown class → {} (transcript j)
        return httpx.Response(
            200, json={"CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["m"]]}}}}
        )

    client = ComfyClient(
        httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url=FAKE_BASE_URL)
    )
    assert await check_models(client, checkpoint="m", loras=["x"]) == [MissingModel("lora", "x")]


async def test_unreachable_server_raises_unavailable(fake_comfy: FakeComfy) -> None:
    fake_comfy.unreachable = True
    with pytest.raises(
        ComfyUnavailable, match="ConnectError on GET /object_info/CheckpointLoaderSimple"
    ):
        await check_models(client_for(fake_comfy), checkpoint="m", loras=[])
