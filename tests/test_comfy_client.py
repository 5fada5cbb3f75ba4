"""ComfyClient: request shapes, and every foreign failure translated at the boundary."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfy.client import ComfyClient, summarize_rejection
from comfy.errors import ComfyProtocolError, ComfyUnavailable, PromptRejected
from comfy.messages import ImageRef
from tests.fakes.comfy import PNG_MAGIC, FakeComfy

TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts" / "comfy"
GRAPH = json.loads((TRANSCRIPTS / "a_success.json").read_text())["http"][4]["request"]["json"][
    "prompt"
]


def recorded(name: str, note_prefix: str) -> dict[str, Any]:
    doc = json.loads((TRANSCRIPTS / name).read_text())
    exchange: dict[str, Any] = next(
        h for h in doc["http"] if (h["note"] or "").startswith(note_prefix)
    )
    return exchange


def replying(status: int, **kwargs: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, **kwargs)


def client_for(handler: Callable[[httpx.Request], Any]) -> ComfyClient:
    return ComfyClient(
        httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://comfy.test")
    )


async def test_submit_posts_prompt_client_id_and_our_prompt_id(fake_comfy: FakeComfy) -> None:
    client = client_for(fake_comfy.handler)
    fake_comfy.checkpoints.append("tiny_sd15_random.safetensors")
    fake_comfy.loras.append("tiny_persona.safetensors")
    await client.submit(GRAPH, prompt_id="p-1", client_id="c-1")
    assert fake_comfy.requests == [
        ("POST", "/prompt", {"prompt": GRAPH, "prompt_id": "p-1", "client_id": "c-1"})
    ]
    assert [(p.prompt_id, p.client_id) for p in fake_comfy.submitted] == [("p-1", "c-1")]


async def test_unknown_checkpoint_is_rejected_in_one_line(fake_comfy: FakeComfy) -> None:
    client = client_for(fake_comfy.handler)
    graph = json.loads(json.dumps(GRAPH))
    graph["1"]["inputs"]["ckpt_name"] = "x.safetensors"
    with pytest.raises(PromptRejected) as caught:
        await client.submit(graph, prompt_id="p-1", client_id="c-1")
    assert caught.value.detail == (
        "ComfyUI rejected the prompt: node 1 (CheckpointLoaderSimple): "
        "ckpt_name 'x.safetensors' not in list"
    )
    assert fake_comfy.submitted == []


@pytest.mark.parametrize(
    ("note", "expected"),
    [
        (
            "unknown lora name",
            "node 2 (LoraLoader): lora_name 'missing_lora.safetensors' not in list",
        ),
        (
            "steps='abc'",
            "node 6 (KSampler): steps 'abc': Failed to convert an input value to a INT value",
        ),
        ("steps=0", "node 6 (KSampler): steps 0: Value 0 smaller than min of 1"),
        ("missing required input", "node 3 (CLIPTextEncode): text: Required input is missing"),
        (
            "unknown class_type",
            "Cannot execute because node KSamplerNope does not exist. (Node ID '#6')",
        ),
        ("no output node", "Prompt has no outputs"),
        ("body without 'prompt'", "No prompt provided"),
    ],
)
def test_recorded_400_bodies_summarise_to_one_line(note: str, expected: str) -> None:
    body = recorded("b_validation.json", note)["response"]["json"]
    summary = summarize_rejection(json.dumps(body).encode())
    assert summary == f"ComfyUI rejected the prompt: {expected}"


def test_old_servers_string_error_and_list_node_errors() -> None:
    body = json.dumps({"error": "no prompt", "node_errors": []}).encode()
    assert summarize_rejection(body) == "ComfyUI rejected the prompt: no prompt"


async def test_500_text_plain_means_unavailable() -> None:
    text = recorded("b_validation.json", "invalid JSON body")["response"]["text"]
    client = client_for(replying(500, text=text))
    with pytest.raises(
        ComfyUnavailable, match="ComfyUI answered 500 to POST /prompt: 500 Internal"
    ):
        await client.submit(GRAPH, prompt_id="p", client_id="c")


async def test_413_text_plain_means_rejected() -> None:
    text = recorded("j_misc_http.json", "101 MiB JSON body")["response"]["text"]
    client = client_for(replying(413, text=text))
    with pytest.raises(
        PromptRejected, match=r"too large: Maximum request body size 104857600 exceeded\."
    ):
        await client.submit(GRAPH, prompt_id="p", client_id="c")


async def test_a_prompt_id_that_is_not_ours_is_a_protocol_error() -> None:
    client = client_for(
        replying(200, json={"prompt_id": "server-minted", "number": 3, "node_errors": {}})
    )
    with pytest.raises(
        ComfyProtocolError, match="answered prompt_id 'server-minted', not ours 'p'"
    ):
        await client.submit(GRAPH, prompt_id="p", client_id="c")


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>proxy</html>"),
        httpx.Response(200, json={"number": 1}),
        httpx.Response(403),
    ],
)
async def test_garbage_answers_are_protocol_errors(response: httpx.Response) -> None:
    client = client_for(lambda request: response)
    with pytest.raises(ComfyProtocolError):
        await client.submit(GRAPH, prompt_id="p", client_id="c")


async def test_unreachable_server_is_unavailable(fake_comfy: FakeComfy) -> None:
    fake_comfy.unreachable = True
    client = client_for(fake_comfy.handler)
    with pytest.raises(
        ComfyUnavailable, match=r"^ComfyUI unreachable \(ConnectError on GET /queue"
    ):
        await client.get_queue()
    with pytest.raises(ComfyUnavailable, match="ConnectError on GET /view"):
        await client.download(ImageRef(filename="a.png"))


async def test_queue_pending_is_sorted_by_number() -> None:
    body = recorded("e_queue_delete.json", "A running; B, C, D, D, F pending")["response"]["json"]
    ids = json.loads((TRANSCRIPTS / "e_queue_delete.json").read_text())["ids"]
    queue = await client_for(replying(200, json=body)).get_queue()
    assert queue.running == (ids["A"],)
    assert queue.pending == (ids["F_front"], ids["B"], ids["C"], ids["D"], ids["D"])


async def test_history_is_none_for_empty_and_parsed_when_finished() -> None:
    exchange = recorded("h_reconnect.json", "history has the result")
    pid = exchange["request"]["path"].rsplit("/", 1)[1]
    assert await client_for(replying(200, json={})).get_history(pid) is None
    entry = await client_for(replying(200, json=exchange["response"]["json"])).get_history(pid)
    assert entry is not None
    assert entry.outputs["8"].images[0].filename == "bot_test_00013_.png"


async def test_cancel_requests_are_targeted() -> None:
    seen: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, json.loads(request.content)))
        return httpx.Response(200)

    client = client_for(handler)
    await client.delete_queued("p")
    await client.interrupt("p")
    await client.delete_history("p")
    assert seen == [
        ("POST", "/queue", {"delete": ["p"]}),
        ("POST", "/interrupt", {"prompt_id": "p"}),
        ("POST", "/history", {"delete": ["p"]}),
    ]


async def test_download_streams_with_a_size_cap() -> None:
    picture = PNG_MAGIC + b"x" * 992
    client = client_for(replying(200, content=picture, headers={"content-type": "image/png"}))
    image = await client.download(ImageRef(filename="a.png"), max_bytes=1000)
    assert (len(image.data), image.content_type) == (1000, "image/png")
    with pytest.raises(ComfyProtocolError, match="over its cap of 999 bytes"):
        await client.download(ImageRef(filename="a.png"), max_bytes=999)


async def test_download_of_a_missing_file_is_a_protocol_error(fake_comfy: FakeComfy) -> None:
    client = client_for(fake_comfy.handler)
    with pytest.raises(ComfyProtocolError, match="GET /view answered 404"):
        await client.download(ImageRef(filename="nope.png"))


async def test_system_stats_and_api_alias(fake_comfy: FakeComfy) -> None:
    stats = await client_for(fake_comfy.handler).system_stats()
    assert stats.system["comfyui_version"] == "0.3.64"
    api = ComfyClient(
        httpx.AsyncClient(
            transport=httpx.MockTransport(fake_comfy.handler), base_url="http://comfy.test/api"
        )
    )
    assert (await api.get_queue()).running == ()
    assert fake_comfy.requests[-1] == ("GET", "/queue", None)
