"""Servers after 0.3.64: reconciliation and cancel through the jobs API, asked once per
connection; 0.3.64 keeps /history, /queue and /interrupt."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import trio

from comfy import ComfyProtocolError, ComfyUnavailable, GenerationTimedOut
from comfy.messages import JobRecord
from comfy.protocol import Probe, Signal, probe_from_job
from tests.fakes.comfy import Outcome, PromptScript, open_fake_comfy
from tests.fakes.comfy_fixtures import open_comfy_stack
from tests.test_comfy_client import client_for
from tests.test_comfy_generate import graph

HANG = PromptScript(outcome=Outcome.HANG, run_s=10.0, steps=2)
IMAGE = {"filename": "persona_bot_00001_.png", "subfolder": "", "type": "output"}
INTERRUPTED = {
    "status_str": "error",
    "completed": False,
    "messages": [["execution_start", {}], ["execution_interrupted", {"node_id": "6"}]],
}


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ({"status": "pending"}, Signal.SEEN_PENDING),
        ({"status": "in_progress"}, Signal.SEEN_RUNNING),
        (
            {"status": "completed", "outputs": {"9": {"images": [IMAGE]}}},
            Signal.FOUND_SUCCESS,
        ),
        ({"status": "failed", "execution_status": INTERRUPTED}, Signal.FOUND_INTERRUPTED),
        ({"status": "failed", "execution_status": {"status_str": "error"}}, Signal.FOUND_ERROR),
        ({"status": "cancelled"}, Signal.FOUND_INTERRUPTED),
        ({"status": "paused_by_a_future_server"}, None),
    ],
)
def test_what_a_job_record_says(job: dict[str, Any], expected: Signal | None) -> None:
    probe = probe_from_job(JobRecord.model_validate({"id": "x", **job}))
    assert (probe.signal if probe is not None else None) == expected


def test_a_completed_job_carries_its_images() -> None:
    job = JobRecord.model_validate({"status": "completed", "outputs": {"9": {"images": [IMAGE]}}})
    probe = probe_from_job(job)
    assert isinstance(probe, Probe)
    assert [image.filename for image in probe.images] == [IMAGE["filename"]]


def paths(requests: list[tuple[str, str, Any]]) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _ in requests]


async def test_recovery_asks_the_jobs_api_once_per_prompt_not_history_and_queue(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_fake_comfy() as fake, open_comfy_stack(fake) as stack:
        fake.jobs_api = True
        pid = str(uuid.uuid4())
        image = await stack.comfy.generate(graph(), prompt_id=pid, timeout_s=120, recover=True)
    assert image.data
    asked = paths(fake.requests)
    # Unknown on the server (404, asked twice), so submitted; never /history or /queue.
    assert asked[:4] == [("GET", "/jobs"), ("GET", f"/jobs/{pid}"), ("GET", f"/jobs/{pid}"),
                         ("POST", "/prompt")]  # fmt: skip
    assert ("GET", "/queue") not in asked
    assert ("GET", f"/history/{pid}") not in asked


async def test_a_prompt_that_ended_while_the_socket_was_away_is_found_by_the_jobs_api(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_fake_comfy() as fake, open_comfy_stack(fake) as stack:
        fake.jobs_api = True
        fake.default_script = PromptScript(run_s=4.0)
        pid = str(uuid.uuid4())
        async with trio.open_nursery() as nursery:

            async def drop_at_1s() -> None:
                await trio.sleep(1)
                fake.drop_websockets()

            nursery.start_soon(drop_at_1s)
            image = await stack.comfy.generate(graph(), prompt_id=pid, timeout_s=120)
    assert image.filename.endswith(".png")
    asked = paths(fake.requests)
    assert ("GET", f"/jobs/{pid}") in asked
    assert ("GET", "/queue") not in asked
    assert ("GET", f"/history/{pid}") not in asked  # the job record held the images
    # Asked once for the first socket, once again after the reconnect.
    assert asked.count(("GET", "/jobs")) == 2


async def test_a_timeout_cancels_through_the_jobs_api(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_comfy() as fake, open_comfy_stack(fake) as stack:
        fake.jobs_api = True
        pid = str(uuid.uuid4())
        fake.script(pid, HANG)
        with pytest.raises(GenerationTimedOut):
            await stack.comfy.generate(graph(), prompt_id=pid, timeout_s=5)
    assert fake.job_cancels == [pid]
    assert fake.interrupted == [pid]
    assert fake.interrupt_requests == []
    assert ("POST", "/queue") not in paths(fake.requests)


async def test_a_waiting_prompt_is_dequeued_through_the_jobs_api(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_fake_comfy() as fake, open_comfy_stack(fake) as stack:
        fake.jobs_api = True
        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        fake.script(first, HANG)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: stack.comfy.generate(graph(), prompt_id=first, timeout_s=30))
            await trio.sleep(1)
            with trio.move_on_after(2):  # the user cancels while it waits behind the first
                await stack.comfy.generate(graph(), prompt_id=second, timeout_s=30)
            nursery.cancel_scope.cancel()
    assert fake.job_cancels[0] == second
    assert fake.deleted == [second]
    assert second not in fake.started


async def test_a_0_3_64_server_keeps_history_queue_and_interrupt(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_fake_comfy() as fake, open_comfy_stack(fake) as stack:
        pid = str(uuid.uuid4())
        fake.script(pid, HANG)
        with pytest.raises(GenerationTimedOut):
            await stack.comfy.generate(graph(), prompt_id=pid, timeout_s=5)
    assert fake.job_cancels == []
    assert fake.interrupt_requests == [pid]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(200, text="<html>proxy login</html>"), ComfyProtocolError),
        (httpx.Response(200, json={"id": "x"}), ComfyProtocolError),  # no status
        (httpx.Response(502, text="Bad Gateway"), ComfyUnavailable),
    ],
    ids=["html", "no-status", "502"],
)
async def test_a_job_record_that_cannot_be_read_is_an_error_not_a_verdict(
    answer: httpx.Response, error: type[Exception]
) -> None:
    client = client_for(lambda request: answer)
    with pytest.raises(error):
        await client.get_job("x")


@pytest.mark.parametrize(
    ("answer", "cancelled"),
    [
        (httpx.Response(200, json={"cancelled": True}), True),
        (httpx.Response(200, json={"cancelled": False}), False),
        (httpx.Response(200, json={"cancelled": "yes"}), False),  # only a real true counts
        (httpx.Response(404, json={"error": "Job not found"}), False),
    ],
)
async def test_what_a_cancel_answer_means(answer: httpx.Response, cancelled: bool) -> None:
    assert await client_for(lambda request: answer).cancel_job("x") is cancelled


async def test_a_failed_question_about_the_jobs_api_falls_back_and_is_asked_again(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_fake_comfy() as fake, open_comfy_stack(fake) as stack:
        fake.jobs_api = True
        fake.http_500_next = 1  # the first question about the jobs API gets a 502
        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        await stack.comfy.generate(graph(), prompt_id=first, timeout_s=120, recover=True)
        await stack.comfy.generate(graph(), prompt_id=second, timeout_s=120, recover=True)
    asked = paths(fake.requests)
    assert ("GET", f"/history/{first}") in asked  # the older calls, this once
    assert ("GET", f"/jobs/{first}") not in asked
    assert asked.count(("GET", "/jobs")) == 2  # not remembered as "no": asked again
    assert ("GET", f"/jobs/{second}") in asked
    assert ("GET", f"/history/{second}") not in asked
