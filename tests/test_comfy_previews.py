"""Preview pictures on ``/ws``: decoded from both frame formats, routed to their prompt,
kept one per prompt, and asked for per prompt on newer servers (transcript k)."""

from __future__ import annotations

import struct
import uuid

import pytest
import trio

from comfy import SHIPPED_WORKFLOW, Preview, PromptParams, PromptProgress, WorkflowTemplate
from comfy.events import BinaryFrame, parse_ws_message
from comfy.follower import PREVIEW_WAITING, PROMPT_CHANNEL_SIZE, PromptWatch
from comfy.protocol import PromptState, PromptTracker, PromptUpdate
from tests.fakes.comfy import PromptScript, open_fake_comfy
from tests.fakes.comfy_fixtures import ComfyStack, open_comfy_stack
from tests.test_comfy_protocol import frames, load

GRAPH = WorkflowTemplate.from_file(SHIPPED_WORKFLOW).build(
    PromptParams("sd_xl_base_1.0.safetensors", "anna.safetensors", 1.0, 1.0, "a", "b", 1)
)
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 64


def running(tracker: PromptTracker, *prompt_ids: str) -> None:
    for pid in prompt_ids:
        tracker.add(pid)
        tracker.receive(
            parse_ws_message(f'{{"type": "execution_start", "data": {{"prompt_id": "{pid}"}}}}')
        )


def event_1(image: bytes = JPEG) -> bytes:
    return struct.pack(">II", 1, 1) + image


def event_4(prompt_id: str, image: bytes = JPEG) -> bytes:
    meta = f'{{"node_id": "6", "prompt_id": "{prompt_id}", "image_type": "image/jpeg"}}'.encode()
    return struct.pack(">II", 4, len(meta)) + meta + image


@pytest.mark.parametrize("socket", ["old_style", "feature_flags"])
def test_transcript_k_frames_carry_their_jpeg(socket: str) -> None:
    previews = [
        parse_ws_message(f) for f in frames("k_previews.json", socket) if isinstance(f, bytes)
    ]
    assert len(previews) == 3
    for frame in previews:
        assert isinstance(frame, BinaryFrame)
        assert frame.preview is not None
        assert frame.preview.content_type == "image/jpeg"
        assert frame.preview.data.startswith(b"\xff\xd8\xff\xe0")
        assert 23_000 < frame.size < 32_000


@pytest.mark.parametrize("socket", ["old_style", "feature_flags"])
def test_transcript_k_previews_reach_the_prompt_without_moving_it(socket: str) -> None:
    raw = frames("k_previews.json", socket)
    pid = str(
        load("k_previews.json")["http"][0 if socket == "old_style" else 1]["response"]["json"][
            "prompt_id"
        ]
    )
    tracker = PromptTracker()
    tracker.add(pid)
    updates = [u for f in raw for u in tracker.receive(parse_ws_message(f))]
    previews = [u for u in updates if u.preview is not None]
    assert {(u.prompt_id, u.state) for u in previews} == {(pid, PromptState.RUNNING)}
    # The first frame with metadata comes before any progress: its step is not known yet.
    first = (0, 0) if socket == "feature_flags" else (1, 3)
    assert [(u.value, u.maximum) for u in previews] == [first, (2, 3), (3, 3)]
    assert [u.value for u in updates if u.maximum and u.preview is None] == [1, 2, 3]
    assert updates[-1].state is PromptState.SUCCEEDED


def test_a_frame_naming_no_prompt_goes_to_the_one_running_or_nowhere() -> None:
    tracker = PromptTracker()
    tracker.add("queued")
    assert tracker.receive(parse_ws_message(event_1())) == []  # nothing of ours runs
    running(tracker, "a")
    (update,) = tracker.receive(parse_ws_message(event_1()))
    assert update.prompt_id == "a"
    assert update.preview == Preview(JPEG, "image/jpeg")
    running(tracker, "b")  # two running (cannot be told apart): nobody's
    assert tracker.receive(parse_ws_message(event_1())) == []


