"""SIGTERM to the real process while Telegram is slowly taking a photo: the upload finishes,
the photo arrives once and is charged once, and a restart sends nothing again."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from bot.app import STOP_GRACE_S
from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS
from bot.pictures.deliveries import DELIVERY_GRACE_S
from store import open_store
from tests.fakes.comfy import FakeComfy
from tests.fakes.telegram import FakeTelegram
from tests.processes import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    bot_environment,
    running_bot,
    serve_fakes,
)
from tests.rows import balance

pytestmark = pytest.mark.slow

UPLOAD_S = STOP_GRACE_S + 3  # outlasts the stop's grace for updates, not the delivery's


def photos(telegram: FakeTelegram) -> int:
    return len([s for s in telegram.sent if s.kind in ("photo", "document")])


async def test_sigterm_during_a_slow_photo_upload_delivers_it_once_and_charges_once(
    tmp_path: Path,
) -> None:
    assert UPLOAD_S < DELIVERY_GRACE_S < STOP_TIMEOUT_S + UPLOAD_S
    telegram = FakeTelegram()
    telegram.latency_s["editMessageMedia"] = UPLOAD_S
    comfy = FakeComfy(loras=tuple(load_personas(SHIPPED_PERSONAS).lora_files()))
    async with trio.open_nursery() as nursery:
        fakes = await serve_fakes(nursery, telegram, comfy)
        env = bot_environment(tmp_path, **fakes, FREE_IMAGES="2")
        async with running_bot(env) as (first, output):
            with trio.fail_after(START_TIMEOUT_S):
                telegram.user_says("привет")
                await telegram.wait_for(lambda: len(telegram.sent) == 1, timeout_s=START_TIMEOUT_S)
                telegram.user_presses(telegram.sent[0].message_id, "look")
                await telegram.wait_for(lambda: "editMessageMedia" in telegram.calls, timeout_s=60)
            first.send_signal(signal.SIGTERM)  # the photo is on its way to Telegram
            with trio.fail_after(UPLOAD_S + STOP_TIMEOUT_S):
                await first.wait()
        assert first.returncode == 0, output.decode()
        assert photos(telegram) == 1
        assert b"image_generated" in output
        with open_store(tmp_path / "data" / "bot.db") as store:
            assert store.jobs.unfinished() == []  # so a restart has nothing to resume
        telegram.latency_s.clear()
        async with running_bot(env) as (second, _):
            with trio.fail_after(START_TIMEOUT_S):
                before = len(telegram.sent)
                telegram.user_says("ещё раз привет")  # answered: the restart is done
                await telegram.wait_for(
                    lambda: len(telegram.sent) > before, timeout_s=START_TIMEOUT_S
                )
            second.send_signal(signal.SIGTERM)
            with trio.fail_after(STOP_TIMEOUT_S):
                await second.wait()
        nursery.cancel_scope.cancel()
    assert second.returncode == 0
    assert photos(telegram) == 1  # the restart had nothing to send again
    with open_store(tmp_path / "data" / "bot.db") as store:
        assert balance(store, telegram.sent[0].chat_id) == 1
        assert store.jobs.unfinished() == []
        assert store.events.count("image_generated") == 1
        assert store.events.count("image_failed") == 0
