"""Sans-IO protocol: recorded ComfyUI transcripts replayed through the parser and tracker."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from comfy.events import (
    BinaryFrame,
    Executing,
    ExecutionError,
    Garbage,
    Progress,
    Status,
    Unknown,
    parse_ws_message,
)
from comfy.messages import HistoryEntry
from comfy.protocol import (
    TERMINAL_STATES,
    TRANSITIONS,
    Probe,
    PromptState,
    PromptTracker,
    PromptUpdate,
    QueueSnapshot,
    Signal,
    probe_from_history,
    probe_from_queue,
)

TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts" / "comfy"


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((TRANSCRIPTS / name).read_text())
    return doc


def rebuild_binary(frame: dict[str, Any]) -> bytes:
    """Transcripts keep a binary frame's header and length; rebuild a frame of that shape."""
    if frame["event_type_u32be"] == 4:
        meta = frame["metadata_json"].encode()
        head = struct.pack(">II", 4, len(meta)) + meta
    else:
        head = bytes.fromhex(frame["first8_hex"])
    body = head + bytes.fromhex(frame["image_magic_hex"])
    return body + b"\0" * (frame["len"] - len(body))


def frames(name: str, socket_prefix: str) -> list[str | bytes]:
    sockets = load(name)["ws"]
    key = next(k for k in sockets if k.startswith(socket_prefix))
    out: list[str | bytes] = []
    for frame in sockets[key]:
        if "text" in frame and "event" not in frame:
            out.append(frame["text"])
        elif frame.get("binary"):
            out.append(rebuild_binary(frame))
    return out


def replay(tracker: PromptTracker, raw_frames: list[str | bytes]) -> list[PromptUpdate]:
    updates: list[PromptUpdate] = []
    for raw in raw_frames:
        updates.extend(tracker.receive(parse_ws_message(raw)))
    return updates


def history_entry(name: str, prompt_id: str) -> HistoryEntry:
    for exchange in load(name)["http"]:
        body = exchange["response"].get("json")
        if exchange["request"]["path"] == f"/history/{prompt_id}" and body:
            return HistoryEntry.model_validate(body[prompt_id])
    raise LookupError(prompt_id)


def test_transcript_a_cold_warm_and_cached_runs_end_with_their_images() -> None:
    ids = load("a_success.json")["prompt_ids"]
    tracker = PromptTracker()
    for pid in ids.values():
        tracker.add(pid)
    updates = replay(tracker, frames("a_success.json", "main"))
    ends = {u.prompt_id: u for u in updates if u.terminal}
    assert {pid: ends[pid].state for pid in ids.values()} == dict.fromkeys(
        ids.values(), PromptState.SUCCEEDED
    )
    assert [i.filename for i in ends[ids["cold"]].images] == ["bot_test_00001_.png"]
    assert [i.filename for i in ends[ids["warm"]].images] == ["bot_test_00002_.png"]
    # fully cached: no node executes, one `executed` names the previous file (docs/comfyui.md, C3)
    assert [i.filename for i in ends[ids["cached"]].images] == ["bot_test_00002_.png"]
    cold_progress = [
        (u.value, u.maximum) for u in updates if u.prompt_id == ids["cold"] and u.maximum
    ]
    assert cold_progress == [(1, 2), (2, 2)]


def test_transcript_a_execution_success_alone_is_not_done() -> None:
    pid = load("a_success.json")["prompt_ids"]["cold"]
    raw = frames("a_success.json", "main")
    cut = next(i for i, f in enumerate(raw) if isinstance(f, str) and "execution_success" in f)
    tracker = PromptTracker()
    tracker.add(pid)
    updates = replay(tracker, raw[: cut + 1])
    assert not any(u.terminal for u in updates)
    assert tracker.state(pid) is PromptState.ENDING_SUCCESS
    done = tracker.receive(Executing(pid, None))
    assert [(u.state, u.terminal) for u in done] == [(PromptState.SUCCEEDED, True)]


def test_transcript_a_observer_socket_only_reports_queue_sizes() -> None:
    pid = load("a_success.json")["prompt_ids"]["cold"]
    tracker = PromptTracker()
    tracker.add(pid)
    updates = replay(tracker, frames("a_success.json", "observer"))
    assert {u.state for u in updates} == {PromptState.QUEUED}
    assert [u.queue_remaining for u in updates][:3] == [0, 1, 1]
    assert tracker.state(pid) is PromptState.QUEUED


