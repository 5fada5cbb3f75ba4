"""Comfy.generate against the fake ComfyUI: outcomes, timeouts, cancel, limits, recovery.

Every test runs under the autojump clock; times are exact virtual seconds.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio
import trio.testing

from comfy import (
    SHIPPED_WORKFLOW,
    ComfyUnavailable,
    GeneratedImage,
    GenerationFailed,
    GenerationTimedOut,
    NotConnected,
    ProgressStage,
    PromptParams,
    PromptProgress,
    PromptRejected,
    WorkflowTemplate,
)
from tests.fakes.comfy import PNG_MAGIC, Outcome, PromptScript, open_fake_comfy
from tests.fakes.comfy_fixtures import ComfyStack, open_comfy_stack

TEMPLATE = WorkflowTemplate.from_file(SHIPPED_WORKFLOW)
HANG = PromptScript(outcome=Outcome.HANG, run_s=10.0, steps=2)


def graph(*, lora: str = "anna.safetensors", seed: int = 7) -> dict[str, Any]:
    params = PromptParams("sd_xl_base_1.0.safetensors", lora, 0.8, 0.8, "anna", "blurry", seed)
    return TEMPLATE.build(params)


def new_id() -> str:
    return str(uuid.uuid4())


def png(filename: str) -> bytes:
    return PNG_MAGIC + filename.encode()


async def test_success_reports_progress_and_returns_the_image(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    fake, pid, seen = comfy_stack.fake, new_id(), list[PromptProgress]()
    t0 = trio.current_time()
    image = await comfy_stack.comfy.generate(
        graph(), prompt_id=pid, timeout_s=120, on_progress=seen.append
    )
    assert trio.current_time() - t0 == 3.0
    # A first run finds nothing cached and takes the whole script's time on the server.
    assert image == GeneratedImage(
        png("persona_bot_00001_.png"), "persona_bot_00001_.png", "image/png", (), 3.0
    )
    stages = [p.stage for p in seen]
    assert stages[0] is ProgressStage.QUEUED
    assert stages[-1] is ProgressStage.DOWNLOADING
    assert [(p.value, p.maximum) for p in seen if p.maximum] == [(i, 5) for i in range(1, 6)]
    assert [p.queue_remaining for p in seen if p.queue_remaining is not None] == [1, 1]
    assert [(p.prompt_id, p.client_id) for p in fake.submitted] == [
        (pid, comfy_stack.follower.client_id)
    ]
    assert fake.history_deleted == [pid]  # pictures do not pile up in ComfyUI's history
    assert fake.deleted == fake.interrupted == []


async def test_prompt_rejected_names_node_input_and_value(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    with pytest.raises(PromptRejected) as caught:
        await comfy_stack.comfy.generate(
            graph(lora="ghost.safetensors"), prompt_id=new_id(), timeout_s=120
        )
    assert caught.value.detail == (
        "ComfyUI rejected the prompt: node 2 (LoraLoader): "
        "lora_name 'ghost.safetensors' not in list"
    )
    assert [r[:2] for r in comfy_stack.fake.requests] == [
        ("POST", "/prompt")
    ]  # nothing to clean up


async def test_execution_error_raises_generation_failed(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    pid = new_id()
    comfy_stack.fake.script(pid, PromptScript(outcome=Outcome.ERROR, run_s=2.0))
    t0 = trio.current_time()
    with pytest.raises(GenerationFailed) as caught:
        await comfy_stack.comfy.generate(graph(), prompt_id=pid, timeout_s=120)
    assert trio.current_time() - t0 == 2.0
    assert caught.value.node == "node 2 (LoraLoader)"
    assert (
        caught.value.detail
        == "node 2 (LoraLoader) failed: Error while deserializing header: header too large"
    )
    assert comfy_stack.fake.interrupted == []


async def test_timeout_while_queued_deletes_it_and_interrupts_nobody(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    fake, other, pid = comfy_stack.fake, new_id(), new_id()
    fake.script(other, HANG)
    await comfy_stack.client.submit(graph(), prompt_id=other, client_id="another-user")
    t0 = trio.current_time()
    with pytest.raises(GenerationTimedOut, match=r"no picture within 120 s"):
        await comfy_stack.comfy.generate(graph(), prompt_id=pid, timeout_s=120)
    assert trio.current_time() - t0 == 120
    assert fake.deleted == [pid]
    assert fake.interrupt_requests == []
    assert [item.prompt_id for item in fake.running] == [other]  # someone else's job untouched
    assert fake.pending == []


async def test_timeout_while_running_interrupts_only_its_own_prompt(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    fake, comfy = comfy_stack.fake, comfy_stack.comfy
    stuck, queued = new_id(), new_id()
    fake.script(stuck, HANG)
    t0 = trio.current_time()
    results: dict[str, object] = {}

    async def run(pid: str, timeout_s: float) -> None:
        try:
            results[pid] = await comfy.generate(
                graph(seed=len(results)), prompt_id=pid, timeout_s=timeout_s
            )
        except GenerationTimedOut as exc:
            results[pid] = exc
        results[pid + "@"] = trio.current_time() - t0

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, stuck, 120)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(run, queued, 300)
    assert isinstance(results[stuck], GenerationTimedOut)
    assert results[stuck + "@"] == 120
    assert fake.interrupt_requests == [stuck]
    assert isinstance(results[queued], GeneratedImage)
    assert results[queued + "@"] == 123  # ran right after the interrupt
    assert fake.started == [stuck, queued]


async def test_caller_cancel_runs_the_shielded_cleanup(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    fake, pid = comfy_stack.fake, new_id()
    fake.script(pid, HANG)
    t0 = trio.current_time()
    with trio.move_on_after(5) as scope:
        await comfy_stack.comfy.generate(graph(), prompt_id=pid, timeout_s=120)
    assert scope.cancelled_caught
    assert trio.current_time() - t0 == 5
    assert fake.interrupted == [pid]
    await trio.testing.wait_all_tasks_blocked()
    assert fake.history[pid]["status"]["messages"][-1][0] == "execution_interrupted"
    assert fake.running == []


async def test_two_concurrent_jobs_with_interleaved_messages(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_fake_comfy(parallel=2) as fake, open_comfy_stack(fake) as stack:
        a, b = new_id(), new_id()
        fake.script(a, PromptScript(run_s=4.0, steps=4))
        fake.script(b, PromptScript(run_s=3.0, steps=6))
        progress: dict[str, list[PromptProgress]] = {a: [], b: []}
        images: dict[str, GeneratedImage] = {}

        async def one(pid: str) -> None:
            images[pid] = await stack.comfy.generate(
                graph(seed=len(images)),
                prompt_id=pid,
                timeout_s=60,
                on_progress=progress[pid].append,
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, a)
            nursery.start_soon(one, b)
    assert {p.maximum for p in progress[a] if p.maximum} == {4}
    assert {p.maximum for p in progress[b] if p.maximum} == {6}
    assert [p.value for p in progress[b] if p.maximum] == [1, 2, 3, 4, 5, 6]
    assert images[a].data != images[b].data
    assert {images[a].filename, images[b].filename} == {
        "persona_bot_00001_.png",
        "persona_bot_00002_.png",
    }


async def test_a_prompt_is_not_submitted_while_the_websocket_is_down(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_fake_comfy() as fake:
        fake.unreachable = True
        async with open_comfy_stack(fake, wait_connected=False) as stack:
            await trio.sleep(1)  # the follower has tried and failed
            t0 = trio.current_time()
            with pytest.raises(NotConnected) as caught:
                await stack.comfy.generate(graph(), prompt_id=new_id(), timeout_s=120)
            assert trio.current_time() == t0  # at once: waiting is the caller's to decide
            assert caught.value.detail.startswith(
                "ComfyUI websocket not connected (cannot connect: HandshakeError"
            )
            assert fake.submitted == []


async def test_http_down_while_socket_up_is_unavailable(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    comfy_stack.fake.unreachable = True
    with pytest.raises(ComfyUnavailable, match=r"ConnectError on POST /prompt"):
        await comfy_stack.comfy.generate(graph(), prompt_id=new_id(), timeout_s=120)


async def test_a_prompt_that_vanishes_while_the_socket_is_down_is_left_to_the_caller(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    fake, pid = comfy_stack.fake, new_id()
    fake.default_script = PromptScript(run_s=10.0)
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_restart_at, fake, [2])
        with pytest.raises(NotConnected) as caught:
            await comfy_stack.comfy.generate(graph(), prompt_id=pid, timeout_s=120)
        nursery.cancel_scope.cancel()
    # Found missing at once (the reconciler looks as the socket drops): its one
    # resubmission is spent, and the caller decides whether to wait for the server.
    assert trio.current_time() - t0 == 2
    assert caught.value.resubmits_left == 0
    assert [p.prompt_id for p in fake.submitted] == [pid]


async def test_restart_without_enough_budget_is_not_resubmitted(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    fake, pid = comfy_stack.fake, new_id()
    fake.default_script = PromptScript(run_s=10.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_restart_at, fake, [5])
        with pytest.raises(ComfyUnavailable, match=r"\(restarted or deleted\) with 7 s left"):
            await comfy_stack.comfy.generate(graph(), prompt_id=pid, timeout_s=12)
        nursery.cancel_scope.cancel()
    assert len(fake.submitted) == 1


async def _restart_at(fake: Any, times: list[float]) -> None:
    start = trio.current_time()
    for at in times:
        await trio.sleep_until(start + at)
        fake.restart()


async def test_recover_finished_in_history_downloads_without_submitting(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    fake, pid = comfy_stack.fake, new_id()
    await comfy_stack.client.submit(graph(), prompt_id=pid, client_id="pbot-deadprocess-1")
    await trio.sleep(3.5)
    t0 = trio.current_time()
    image = await comfy_stack.comfy.generate(graph(), prompt_id=pid, timeout_s=120, recover=True)
    assert trio.current_time() - t0 == 0
    assert image.data == png("persona_bot_00001_.png")
    assert len(fake.submitted) == 1


async def test_recover_finished_with_error_raises(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    fake, pid = comfy_stack.fake, new_id()
    fake.script(pid, PromptScript(outcome=Outcome.ERROR, run_s=1.0))
    await comfy_stack.client.submit(graph(), prompt_id=pid, client_id="pbot-deadprocess-1")
    await trio.sleep(2)
    with pytest.raises(GenerationFailed, match="node 2 \\(LoraLoader\\) failed"):
        await comfy_stack.comfy.generate(graph(), prompt_id=pid, timeout_s=120, recover=True)
    assert len(fake.submitted) == 1


async def test_recover_still_running_waits_by_polling(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    fake, pid = comfy_stack.fake, new_id()
    t0 = trio.current_time()
    await comfy_stack.client.submit(graph(), prompt_id=pid, client_id="pbot-deadprocess-1")
    image = await comfy_stack.comfy.generate(graph(), prompt_id=pid, timeout_s=120, recover=True)
    assert trio.current_time() - t0 == 4.0  # done at 3.0, seen by the poll at 4.0 (every 2 s)
    assert image.filename == "persona_bot_00001_.png"
    assert len(fake.submitted) == 1


async def test_recover_still_queued_waits_by_polling(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    fake, first, pid = comfy_stack.fake, new_id(), new_id()
    fake.script(first, PromptScript(run_s=2.5))
    t0 = trio.current_time()
    await comfy_stack.client.submit(graph(seed=1), prompt_id=first, client_id="someone")
    await comfy_stack.client.submit(graph(seed=2), prompt_id=pid, client_id="pbot-deadprocess-1")
    seen: list[PromptProgress] = []
    image = await comfy_stack.comfy.generate(
        graph(), prompt_id=pid, timeout_s=120, recover=True, on_progress=seen.append
    )
    assert trio.current_time() - t0 == 6.0  # queued until 2.5, done at 5.5, polled at 6.0
    assert image.filename == "persona_bot_00002_.png"
    assert [p.prompt_id for p in fake.submitted] == [first, pid]
    assert ProgressStage.RUNNING in {p.stage for p in seen}


async def test_recover_unknown_prompt_submits_it_once(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    fake, pid = comfy_stack.fake, new_id()
    t0 = trio.current_time()
    image = await comfy_stack.comfy.generate(graph(), prompt_id=pid, timeout_s=120, recover=True)
    assert trio.current_time() - t0 == 3.0
    assert image.filename == "persona_bot_00001_.png"
    assert [p.prompt_id for p in fake.submitted] == [pid]
    # A 0.3.64 server: asked once whether it has the jobs API (no), then history and queue.
    looked_up = [r[:2] for r in fake.requests[:5]]
    assert looked_up == [
        ("GET", "/jobs"),
        ("GET", f"/history/{pid}"),
        ("GET", "/queue"),
        ("GET", f"/history/{pid}"),
        ("POST", "/prompt"),
    ]


async def test_recover_interrupted_prompt_submits_it_again(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    """A graceful stop interrupts its own prompt; the next process draws it after all."""
    fake, pid = comfy_stack.fake, new_id()
    fake.script(pid, HANG)
    with trio.move_on_after(2):  # the previous process, stopped mid-job
        await comfy_stack.comfy.generate(graph(), prompt_id=pid, timeout_s=120)
    assert fake.interrupted == [pid]
    fake.script(pid, PromptScript())
    t0 = trio.current_time()
    image = await comfy_stack.comfy.generate(graph(), prompt_id=pid, timeout_s=120, recover=True)
    assert trio.current_time() - t0 == 3.0
    assert image.filename == "persona_bot_00001_.png"
    assert [p.prompt_id for p in fake.submitted] == [pid, pid]


async def test_a_run_tells_which_loaders_were_cached_and_how_long_it_executed(
    comfy_stack: ComfyStack, autojump_clock: trio.abc.Clock
) -> None:
    """ComfyUI's execution_cached names the nodes it did not re-run: the same checkpoint
    and LoRA again are cached, a new LoRA only the checkpoint (its switch costs time)."""
    fake = comfy_stack.fake
    fake.lora_switch_s, fake.checkpoint_switch_s = 1.0, 2.0
    first = await comfy_stack.comfy.generate(graph(), prompt_id=new_id(), timeout_s=120)
    again = await comfy_stack.comfy.generate(graph(), prompt_id=new_id(), timeout_s=120)
    other = graph(lora="persona_default.safetensors")
    lora_node = next(k for k, n in other.items() if n["class_type"] == "LoraLoader")
    ckpt_node = next(k for k, n in other.items() if n["class_type"] == "CheckpointLoaderSimple")
    switched = await comfy_stack.comfy.generate(other, prompt_id=new_id(), timeout_s=120)
    assert (first.cached, first.execution_s) == ((), 6.0)
    assert (set(again.cached or ()), again.execution_s) == ({ckpt_node, lora_node}, 3.0)
    assert (switched.cached, switched.execution_s) == ((ckpt_node,), 4.0)
