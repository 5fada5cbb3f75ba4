"""«👁️ Посмотреть» end to end, in-process: every outcome and every reason (docs/product.md, P8)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from bot.core.logs import EVENT_FIELDS_KEY
from bot.core.texts import LOOK_BUTTON, t
from bot.pictures.status import MIN_EDIT_INTERVAL_S
from store import Store
from tests.fakes.comfy import FakeComfy, Outcome, PromptScript
from tests.fakes.telegram import DEFAULT_USER_ID, EditRecord, FakeTelegram, SentRecord
from tests.harness import Bot, start_bot
from tests.rows import balance

USER = DEFAULT_USER_ID


def photos(tg: FakeTelegram, chat_id: int = USER) -> list[SentRecord]:
    return [s for s in tg.sent if s.kind in ("photo", "document") and s.chat_id == chat_id]


def not_status(tg: FakeTelegram) -> list[SentRecord]:
    """What the bot sent, without the jobs' status messages (they come and go on their own)."""
    return [s for s in tg.sent if not (s.text or "").startswith("🎨")]


def events(store: Store) -> list[tuple[str, str | None]]:
    return [(row["event"], row["reason"]) for row in store.events.since()]


def balance_of(bot: Bot, user_id: int = USER) -> int:
    with bot.store() as store:
        return balance(store, user_id)


async def say_and_get_reply(
    tg: FakeTelegram, text: str = "привет", *, user_id: int = USER
) -> SentRecord:
    count = len([s for s in tg.sent if s.chat_id == user_id])
    tg.user_says(text, user_id=user_id)
    await tg.wait_for(lambda: len([s for s in tg.sent if s.chat_id == user_id]) > count)
    return [s for s in tg.sent if s.chat_id == user_id][-1]


async def press_look(tg: FakeTelegram, reply: SentRecord, *, user_id: int = USER) -> str:
    query = tg.user_presses(reply.message_id, "look", user_id=user_id)
    await tg.wait_for(lambda: query in tg.callback_answers)
    return query


async def wait_job_settled(bot: Bot, *, jobs: int = 1) -> None:
    """Until *jobs* jobs exist and none is active any more."""

    def settled() -> bool:
        with bot.store() as store:
            rows = list(store.db.query("SELECT state FROM jobs"))
        return len(rows) >= jobs and all(r["state"] in ("delivered", "failed") for r in rows)

    with trio.fail_after(600):
        # The bot's database, read from a second connection, has no event to wait on.
        while not settled():  # noqa: ASYNC110
            await trio.sleep(0.5)


async def test_happy_path_from_message_to_delivered_photo(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.events")
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=2)
    reply = await say_and_get_reply(fake_telegram)
    assert reply.buttons() == [(LOOK_BUTTON, "look")]
    start = trio.current_time()
    query = await press_look(fake_telegram, reply)
    assert fake_telegram.callback_answers[query].text == t("toast_started", "ru")
    assert fake_telegram.callback_answers[query].at == start  # answered at once
    await fake_telegram.wait_for(lambda: len(photos(fake_telegram)) == 1)
    photo = photos(fake_telegram)[0]
    assert photo.kind == "photo"
    assert photo.reply_to_message_id == reply.message_id
    assert photo.content is not None
    assert photo.content.startswith(b"\x89PNG")
    # the picture: persona LoRA, seed, prompt core + style
    [submitted] = fake_comfy.submitted
    graph = submitted.graph
    lora = graph[submitted.node_of("LoraLoader")]["inputs"]
    assert lora["lora_name"] == "alice_v1.safetensors"
    positive_texts = [
        n["inputs"]["text"] for n in graph.values() if n["class_type"] == "CLIPTextEncode"
    ]
    assert any(
        text.startswith("alice_persona") and "golden hour" in text for text in positive_texts
    )
    # The status message (with «✖ Отмена» while drawing) became the picture: one message,
    # nothing deleted; the upload took no time, so no "sending a photo" was worth showing.
    [landed] = fake_telegram.media_edits
    assert photo.message_id == landed.message_id
    assert photo.buttons() == [(t("variant_button", "ru"), f"variant:{reply.message_id}")]
    status_posts = [r for r in fake_telegram.requests if r.method == "sendMessage"
                    and str(r.params.get("text", "")).startswith("🎨")]  # fmt: skip
    assert len(status_posts) == 1
    assert "cancel:" in str(status_posts[0].params["reply_markup"])
    assert fake_telegram.deleted == []
    assert fake_telegram.chat_actions == []
    await wait_job_settled(bot)
    with bot.store() as store:
        assert events(store) == [("image_requested", None), ("image_generated", None)]
        sent = store.sent.get(chat_id=USER, message_id=reply.message_id)
        assert sent is not None
        assert sent.photo_file_id == photo.file_id
        [row] = store.events.since()[1:]
        assert row["duration_ms"] is not None
        assert row["job_id"] is not None
        job = store.jobs.get(row["job_id"])
        assert job is not None
        assert job.server is not None
        assert row["server"] == job.server  # the report's per-server section counts it
    [line] = [r for r in caplog.records if r.getMessage() == "image_generated"]
    assert getattr(line, EVENT_FIELDS_KEY)["server"] == job.server  # and the log line names it
    assert balance_of(bot) == 1
    assert fake_comfy.history_deleted == [submitted.prompt_id]  # nothing piles up on ComfyUI
    assert not list((tmp_path / "data" / "spool").iterdir())
    await bot.stop()


