"""The websocket follower: connect-before-submit, losing the socket, garbage, backoff."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
import trio
import trio.testing

from comfy import SHIPPED_WORKFLOW, Follower, PromptParams, PromptProgress, WorkflowTemplate
from comfy.follower import (
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_TIMEOUT_S,
    RECONNECT_BACKOFF_INITIAL_S,
    RECONNECT_BACKOFF_MAXIMUM_S,
    websocket_opener,
    websocket_url,
)
from common.backoff import backoff_delays
from tests.fakes.comfy import PromptScript, open_fake_comfy
from tests.fakes.comfy_fixtures import ComfyStack, open_comfy_stack

TEMPLATE = WorkflowTemplate.from_file(SHIPPED_WORKFLOW)
GRAPH = TEMPLATE.build(
    PromptParams("sd_xl_base_1.0.safetensors", "anna.safetensors", 1.0, 1.0, "a", "b", 1)
)


def new_id() -> str:
    return str(uuid.uuid4())


async def test_socket_drop_mid_job_is_recovered_from_history(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    fake, pid = comfy_stack.fake, new_id()
    fake.default_script = PromptScript(run_s=3.5)
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:

        async def drop_at_1s() -> None:
            await trio.sleep(1)
            fake.sockets.refuse = True  # ComfyUI's websocket stays unreachable from now on
            fake.drop_websockets()

        nursery.start_soon(drop_at_1s)
        image = await comfy_stack.comfy.generate(GRAPH, prompt_id=pid, timeout_s=120)
    # lost at 1.0 and polled at once (running), then every 2 s: done at 3.5, seen at 5.0
    assert trio.current_time() - t0 == 5.0
    assert image.filename == "persona_bot_00001_.png"
    assert ("GET", f"/history/{pid}", None) in fake.requests
    assert not comfy_stack.follower.connected
    assert len(fake.submitted) == 1


async def test_half_open_socket_is_found_by_the_heartbeat(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    fake, follower, pid = comfy_stack.fake, comfy_stack.follower, new_id()
    fake.default_script = PromptScript(run_s=30.0, steps=30)
    first_id = follower.client_id
    t0 = trio.current_time()
    seen: list[PromptProgress] = []
    async with trio.open_nursery() as nursery:

        async def go_silent() -> None:
            await trio.sleep(1.5)
            fake.half_open()

        nursery.start_soon(go_silent)
        image = await comfy_stack.comfy.generate(
            GRAPH, prompt_id=pid, timeout_s=120, on_progress=seen.append
        )
    assert image.filename == "persona_bot_00001_.png"
    # ping at 10 s, no pong by 20 s: socket given up, new one, job polled; done 30, seen 31
    assert HEARTBEAT_INTERVAL_S + HEARTBEAT_TIMEOUT_S == 20
    assert trio.current_time() - t0 == 31.0
    assert follower.connected
    assert follower.client_id != first_id
    assert fake.sockets.client_ids == [first_id, follower.client_id]
    assert max(p.value for p in seen) == 1  # progress stopped when the socket went silent


async def test_garbage_unknown_and_binary_frames_do_not_stop_the_reader(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    fake, pid = comfy_stack.fake, new_id()
    frames: list[str | bytes] = [
        "not json at all",
        "[1, 2, 3]",
        '{"type": "progress"}',
        '{"type": "crystools.monitor", "data": {"cpu_utilization": 3}}',
        '{"type": "executing", "data": {"node": "6"}}',
        f'{{"type": "executed", "data": {{"prompt_id": "{pid}", "output": "bad"}}}}',
        f'{{"type": "progress", "data": {{"prompt_id": "{pid}", "value": "x"}}}}',
        b"\x00\x00\x00\x01\x00\x00\x00\x01\xff\xd8\xff\xe0" + b"\0" * 2_000_000,  # > 1 MiB preview
        b"\x00\x00\x00\x04\x00\x00\x00\x10{not json!}" + b"\0" * 10,
        b"\x01",
    ]
    seen: list[PromptProgress] = []
    async with trio.open_nursery() as nursery:

        async def spray_at_1s() -> None:
            await trio.sleep(1)
            for frame in frames:
                await fake.send_raw(frame)

        nursery.start_soon(spray_at_1s)
        image = await comfy_stack.comfy.generate(
            GRAPH, prompt_id=pid, timeout_s=120, on_progress=seen.append
        )
    assert image.filename == "persona_bot_00001_.png"
    assert len(fake.sockets.client_ids) == 1  # never reconnected
    assert [p.value for p in seen if p.maximum and p.preview is None] == [1, 2, 3, 4, 5]
    # The old-style frame names no prompt: it is the one running prompt's preview.
    (preview,) = [p.preview for p in seen if p.preview is not None]
    assert preview.content_type == "image/jpeg"
    assert len(preview.data) == 2_000_004


async def test_a_prompt_goes_under_the_socket_the_backoff_connects(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_fake_comfy() as fake:
        fake.sockets.refuse = True
        async with open_comfy_stack(fake, wait_connected=False) as stack:
            t0 = trio.current_time()
            async with trio.open_nursery() as nursery:

                async def allow_at(at: float) -> None:
                    await trio.sleep(at)
                    fake.sockets.refuse = False

                nursery.start_soon(allow_at, 2.5)
                client_id = await stack.follower.wait_connected()
                # attempts at 0, 1, 3 (backoff 1 s, 2 s): connected at 3
                assert trio.current_time() - t0 == 3.0
                image = await stack.comfy.generate(GRAPH, prompt_id=new_id(), timeout_s=120)
            assert trio.current_time() - t0 == 6.0
            assert client_id == fake.sockets.client_ids[0]
            assert image.filename == "persona_bot_00001_.png"
            assert [p.client_id for p in fake.submitted] == [fake.sockets.client_ids[0]]
            assert fake.sockets.client_ids[0].endswith("-3")


async def test_run_starts_at_once_and_backs_off_exponentially_with_jitter(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_fake_comfy() as fake:
        fake.unreachable = True
        rng = random.Random(42)
        expected_rng = random.Random(42)
        expected_rng.getrandbits(48)  # the follower draws its clientId prefix first
        async with open_comfy_stack(fake, rng=rng, wait_connected=False) as stack:
            t0 = trio.current_time()
            assert not stack.follower.connected  # started although ComfyUI is down
            expected = backoff_delays(
                initial_s=RECONNECT_BACKOFF_INITIAL_S,
                maximum_s=RECONNECT_BACKOFF_MAXIMUM_S,
                jitter="equal",
                rng=expected_rng,
            )
            delays = [next(expected) for _ in range(4)]
            await trio.sleep(sum(delays[:3]) + 0.5)
            fake.unreachable = False
            await stack.follower.wait_connected()
            assert trio.current_time() - t0 == pytest.approx(sum(delays))
            assert len(delays) == 4
            assert 1.0 <= delays[0] <= 2.0
            assert 8.0 <= delays[3] <= 16.0


async def test_each_connection_uses_a_fresh_client_id(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    follower, fake = comfy_stack.follower, comfy_stack.fake
    first = follower.client_id
    assert first is not None
    assert first.startswith("pbot-")
    assert first.endswith("-1")
    fake.drop_websockets()
    await trio.testing.wait_all_tasks_blocked()
    assert not follower.connected
    second = await follower.wait_connected()
    assert second == first[:-1] + "2"
    assert fake.sockets.live_client_ids == [second]


async def test_messages_for_an_old_client_id_go_nowhere(autojump_clock: trio.abc.Clock) -> None:
    """Two sockets, one clientId: the newer goes deaf when the older closes (docs/comfyui.md C7)."""
    async with open_fake_comfy() as fake, fake.open_ws("dup") as older:
        assert "dup" in (await older.get_message())
        async with fake.open_ws("dup") as newer:
            await newer.get_message()
            await older.aclose()
            await trio.testing.wait_all_tasks_blocked()
            assert fake.sockets.live_client_ids == []


def test_websocket_url_follows_the_http_base_url() -> None:
    assert websocket_url("http://gpu:8188", "c1") == "ws://gpu:8188/ws?clientId=c1"
    assert websocket_url("http://gpu:8188/", "c1") == "ws://gpu:8188/ws?clientId=c1"
    assert (
        websocket_url("https://comfy.example/api/", "c 1")
        == "wss://comfy.example/api/ws?clientId=c+1"
    )
    with pytest.raises(ValueError, match="must start with http:// or https://"):
        websocket_opener("ftp://gpu")


def test_follower_refuses_to_follow_one_prompt_twice() -> None:
    follower = Follower(Any, lambda client_id: Any)  # type: ignore[arg-type]
    follower.watch("p", client_id="c")
    with pytest.raises(ValueError, match="already being followed"):
        follower.watch("p", client_id="c")