def test_a_frame_naming_its_prompt_goes_there_only_while_it_runs() -> None:
    tracker = PromptTracker()
    tracker.add("queued")
    running(tracker, "a", "b")
    (update,) = tracker.receive(parse_ws_message(event_4("b")))
    assert update.prompt_id == "b"
    assert tracker.receive(parse_ws_message(event_4("queued"))) == []
    assert tracker.receive(parse_ws_message(event_4("someone-elses"))) == []


@pytest.mark.parametrize(
    "image", [b"", b"GIF89a....", b"\x89PN"], ids=["empty", "not-a-photo-format", "cut-off"]
)
def test_a_frame_without_a_picture_telegram_takes_is_no_preview(image: bytes) -> None:
    tracker = PromptTracker()
    running(tracker, "a")
    assert tracker.receive(parse_ws_message(event_4("a", image))) == []
    assert tracker.receive(parse_ws_message(event_1(image))) == []


def test_a_watch_keeps_the_latest_preview_only_however_many_arrive() -> None:
    watch = PromptWatch("a", "c", submitted=True)
    for step in range(5 * PROMPT_CHANNEL_SIZE):
        watch.offer(
            PromptUpdate("a", PromptState.RUNNING, preview=Preview(bytes([step]) * 9, "image/jpeg"))
        )
    watch.offer(PromptUpdate("a", PromptState.RUNNING, value=3, maximum=9))
    queued = [watch.updates.receive_nowait() for _ in range(2)]
    assert queued[0].preview is PREVIEW_WAITING  # a wake-up only, no picture
    assert queued[1].value == 3
    with pytest.raises(trio.WouldBlock):
        watch.updates.receive_nowait()
    latest = watch.take_preview()
    assert latest is not None
    assert latest.preview == Preview(bytes([5 * PROMPT_CHANNEL_SIZE - 1]) * 9, "image/jpeg")
    assert watch.take_preview() is None
    watch.offer(PromptUpdate("a", PromptState.RUNNING, preview=Preview(JPEG, "image/jpeg")))
    watch.offer(PromptUpdate("a", PromptState.SUCCEEDED))
    assert watch.take_preview() is None  # the end lets go of an unread picture


async def generate(stack: ComfyStack, **options: object) -> list[PromptProgress]:
    seen: list[PromptProgress] = []
    await stack.comfy.generate(
        GRAPH,
        prompt_id=str(uuid.uuid4()),
        timeout_s=120,
        on_progress=seen.append,
        **options,  # type: ignore[arg-type]
    )
    return [p for p in seen if p.preview is not None]


async def test_a_server_started_with_previews_sends_them_with_metadata(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_fake_comfy() as fake:
        fake.preview_method = "latent2rgb"
        fake.default_script = PromptScript(run_s=4.0, steps=4)
        async with open_comfy_stack(fake) as stack:
            previews = await generate(stack)
    assert [(p.value, p.maximum) for p in previews] == [(0, 0), (2, 4), (3, 4), (4, 4)]
    assert {p.preview.content_type for p in previews if p.preview} == {"image/jpeg"}
    # The follower announced it reads metadata: every frame was an event 4.
    assert fake.previews_sent == 4
    assert all("extra_data" not in (r[2] or {}) for r in fake.requests if r[1] == "/prompt")


async def test_previews_are_asked_for_per_prompt_and_only_then_on_a_newer_server(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_fake_comfy() as fake:
        fake.jobs_api = True  # after 0.3.64: no previews unless the prompt asks
        fake.default_script = PromptScript(run_s=3.0, steps=3)
        async with open_comfy_stack(fake) as stack:
            assert await generate(stack) == []
            asked = await generate(stack, preview_method="latent2rgb")
    assert len(asked) == 3
    bodies = [r[2] for r in fake.requests if r[:2] == ("POST", "/prompt")]
    assert "extra_data" not in bodies[0]
    assert bodies[1]["extra_data"] == {"preview_method": "latent2rgb"}


async def test_an_older_server_without_the_flag_ignores_the_ask(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_fake_comfy() as fake, open_comfy_stack(fake) as stack:
        assert await generate(stack, preview_method="latent2rgb") == []
    assert fake.previews_sent == 0