async def test_press_after_delivery_resends_the_same_file_free(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    reply = await say_and_get_reply(fake_telegram)
    await press_look(fake_telegram, reply)
    await fake_telegram.wait_for(lambda: len(photos(fake_telegram)) == 1)
    await wait_job_settled(bot)
    query = await press_look(fake_telegram, reply)
    await fake_telegram.wait_for(lambda: len(photos(fake_telegram)) == 2)
    first, second = photos(fake_telegram)
    assert second.content is None
    assert second.file_id == first.file_id
    assert fake_telegram.callback_answers[query].text == t("toast_resent", "ru")
    assert len(fake_comfy.submitted) == 1
    assert balance_of(bot) == 0
    with bot.store() as store:
        assert [e for e, _ in events(store)] == [
            "image_requested",
            "image_generated",
            "image_resent",
        ]
    await bot.stop()


async def test_a_press_while_the_picture_is_being_made_starts_nothing(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_comfy.default_script = PromptScript(run_s=30)
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=5)
    reply = await say_and_get_reply(fake_telegram)
    await press_look(fake_telegram, reply)
    await trio.sleep(5)
    again = await press_look(fake_telegram, reply)
    assert fake_telegram.callback_answers[again].text == t("toast_in_flight", "ru")
    await fake_telegram.wait_for(lambda: len(photos(fake_telegram)) == 1, timeout_s=100)
    assert len(fake_comfy.submitted) == 1
    assert balance_of(bot) == 4
    await bot.stop()


async def test_two_simultaneous_presses_with_one_credit_make_one_picture(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    first = await say_and_get_reply(fake_telegram, "раз")
    second = await say_and_get_reply(fake_telegram, "два")
    q1 = fake_telegram.user_presses(first.message_id, "look")
    q2 = fake_telegram.user_presses(second.message_id, "look")
    await fake_telegram.wait_for(
        lambda: q1 in fake_telegram.callback_answers and q2 in fake_telegram.callback_answers
    )
    assert fake_telegram.callback_answers[q2].text == t("fail_no_quota", "ru")
    assert fake_telegram.callback_answers[q2].show_alert
    await wait_job_settled(bot)
    assert len(photos(fake_telegram)) == 1
    assert len(fake_comfy.submitted) == 1
    assert balance_of(bot) == 0
    with bot.store() as store:
        assert sorted(events(store), key=str) == sorted(
            [
                ("image_requested", None),
                ("image_requested", None),
                ("image_failed", "no_quota"),
                ("image_generated", None),
            ],
            key=str,
        )
    await bot.stop()


async def test_no_button_in_groups_and_when_images_are_disabled(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy)
    fake_telegram.user_says("hi all", chat_id=-100123, chat_type="supergroup")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    assert fake_telegram.sent[0].buttons() == []
    old = await say_and_get_reply(fake_telegram)  # a button from before the switch
    assert old.buttons() == [(LOOK_BUTTON, "look")]
    await bot.stop()

    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, image_enabled=False)
    reply = await say_and_get_reply(fake_telegram)
    assert reply.buttons() == []
    query = await press_look(fake_telegram, old)
    assert fake_telegram.callback_answers[query].text == t("fail_disabled", "ru")
    await trio.sleep(10)
    assert fake_comfy.submitted == []
    with bot.store() as store:
        assert events(store) == [("image_requested", None), ("image_failed", "disabled")]
    await bot.stop()


async def test_a_press_on_someone_elses_or_an_unknown_message_is_ignored(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy)
    reply = await say_and_get_reply(fake_telegram)
    # another user forges a press on our user's message (same chat id is impossible in a
    # private chat, so the fake delivers it with their own id)
    forged = fake_telegram.user_presses(reply.message_id, "look", user_id=42, chat_id=USER)
    unknown = fake_telegram.user_presses(777, "look")
    await fake_telegram.wait_for(
        lambda: (
            forged in fake_telegram.callback_answers and unknown in fake_telegram.callback_answers
        )
    )
    assert fake_telegram.callback_answers[forged].text == t("toast_stale", "ru")
    assert fake_telegram.callback_answers[unknown].text == t("toast_stale", "ru")
    await trio.sleep(10)
    assert fake_comfy.submitted == []
    with bot.store() as store:
        assert events(store) == []
    await bot.stop()


@pytest.mark.parametrize(
    ("setup", "detail_part"),
    [
        (lambda c: setattr(c, "default_script", PromptScript(outcome=Outcome.ERROR)), "LoraLoader"),
        (lambda c: c.loras.clear(), "not in list"),
        (lambda c: setattr(c, "unreachable", True), "ComfyUnavailable"),
        (
            lambda c: setattr(c, "default_script", PromptScript(outcome=Outcome.HANG)),
            "GenerationTimedOut",
        ),
    ],
    ids=["execution-error", "rejected", "unreachable", "timed-out"],
)
async def test_generation_errors_release_the_image_and_tell_the_user(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
    setup: Any,
    detail_part: str,
) -> None:
    bot = await start_bot(
        nursery,
        tmp_path,
        fake_telegram,
        comfy=fake_comfy,
        free_images=1,
        comfyui_timeout_seconds=60,
    )
    reply = await say_and_get_reply(fake_telegram)
    setup(fake_comfy)
    await press_look(fake_telegram, reply)
    await wait_job_settled(bot)
    notice = not_status(fake_telegram)[-1]
    assert notice.text == t("fail_generation", "ru")
    assert notice.reply_to_message_id == reply.message_id
    assert photos(fake_telegram) == []
    assert fake_telegram.message(USER, reply.message_id)["text"] == reply.text  # type: ignore[index]
    assert balance_of(bot) == 1
    with bot.store() as store:
        rows = store.events.since()
    assert [(r["event"], r["reason"]) for r in rows] == [
        ("image_requested", None),
        ("image_failed", "generation_error"),
    ]
    assert detail_part in rows[1]["detail"]
    await bot.stop()


async def test_the_timeout_covers_submit_to_download_and_frees_the_gpu(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_comfy.default_script = PromptScript(outcome=Outcome.HANG)
    bot = await start_bot(
        nursery, tmp_path, fake_telegram, comfy=fake_comfy, comfyui_timeout_seconds=120
    )
    reply = await say_and_get_reply(fake_telegram)
    await press_look(fake_telegram, reply)
    await fake_telegram.wait_for(lambda: len(fake_comfy.submitted) == 1)
    submitted_at = trio.current_time()
    await wait_job_settled(bot)
    assert fake_comfy.interrupted == [fake_comfy.submitted[0].prompt_id]
    with bot.store() as store:
        failed = store.events.since()[-1]
    assert failed["reason"] == "generation_error"
    assert 120 <= trio.current_time() - submitted_at < 130
    await bot.stop()


async def test_photo_refused_goes_as_a_document_and_is_charged(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_telegram.refuse_photos = "Bad Request: PHOTO_INVALID_DIMENSIONS"
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    reply = await say_and_get_reply(fake_telegram)
    await press_look(fake_telegram, reply)
    await wait_job_settled(bot)
    [document] = photos(fake_telegram)
    assert document.kind == "document"
    assert document.reply_to_message_id == reply.message_id
    assert balance_of(bot) == 0
    # a later press re-sends the document by its file_id
    fake_telegram.refuse_photos = "Bad Request: wrong type of the web page content"
    await press_look(fake_telegram, reply)
    await fake_telegram.wait_for(lambda: len(photos(fake_telegram)) == 2)
    assert photos(fake_telegram)[1].file_id == document.file_id
    await bot.stop()


async def test_telegram_refusing_photo_and_document_is_a_send_error(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_telegram.refuse_photos = "Bad Request: PHOTO_INVALID_DIMENSIONS"
    fake_telegram.fail_next("sendDocument", 400, "Bad Request: file is too big")
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    reply = await say_and_get_reply(fake_telegram)
    await press_look(fake_telegram, reply)
    await wait_job_settled(bot)
    # The chat had its burst of messages and edits: the notice may wait its turn (send budget).
    await fake_telegram.wait_for(lambda: not_status(fake_telegram)[-1].text == t("fail_send", "ru"))
    assert balance_of(bot) == 1
    with bot.store() as store:
        assert events(store)[-1] == ("image_failed", "send_error")
    await bot.stop()


async def test_the_user_cancels_their_running_job(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_comfy.default_script = PromptScript(run_s=60, steps=10)
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    reply = await say_and_get_reply(fake_telegram)
    await press_look(fake_telegram, reply)
    await fake_telegram.wait_for(lambda: fake_comfy.started != [])
    status = next(s for s in fake_telegram.sent if s.text and s.text.startswith("🎨"))
    [(_, cancel_data)] = status.buttons()
    assert cancel_data is not None
    query = fake_telegram.user_presses(status.message_id, cancel_data)
    await wait_job_settled(bot)
    assert fake_telegram.callback_answers[query].text == t("toast_cancelled", "ru")
    assert fake_comfy.interrupted == [fake_comfy.submitted[0].prompt_id]
    assert photos(fake_telegram) == []
    assert balance_of(bot) == 1
    assert (USER, status.message_id) in fake_telegram.deleted
    with bot.store() as store:
        assert events(store)[-1] == ("image_failed", "cancelled")
    await bot.stop()


async def test_cancel_while_waiting_in_our_queue_and_someone_elses_cancel(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_comfy.default_script = PromptScript(outcome=Outcome.HANG)
    bot = await start_bot(
        nursery,
        tmp_path,
        fake_telegram,
        comfy=fake_comfy,
        comfyui_concurrency=1,
        comfyui_timeout_seconds=300,
    )
    for blocker_id in (1001, 1002):  # one drawing, one taken by the second worker
        blocker = await say_and_get_reply(fake_telegram, user_id=blocker_id)
        await press_look(fake_telegram, blocker, user_id=blocker_id)
    reply = await say_and_get_reply(fake_telegram)
    await press_look(fake_telegram, reply)
    behind = await say_and_get_reply(fake_telegram, user_id=1003)  # waits behind ours
    await press_look(fake_telegram, behind, user_id=1003)
    await trio.sleep(5)
    status = [
        s for s in fake_telegram.sent if s.chat_id == USER and s.text and s.text.startswith("🎨")
    ]
    # Behind the second blocker, which waits for the GPU slot: places count it too.
    assert status[0].text == t("status_queued", "ru", position=2)
    [behind_status] = [
        s for s in fake_telegram.sent if s.chat_id == 1003 and "🎨" in (s.text or "")
    ]
    assert behind_status.text == t("status_queued", "ru", position=3)
    [(_, cancel_data)] = status[0].buttons()
    assert cancel_data is not None
    stranger = fake_telegram.user_presses(
        status[0].message_id, cancel_data, user_id=1001, chat_id=USER
    )
    mine = fake_telegram.user_presses(status[0].message_id, cancel_data)
    await fake_telegram.wait_for(lambda: mine in fake_telegram.callback_answers)
    assert fake_telegram.callback_answers[stranger].text == t("toast_nothing_to_cancel", "ru")
    assert fake_telegram.callback_answers[mine].text == t("toast_cancelled", "ru")
    assert len(fake_comfy.submitted) == 1  # ours never reached ComfyUI
    with bot.store() as store:
        assert events(store)[-1] == ("image_failed", "cancelled")
        assert balance(store, USER) == 3
    # the job behind ours moves up at once, not when a worker takes the next ticket
    await fake_telegram.wait_for(
        lambda: any(e.chat_id == 1003 for e in fake_telegram.edits), timeout_s=60
    )
    [edit] = [e for e in fake_telegram.edits if e.chat_id == 1003]
    assert edit.text == t("status_queued", "ru", position=2)
    await bot.stop()


async def test_a_full_queue_is_busy_and_text_replies_stay_on_time(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_comfy.default_script = PromptScript(outcome=Outcome.HANG)
    bot = await start_bot(
        nursery,
        tmp_path,
        fake_telegram,
        comfy=fake_comfy,
        comfyui_concurrency=1,
        image_queue_size=1,
        comfyui_timeout_seconds=300,
    )
    users = [2001, 2002, 2003, 2004]  # drawing, second worker, queued, busy
    replies = [await say_and_get_reply(fake_telegram, user_id=u) for u in users]
    for user, reply in zip(users, replies, strict=True):
        await press_look(fake_telegram, reply, user_id=user)
        await trio.sleep(1)
    last = fake_telegram.callback_answers[list(fake_telegram.callback_answers)[-1]]
    assert last.text == t("fail_busy", "ru")
    assert last.show_alert
    start = trio.current_time()
    chat = await say_and_get_reply(fake_telegram, "ты тут?", user_id=2001)
    assert chat.at - start < 0.5  # the chat does not wait for pictures
    with bot.store() as store:
        assert ("image_failed", "busy") in events(store)
        assert balance(store, 2004) == 3
    await bot.stop()


async def test_subscription_pays_until_it_expires(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    bot = await start_bot(
        nursery,
        tmp_path,
        fake_telegram,
        comfy=fake_comfy,
        free_images=0,
        admin_user_ids="1",
        subscription_daily_images=1,
    )
    fake_telegram.user_says("/subscribe " + str(USER) + " 1", user_id=1)
    first = await say_and_get_reply(fake_telegram, "раз")
    await press_look(fake_telegram, first)
    await wait_job_settled(bot)
    second = await say_and_get_reply(fake_telegram, "два")
    query = await press_look(fake_telegram, second)
    assert fake_telegram.callback_answers[query].text == t("fail_no_quota", "ru")
    bot.clock.advance(days=2)  # expired: no daily allowance any more
    third = await say_and_get_reply(fake_telegram, "три")
    query = await press_look(fake_telegram, third)
    assert fake_telegram.callback_answers[query].text == t("fail_no_quota", "ru")
    assert len(photos(fake_telegram)) == 1
    await bot.stop()


async def test_requested_equals_generated_plus_failed_after_a_mixed_burst(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    bot = await start_bot(
        nursery,
        tmp_path,
        fake_telegram,
        comfy=fake_comfy,
        free_images=1,
        image_queue_size=3,
        comfyui_timeout_seconds=30,
    )
    users = list(range(3001, 3013))
    replies = {u: await say_and_get_reply(fake_telegram, user_id=u) for u in users}
    # The first two pictures cannot land in place, nor go as photos; one of them not even
    # as a document.
    fake_telegram.fail_next(
        "editMessageMedia", 400, "Bad Request: message to edit not found", times=2
    )
    fake_telegram.fail_next("sendPhoto", 400, "Bad Request: PHOTO_INVALID_DIMENSIONS", times=2)
    fake_telegram.fail_next("sendDocument", 400, "Bad Request: file is too big", times=1)
    fake_comfy.script_in_turn(
        [
            PromptScript(),
            PromptScript(),
            PromptScript(outcome=Outcome.ERROR),
            PromptScript(outcome=Outcome.HANG),
        ]
    )
    for user in users:
        fake_telegram.user_presses(replies[user].message_id, "look", user_id=user)
        fake_telegram.user_presses(replies[user].message_id, "look", user_id=user)  # double tap
    await trio.sleep(1)
    await wait_job_settled(bot, jobs=1)
    await trio.sleep(600)
    with bot.store() as store:
        requested = store.events.count("image_requested")
        finished = store.events.count("image_generated") + store.events.count("image_failed")
        active = store.jobs.unfinished()
        delivered = list(
            store.db.query(
                "SELECT chat_id, count(*) AS n FROM jobs WHERE state = 'delivered' GROUP BY chat_id"
            )
        )
        balances = {u: balance(store, u) for u in users}
        outcomes = {reason for event, reason in events(store) if event != "image_requested"}
    assert outcomes >= {None, "busy", "generation_error", "send_error"}
    assert active == []
    assert requested == finished
    assert requested >= len(users)
    assert all(row["n"] == 1 for row in delivered)  # one picture per message at most
    uploads = [s for s in fake_telegram.sent if s.kind in ("photo", "document") and s.content]
    assert len(uploads) == len(delivered)  # every upload delivered is one charge
    charged = {row["chat_id"] for row in delivered}
    assert balances == {u: 0 if u in charged else 1 for u in users}
    await bot.stop()


async def test_a_press_is_answered_at_once_while_the_chat_waits_for_a_slow_llm(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    async def slow_llm(request: httpx.Request) -> httpx.Response:
        await trio.sleep(25)
        return httpx.Response(200, json={"choices": [{"message": {"content": "ну вот"}}]})

    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, llm=slow_llm)
    reply = await say_and_get_reply(fake_telegram)
    fake_telegram.user_says("а что дальше?")  # its answer takes 25 s
    await trio.sleep(1)
    start = trio.current_time()
    query = fake_telegram.user_presses(reply.message_id, "look")
    await fake_telegram.wait_for(lambda: query in fake_telegram.callback_answers)
    assert fake_telegram.callback_answers[query].at == start
    await bot.stop()


async def test_waiting_jobs_show_their_place_moving_up_and_no_chat_action(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_comfy.default_script = PromptScript(run_s=30, steps=3)
    bot = await start_bot(
        nursery, tmp_path, fake_telegram, comfy=fake_comfy, comfyui_concurrency=1,
        image_queue_size=5, comfyui_timeout_seconds=300,
    )  # fmt: skip
    # first: drawing; second: taken by the second worker, waiting for the GPU slot;
    # third and fourth: in our queue
    first, second, third, fourth = 7001, 7002, 7003, 7004
    for user in (first, second, third, fourth):
        reply = await say_and_get_reply(fake_telegram, user_id=user)
        await press_look(fake_telegram, reply, user_id=user)
    pressed_at = trio.current_time()

    def status_messages() -> list[SentRecord]:
        return [s for s in fake_telegram.sent if s.chat_id == fourth and "🎨" in (s.text or "")]

    await fake_telegram.wait_for(lambda: status_messages() != [])
    [status] = status_messages()
    assert status.at == pressed_at  # posted with the press's answer
    # Third in line: behind the second (waiting for the GPU slot) and the third.
    assert status.text == t("status_queued", "ru", position=3)
    await trio.sleep(18)  # the first picture is still being drawn
    # A wait has its status message; "sending a photo" belongs to an upload only.
    assert fake_telegram.chat_actions == []

    def status_edits() -> list[EditRecord]:
        return [
            e
            for e in fake_telegram.edits
            if (e.chat_id, e.message_id) == (fourth, status.message_id)
        ]

    await fake_telegram.wait_for(lambda: status_edits() != [], timeout_s=60)
    [edit] = status_edits()
    assert edit.text == t("status_queued", "ru", position=2)
    assert edit.at == pressed_at + 30 + MIN_EDIT_INTERVAL_S  # the first picture took 30 s

    # The second waits for the GPU slot no more; the third does, and says where it stands.
    def third_edits() -> list[str | None]:
        return [e.text for e in fake_telegram.edits if e.chat_id == third]

    await fake_telegram.wait_for(lambda: third_edits() != [], timeout_s=60)
    assert third_edits()[-1] == t("status_queued", "ru", position=1)
    await bot.stop()


async def test_a_slow_upload_shows_sending_a_photo_and_only_while_it_lasts(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy)
    fake_telegram.latency_s["editMessageMedia"] = 8.5
    reply = await say_and_get_reply(fake_telegram)
    await press_look(fake_telegram, reply)
    await fake_telegram.wait_for(lambda: len(photos(fake_telegram)) == 1)
    [upload] = [r for r in fake_telegram.requests if r.method == "editMessageMedia"]
    actions = [a.at - upload.at for a in fake_telegram.chat_actions]
    # From one second into the upload, every four seconds, until it ends 8.5 s in.
    assert actions == [1.0, 5.0]
    assert all(a.action == "upload_photo" for a in fake_telegram.chat_actions)
    await bot.stop()


async def test_a_status_message_the_user_deleted_gets_the_picture_as_a_new_photo(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    """The edit is refused ("message to edit not found"): the picture goes as a new photo
    replying to the text, delivered and charged once."""
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=2)
    fake_telegram.fail_next("editMessageMedia", 400, "Bad Request: message to edit not found")
    reply = await say_and_get_reply(fake_telegram)
    await press_look(fake_telegram, reply)
    await fake_telegram.wait_for(lambda: len(photos(fake_telegram)) == 1)
    await wait_job_settled(bot)
    [photo] = photos(fake_telegram)
    assert fake_telegram.media_edits == []
    assert photo.reply_to_message_id == reply.message_id
    assert photo.buttons() == [(t("variant_button", "ru"), f"variant:{reply.message_id}")]
    status = [r for r in fake_telegram.requests if r.method == "sendMessage"
              and str(r.params.get("text", "")).startswith("🎨")]  # fmt: skip
    assert len(status) == 1  # and it is deleted, not left showing a finished job
    await fake_telegram.wait_for(lambda: len(fake_telegram.deleted) == 1)
    assert balance_of(bot) == 1
    with bot.store() as store:
        assert events(store) == [("image_requested", None), ("image_generated", None)]
    await bot.stop()