def test_transcript_c_execution_error_names_node_and_message() -> None:
    pid = load("c_execution_error.json")["prompt_id"]
    tracker = PromptTracker()
    tracker.add(pid)
    end = [u for u in replay(tracker, frames("c_execution_error.json", "main")) if u.terminal]
    assert len(end) == 1
    assert end[0].state is PromptState.FAILED
    assert end[0].failure is not None
    assert (end[0].failure.node_id, end[0].failure.node_type) == ("2", "LoraLoader")
    assert end[0].failure.message == "Error while deserializing header: header too large"


def test_transcript_d_interrupt_ends_interrupted() -> None:
    pid = load("d_interrupt.json")["prompt_id"]
    tracker = PromptTracker()
    tracker.add(pid)
    updates = replay(tracker, frames("d_interrupt.json", "main"))
    assert [u.state for u in updates if u.terminal] == [PromptState.INTERRUPTED]
    assert [u.value for u in updates if u.maximum == 300] == [1, 2, 3, 4]


def test_transcript_h_replayed_executing_without_prompt_id_is_ignored() -> None:
    pid = load("h_reconnect.json")["prompt_id"]
    tracker = PromptTracker()
    tracker.add(pid)
    replay(tracker, frames("h_reconnect.json", "first"))
    second = frames("h_reconnect.json", "second")
    replayed = parse_ws_message(second[1])
    assert replayed == Executing(None, "6")
    assert tracker.receive(replayed) == []
    updates = replay(tracker, second)
    assert [u.value for u in updates if u.maximum] == [5, 6, 7, 8]  # steps 3-4 were lost
    assert [u.state for u in updates if u.terminal] == [PromptState.SUCCEEDED]


def test_transcript_h_history_resolves_a_job_whose_end_was_missed() -> None:
    pid = load("h_reconnect.json")["prompt_id"]
    tracker = PromptTracker()
    tracker.add(pid)
    replay(tracker, frames("h_reconnect.json", "first"))
    assert tracker.state(pid) is PromptState.RUNNING
    probe = probe_from_history(history_entry("h_reconnect.json", pid))
    (end,) = tracker.reconcile(pid, probe)
    assert end.state is PromptState.SUCCEEDED
    assert [i.filename for i in end.images] == ["bot_test_00013_.png"]


def test_transcript_k_binary_previews_are_decoded_never_json_loaded() -> None:
    raw = frames("k_previews.json", "feature_flags")
    binary = [parse_ws_message(f) for f in raw if isinstance(f, bytes)]
    assert binary
    assert all(isinstance(e, BinaryFrame) and e.event_type == 4 for e in binary)
    assert {e.prompt_id for e in binary if isinstance(e, BinaryFrame)} == {
        "99ae95d1-5f58-4d99-aa85-55efa00bbc68"
    }
    old_style = [
        parse_ws_message(f) for f in frames("k_previews.json", "old_style") if isinstance(f, bytes)
    ]
    assert old_style
    assert all(isinstance(e, BinaryFrame) and e.prompt_id is None for e in old_style)
    tracker = PromptTracker()
    tracker.add("99ae95d1-5f58-4d99-aa85-55efa00bbc68")
    updates = replay(tracker, raw)
    assert [u.value for u in updates if u.maximum and u.preview is None] == [1, 2, 3]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("not json", Garbage("text frame is not JSON (8 chars)")),
        ("[1, 2]", Garbage("JSON frame without a string 'type'")),
        ('{"type": "progress"}', Garbage("'progress' frame without a 'data' object")),
        (
            '{"type": "executed", "data": {"node": "8"}}',
            Garbage("'executed' frame with unexpected fields (1 errors)"),
        ),
        ('{"type": "progress_state", "data": {"nodes": {}}}', Unknown("progress_state")),
        ('{"type": "crystools.monitor", "data": {}}', Unknown("crystools.monitor")),
        (b"\x00\x00", Garbage("binary frame of 2 bytes, shorter than its header")),
        (b"\x00\x00\x00\x04\xff\xff\xff\xffjunk", BinaryFrame(4, None, 12)),
        ('{"type": "status", "data": {"status": {}}}', Status(None, None)),
        ('{"type": "progress", "data": {"value": 1, "max": 4}}', Progress(None, None, 1, 4)),
    ],
)
def test_parser_never_raises(raw: str | bytes, expected: object) -> None:
    assert parse_ws_message(raw) == expected


