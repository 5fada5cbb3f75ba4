"""Property-based fuzzing of what strangers can send: update JSON and ComfyUI frames.

Nothing Telegram or ComfyUI delivers may crash a parser, the router, the job tracker, or
the running bot; every input is either understood or ignored.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.commands import route
from bot.telegram.polling import parse_update
from comfy.events import parse_ws_message
from comfy.protocol import PromptTracker
from tests.fakes.telegram import DEFAULT_USER_ID, FakeTelegram
from tests.harness import start_bot

EXAMPLES = itertools.count()
PROMPT_ID = "0f279365-7510-4450-a7f5-33a3bcbaf510"

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(value, json_values)


users = st.fixed_dictionaries(
    {"id": maybe(st.integers(min_value=1, max_value=2**52)), "is_bot": maybe(st.booleans())},
    optional={
        "first_name": maybe(st.text(max_size=20)),
        "language_code": maybe(st.sampled_from(["ru", "en", "en-GB", "uk", ""])),
    },
)
chats = st.fixed_dictionaries(
    {
        "id": maybe(st.integers(min_value=-(2**52), max_value=2**52)),
        "type": maybe(st.sampled_from(["private", "group", "supergroup", "channel"])),
    }
)
messages = st.fixed_dictionaries(
    {
        "message_id": maybe(st.integers(min_value=0, max_value=2**31)),
        "date": maybe(st.integers(min_value=0, max_value=2**31)),
        "chat": maybe(chats),
    },
    optional={
        "from": maybe(users),
        "text": maybe(st.text(max_size=300)),
        "photo": json_values,
        "sticker": json_values,
    },
)
callbacks = st.fixed_dictionaries(
    {"id": maybe(st.text(max_size=10)), "from": maybe(users)},
    optional={
        "message": maybe(messages),
        "data": maybe(
            st.one_of(st.sampled_from(["look", "persona:alice", "cancel:" + "a" * 32]), st.text())
        ),
        "chat_instance": json_values,
    },
)
updates = st.fixed_dictionaries(
    {"update_id": maybe(st.integers(min_value=1, max_value=2**31))},
    optional={
        "message": maybe(messages),
        "edited_message": maybe(messages),
        "callback_query": maybe(callbacks),
        "my_chat_member": json_values,
        "poll": json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(updates)
def test_any_update_shape_is_parsed_or_skipped_and_routed(raw: dict[str, Any]) -> None:
    update = parse_update(1, raw)
    if update is not None:
        route(update, bot_username="persona_test_bot")


frames = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                [
                    "status",
                    "executing",
                    "progress",
                    "executed",
                    "execution_start",
                    "execution_success",
                    "execution_error",
                    "execution_interrupted",
                    "execution_cached",
                    "progress_state",
                    "feature_flags",
                    "crystools.monitor",
                ]
            ),
            "data": maybe(
                st.fixed_dictionaries(
                    {"prompt_id": maybe(st.just(PROMPT_ID))},
                    optional={
                        "node": maybe(st.one_of(st.none(), st.text(max_size=3))),
                        "value": json_values,
                        "max": json_values,
                        "output": json_values,
                        "node_id": json_values,
                        "exception_message": json_values,
                    },
                )
            ),
        }
    ).map(json.dumps),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(frames, max_size=30))
def test_any_websocket_frames_are_parsed_and_tracked_without_error(
    sequence: list[str | bytes],
) -> None:
    tracker = PromptTracker()
    tracker.add(PROMPT_ID)
    for frame in sequence:
        tracker.receive(parse_ws_message(frame))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(updates, min_size=1, max_size=15))
async def test_the_running_bot_survives_a_burst_of_odd_updates_and_still_answers(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: object,
    batch: list[dict[str, Any]],
) -> None:
    telegram = FakeTelegram()
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        async with trio.open_nursery() as nursery:
            # A fresh database per example: hypothesis reuses the function's tmp_path.
            bot = await start_bot(nursery, tmp_path / str(next(EXAMPLES)), telegram)
            for raw in batch:
                raw = dict(raw)
                raw.pop("update_id", None)  # the fake numbers them, as Telegram does
                telegram.add_raw_update(raw)
            telegram.user_says("ты тут?", user_id=DEFAULT_USER_ID)
            await telegram.wait_for(
                lambda: any(s.chat_id == DEFAULT_USER_ID for s in telegram.sent), timeout_s=60
            )
            await bot.stop()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
