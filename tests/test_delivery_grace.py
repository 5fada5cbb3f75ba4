"""A stop during a photo upload, in-process: the upload finishes within its grace and is
charged; only one that outlasts the grace is sent again at the next start."""

from __future__ import annotations

from pathlib import Path

import trio

from bot.app import STOP_GRACE_S
from bot.pictures.deliveries import DELIVERY_GRACE_S, Deliveries
from tests.fakes.comfy import FakeComfy
from tests.fakes.telegram import DEFAULT_USER_ID, FakeTelegram, SentRecord
from tests.harness import Bot, start_bot
from tests.rows import balance

USER = DEFAULT_USER_ID


def photos(tg: FakeTelegram) -> list[SentRecord]:
    return [s for s in tg.sent if s.kind in ("photo", "document")]


async def press_and_wait_for_the_upload(tg: FakeTelegram) -> None:
    tg.user_says("привет")
    await tg.wait_for(lambda: len(tg.sent) == 1)
    tg.user_presses(tg.sent[0].message_id, "look")
    await tg.wait_for(lambda: "editMessageMedia" in tg.calls)


def counts(bot: Bot) -> tuple[int, int, int, int]:
    """(balance, unfinished jobs, image_generated, image_failed)"""
    with bot.store() as store:
        return (
            balance(store, USER),
            len(store.jobs.unfinished()),
            store.events.count("image_generated"),
            store.events.count("image_failed"),
        )


async def test_a_stop_lets_the_upload_in_flight_finish_and_charges_it(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    upload_s = STOP_GRACE_S + 3  # longer than the stop's grace, within the delivery's
    assert upload_s < DELIVERY_GRACE_S
    fake_telegram.latency_s["editMessageMedia"] = upload_s
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    await press_and_wait_for_the_upload(fake_telegram)
    stopped_at = trio.current_time()
    await bot.stop()
    assert trio.current_time() - stopped_at <= upload_s + 1
    assert len(photos(fake_telegram)) == 1
    assert counts(bot) == (0, 0, 1, 0)
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    await trio.sleep(60)
    assert len(photos(fake_telegram)) == 1  # nothing left to send again
    await bot.stop()


async def test_an_upload_that_outlasts_the_grace_is_kept_and_sent_at_the_next_start(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_telegram.latency_s["editMessageMedia"] = DELIVERY_GRACE_S * 4
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    await press_and_wait_for_the_upload(fake_telegram)
    stopped_at = trio.current_time()
    await bot.stop()
    assert trio.current_time() - stopped_at == DELIVERY_GRACE_S  # bounded, not the upload
    assert counts(bot) == (0, 1, 0, 0)  # reserved, neither charged nor released
    fake_telegram.latency_s["editMessageMedia"] = 1
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    await fake_telegram.wait_for(lambda: len(photos(fake_telegram)) >= 1, timeout_s=120)
    await trio.sleep(10)
    assert counts(bot) == (0, 0, 1, 0)
    assert len(fake_comfy.submitted) == 1  # sent from the spooled file
    await bot.stop()


async def test_a_forced_stop_cuts_the_upload_at_once(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_telegram.latency_s["editMessageMedia"] = DELIVERY_GRACE_S * 4
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    await press_and_wait_for_the_upload(fake_telegram)
    stopped_at = trio.current_time()
    bot.stopper.stop()
    await trio.sleep(1)
    bot.stopper.force()  # the second Ctrl-C
    await bot.done.wait()
    assert trio.current_time() - stopped_at == 1
    assert counts(bot) == (0, 1, 0, 0)


async def test_deliveries_are_shielded_and_bounded_only_from_the_stop_on(
    autojump_clock: object,
) -> None:
    deliveries = Deliveries()
    finished: list[str] = []

    async def upload(name: str, seconds: float) -> None:
        with deliveries.shielded() as scope:
            await trio.sleep(seconds)
            finished.append(name)
        if scope.cancelled_caught:
            finished.append(f"{name} cut")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(upload, "long before the stop", 100)
        nursery.start_soon(upload, "short", 5)
        await trio.sleep(50)  # no bound yet: a slow upload is not cut
        nursery.cancel_scope.cancel()  # the stop's cancel does not reach inside
        deliveries.bound(10)
    assert trio.current_time() == 60
    assert finished == ["short", "long before the stop cut"]