def test_interleaved_messages_of_two_jobs_stay_apart() -> None:
    tracker = PromptTracker()
    tracker.add("a")
    tracker.add("b")
    messages: list[tuple[str, dict[str, Any]]] = [
        ("execution_start", {"prompt_id": "a"}),
        ("execution_start", {"prompt_id": "b"}),
        ("progress", {"value": 1, "max": 4, "prompt_id": "a"}),
        ("progress", {"value": 1, "max": 6, "prompt_id": "b"}),
        ("progress", {"value": 9, "max": 9, "prompt_id": "someone-else"}),
        (
            "executed",
            {"prompt_id": "b", "node": "8", "output": {"images": [{"filename": "b.png"}]}},
        ),
        (
            "executed",
            {"prompt_id": "a", "node": "8", "output": {"images": [{"filename": "a.png"}]}},
        ),
        ("execution_success", {"prompt_id": "a"}),
        (
            "execution_error",
            {
                "prompt_id": "b",
                "node_id": "7",
                "node_type": "VAEDecode",
                "exception_message": "OOM\n",
            },
        ),
        ("executing", {"node": None, "prompt_id": "b"}),
        ("executing", {"node": None, "prompt_id": "a"}),
    ]
    raw: list[str | bytes] = [json.dumps({"type": kind, "data": data}) for kind, data in messages]
    updates = replay(tracker, raw)
    assert {(u.prompt_id, u.maximum) for u in updates if u.maximum} == {("a", 4), ("b", 6)}
    ends = {u.prompt_id: u for u in updates if u.terminal}
    assert ends["a"].state is PromptState.SUCCEEDED
    assert [i.filename for i in ends["a"].images] == ["a.png"]
    assert ends["b"].state is PromptState.FAILED
    assert ends["b"].failure is not None
    assert ends["b"].failure.message == "OOM"


def test_history_of_error_and_interrupt_are_told_apart() -> None:
    c_id = load("c_execution_error.json")["prompt_id"]
    d_id = load("d_interrupt.json")["prompt_id"]
    failed = probe_from_history(history_entry("c_execution_error.json", c_id))
    assert failed.signal is Signal.FOUND_ERROR
    assert failed.failure is not None
    assert failed.failure.node_type == "LoraLoader"
    interrupted = probe_from_history(history_entry("d_interrupt.json", d_id))
    assert interrupted == Probe(Signal.FOUND_INTERRUPTED)


def test_queue_probe_and_vanished_prompts() -> None:
    queue = QueueSnapshot(running=("r",), pending=("p",))
    assert probe_from_queue(queue, "r") == Probe(Signal.SEEN_RUNNING)
    assert probe_from_queue(queue, "p") == Probe(Signal.SEEN_PENDING)
    assert probe_from_queue(queue, "x") is None
    tracker = PromptTracker()
    tracker.add("gone")
    assert [u.state for u in tracker.reconcile("gone", Probe(Signal.MISSING))] == [
        PromptState.VANISHED
    ]
    tracker.add("ended")
    tracker.receive(
        parse_ws_message('{"type": "execution_success", "data": {"prompt_id": "ended"}}')
    )
    assert [u.state for u in tracker.reconcile("ended", Probe(Signal.MISSING))] == [
        PromptState.SUCCEEDED
    ]


def test_terminal_states_have_no_transitions() -> None:
    assert not [key for key in TRANSITIONS if key[0] in TERMINAL_STATES]
    tracker = PromptTracker()
    tracker.add("p")
    tracker.receive(ExecutionError("p", "2", "LoraLoader", "boom", "E"))
    tracker.receive(Executing("p", None))
    assert tracker.state("p") is PromptState.FAILED
    assert tracker.receive(Executing("p", None)) == []
    assert tracker.reconcile("p", Probe(Signal.FOUND_SUCCESS)) == []
    assert tracker.state("p") is PromptState.FAILED
