"""Money, case by case: each defect an adversarial review found, as the user would meet it.

Each test plays the whole bot in-process (fakes, autojump clock) and checks balances and
subscription ends in the database. The simulation (``tests/simulation``) checks the same
rules as invariants over seeded schedules; these are the named cases.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import trio

from bot.core.texts import t
from bot.payments.offers import PackPayload, SubscriptionPayload, encode_payload
from store import Store
from tests.fakes.comfy import FakeComfy, PromptScript
from tests.fakes.telegram import DEFAULT_USER_ID, FakeTelegram
from tests.harness import Bot, Clock, start_bot
from tests.rows import balance, user_row
from tests.test_image_flow import photos, press_look, say_and_get_reply, wait_job_settled

USER = DEFAULT_USER_ID
ADMIN = 42
PACKS = "10:50"
PACK_10 = encode_payload(PackPayload(10, 50, USER))
SUB = encode_payload(SubscriptionPayload(300, USER))
MONTH = timedelta(days=30)


def in_store(bot: Bot) -> Store:
    return bot.store()


async def admin_says(tg: FakeTelegram, text: str) -> int:
    count = len([s for s in tg.sent if s.chat_id == ADMIN])
    update_id = tg.user_says(text, user_id=ADMIN)
    await tg.wait_for(lambda: len([s for s in tg.sent if s.chat_id == ADMIN]) > count)
    return update_id


async def test_a_grant_handled_again_after_a_crash_adds_its_pictures_once(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg = fake_telegram
    options = {"admin_user_ids": str(ADMIN), "free_images": 0}
    bot = await start_bot(nursery, tmp_path, tg, **options)
    # Killed once the grant's answer reached Telegram: the update never left the inbox.
    bot.crash_at(lambda r: r.url.path.endswith("/sendMessage"), after=True)
    tg.user_says(f"/grant {USER} 5", user_id=ADMIN)
    with trio.fail_after(60):
        await bot.done.wait()
    bot = await start_bot(nursery, tmp_path, tg, **options)  # handles the update again
    await tg.wait_for(lambda: len([s for s in tg.sent if s.chat_id == ADMIN]) == 2)
    with bot.store() as store:
        assert balance(store, USER) == 5
    await bot.stop()


async def test_a_subscribe_handled_again_after_a_crash_adds_its_days_once(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg, clock = fake_telegram, Clock()
    options = {"admin_user_ids": str(ADMIN), "free_images": 0}
    bot = await start_bot(nursery, tmp_path, tg, clock=clock, **options)
    bot.crash_at(lambda r: r.url.path.endswith("/sendMessage"), after=True)
    tg.user_says(f"/subscribe {USER} 10", user_id=ADMIN)
    with trio.fail_after(60):
        await bot.done.wait()
    bot = await start_bot(nursery, tmp_path, tg, clock=clock, **options)
    await tg.wait_for(lambda: len([s for s in tg.sent if s.chat_id == ADMIN]) == 2)
    with bot.store() as store:
        assert user_row(store, USER).subscription_until == clock() + timedelta(days=10)
    await bot.stop()


async def test_a_pack_refunded_while_its_picture_is_reserved_gives_that_picture_back_to_no_one(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    tg = fake_telegram
    fake_comfy.default_script = PromptScript(run_s=60)
    bot = await start_bot(
        nursery,
        tmp_path,
        tg,
        comfy=fake_comfy,
        free_images=0,
        stars_packs=PACKS,
        admin_user_ids=str(ADMIN),
    )
    charge = await tg.user_buys(PACK_10, 50)
    assert charge is not None
    await tg.wait_for(lambda: len([s for s in tg.sent if s.chat_id == USER]) == 1)  # thanks
    reply = await say_and_get_reply(tg)
    await press_look(tg, reply)  # one of the pack's pictures is reserved, being drawn
    await admin_says(tg, f"/refund {charge}")  # every star goes back
    await tg.wait_for(lambda: any(s.buttons() and "cancel:" in s.buttons()[0][1] for s in tg.sent))
    [status] = [s for s in tg.sent if s.buttons() and "cancel:" in s.buttons()[0][1]]
    tg.user_presses(status.message_id, status.buttons()[0][1])  # ✖ cancel: released
    await wait_job_settled(bot)
    with bot.store() as store:
        assert balance(store, USER) == 0  # not the released picture: its pack was refunded
    assert photos(tg) == []
    await bot.stop()


async def test_a_job_released_while_drawn_is_never_uploaded(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    """A cancel that settled before the worker took its ticket (the lost race): the
    worker must see the release before it uploads, and never deliver a free picture."""
    tg = fake_telegram
    fake_comfy.default_script = PromptScript(run_s=20)
    bot = await start_bot(nursery, tmp_path, tg, comfy=fake_comfy, free_images=1)
    reply = await say_and_get_reply(tg)
    await press_look(tg, reply)
    await trio.sleep(5)  # the worker holds the job; ComfyUI draws it
    with bot.store() as store:
        [job] = store.jobs.unfinished()
        assert store.quota.release(job.job_id, reason="cancelled", detail="raced", now=bot.clock())
    await wait_job_settled(bot)
    await trio.sleep(30)  # the drawing ended long ago
    assert photos(tg) == []  # released: the user was given the picture back, not sent one
    with bot.store() as store:
        assert balance(store, USER) == 1
        assert store.events.count("image_generated") == 0
    await bot.stop()


async def test_refunding_an_older_month_after_a_renewal_keeps_the_newer_paid_month(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg, clock = fake_telegram, Clock()
    bot = await start_bot(
        nursery,
        tmp_path,
        tg,
        clock=clock,
        stars_subscription_price=300,
        admin_user_ids=str(ADMIN),
    )
    expires = int((clock() + MONTH).timestamp())
    first = tg.payment_succeeds(
        SUB, 300, subscription_expiration_date=expires, is_recurring=True, is_first_recurring=True
    )
    await tg.wait_for(lambda: len(tg.sent) == 1)
    clock.advance(days=29)  # Telegram renews a day before the end
    tg.payment_succeeds(
        SUB, 300, subscription_expiration_date=expires + 30 * 86400, is_recurring=True
    )
    await tg.wait_for(lambda: len(tg.sent) == 2)
    await admin_says(tg, f"/refund {first}")  # the first month: one day of it was left
    with bot.store() as store:
        # The renewal's 30 days stay whole; only what was left of the first month goes.
        assert user_row(store, USER).subscription_until == clock() + MONTH
    await bot.stop()


async def test_a_paid_month_adds_thirty_days_on_top_of_admin_days(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg, clock = fake_telegram, Clock()
    bot = await start_bot(
        nursery,
        tmp_path,
        tg,
        clock=clock,
        stars_subscription_price=300,
        admin_user_ids=str(ADMIN),
    )
    await admin_says(tg, f"/subscribe {USER} 40")
    expires = int((clock() + MONTH).timestamp())
    tg.payment_succeeds(
        SUB, 300, subscription_expiration_date=expires, is_recurring=True, is_first_recurring=True
    )
    await tg.wait_for(lambda: len([s for s in tg.sent if s.chat_id == USER]) == 1)
    with bot.store() as store:
        assert user_row(store, USER).subscription_until == clock() + timedelta(days=70)
    await bot.stop()


async def test_forget_during_a_drawing_removes_that_reply_and_its_scene_when_the_job_ends(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    tg = fake_telegram
    fake_comfy.default_script = PromptScript(run_s=20)
    bot = await start_bot(nursery, tmp_path, tg, comfy=fake_comfy, free_images=1)
    reply = await say_and_get_reply(tg)
    await press_look(tg, reply)
    await trio.sleep(5)  # drawing
    count = len(tg.sent)
    tg.user_says("/forget")
    await tg.wait_for(lambda: len(tg.sent) > count)
    await wait_job_settled(bot)
    with bot.store() as store:
        assert store.sent.get(chat_id=USER, message_id=reply.message_id) is None
        graphs = [row["graph"] for row in store.db.query("SELECT graph FROM jobs")]
        assert graphs == [None]
    await bot.stop()


async def test_a_group_under_429s_holds_no_checkout_and_no_other_chat(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg = fake_telegram
    group = -100_123

    def storm(method: str, request: httpx.Request) -> httpx.Response | None:
        if method == "sendMessage" and json.loads(request.content).get("chat_id") == group:
            return httpx.Response(
                429,
                json={
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 30",
                    "parameters": {"retry_after": 30},
                },
            )
        return None

    tg.interpose = storm
    bot = await start_bot(nursery, tmp_path, tg, stars_packs=PACKS)
    for n in range(10):
        tg.user_says(f"всем привет {n}", user_id=7000 + n, chat_id=group, chat_type="group")
    await trio.sleep(2)  # the group's replies are refused and held
    start = trio.current_time()
    query = tg.user_checks_out(PACK_10, 50)
    tg.user_says("/help", user_id=USER + 1)
    await tg.wait_for(lambda: query in tg.checkout_answers and tg.texts_to(USER + 1) != [])
    assert tg.checkout_answers[query].at - start < 1.0  # Telegram allows 10 s
    assert next(s.at for s in tg.sent if s.chat_id == USER + 1) - start < 1.0
    await bot.stop()


async def test_one_user_pressing_hundreds_of_times_gets_a_few_resends_and_stalls_no_one(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    tg = fake_telegram
    bot = await start_bot(nursery, tmp_path, tg, comfy=fake_comfy, free_images=1)
    reply = await say_and_get_reply(tg)
    await press_look(tg, reply)
    await tg.wait_for(lambda: len(photos(tg)) == 1)
    for _ in range(300):  # every press on the delivered picture would be a free resend
        tg.user_presses(reply.message_id, "look")
    start = trio.current_time()
    tg.user_says("/help", user_id=USER + 1)
    await tg.wait_for(lambda: tg.texts_to(USER + 1) != [])
    assert next(s.at for s in tg.sent if s.chat_id == USER + 1) - start < 1.5
    await trio.sleep(60)
    assert len(photos(tg)) <= 1 + 30  # USER_PRESSES_PER_MINUTE, not 300
    await bot.stop()


async def test_presses_over_the_rate_get_a_polite_toast_once_a_second_not_each(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    """300 presses spread over 10 s: 30 pass the rate, the rest are told to slow down, at
    most once a second (each toast is a Bot API call of its own)."""
    tg = fake_telegram
    bot = await start_bot(nursery, tmp_path, tg, comfy=fake_comfy, free_images=1)
    reply = await say_and_get_reply(tg)
    await press_look(tg, reply)
    await tg.wait_for(lambda: len(photos(tg)) == 1)
    for _ in range(300):
        tg.user_presses(reply.message_id, "look")
        await trio.sleep(1 / 30)
    await trio.sleep(5)
    throttled = [a for a in tg.callback_answers.values() if a.text == t("press_throttled", "ru")]
    assert 5 <= len(throttled) <= 11
    await bot.stop()
