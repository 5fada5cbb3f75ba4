"""``spool/`` holds a picture only while its job is active: deleted on every end, swept at
every start."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from bot.core.texts import t
from bot.pictures.lifecycle import ENDS, Exit
from bot.pictures.spool import sweep
from tests.fakes.comfy import FakeComfy
from tests.fakes.telegram import DEFAULT_USER_ID, FakeTelegram, SentRecord
from tests.harness import Bot, start_bot
from tests.rows import balance

USER = DEFAULT_USER_ID


def test_every_exit_but_a_stop_ends_the_job_and_its_file() -> None:
    assert [exit_ for exit_ in Exit if not ENDS[exit_].final] == [Exit.SHUTDOWN]


def test_the_sweep_keeps_the_named_files_and_folders(tmp_path: Path) -> None:
    for name in ("job1.png", "job2.webp", "stray.png", ".partial"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert sweep(tmp_path, keep=[str(tmp_path / "job1.png"), None, "elsewhere/job2.webp"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job1.png", "job2.webp", "sub"]
    assert sweep(tmp_path / "missing", keep=[]) == 0


def spool_files(tmp_path: Path) -> list[str]:
    folder = tmp_path / "data" / "spool"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def uploads(tg: FakeTelegram) -> list[SentRecord]:
    return [s for s in tg.sent if s.kind in ("photo", "document") and s.content]


async def settled(bot: Bot) -> None:
    def done() -> bool:
        with bot.store() as store:
            rows = list(store.db.query("SELECT state FROM jobs"))
        return bool(rows) and all(r["state"] in ("delivered", "failed") for r in rows)

    with trio.fail_after(600):
        while not done():  # noqa: ASYNC110 (a second connection has no event to wait on)
            await trio.sleep(0.5)


async def press_once(tg: FakeTelegram) -> SentRecord:
    tg.user_says("привет")
    await tg.wait_for(lambda: len(tg.sent) == 1)
    reply = tg.sent[0]
    query = tg.user_presses(reply.message_id, "look")
    await tg.wait_for(lambda: query in tg.callback_answers)
    return reply


async def test_a_picture_telegram_refuses_leaves_no_file(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_telegram.refuse_photos = "Bad Request: PHOTO_INVALID_DIMENSIONS"
    fake_telegram.fail_next("sendDocument", 400, "Bad Request: file is too big")
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    await press_once(fake_telegram)
    await settled(bot)
    await fake_telegram.wait_for(lambda: fake_telegram.sent[-1].text == t("fail_send", "ru"))
    assert spool_files(tmp_path) == []
    await bot.stop()


async def test_a_user_who_blocked_the_bot_leaves_no_file(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    await press_once(fake_telegram)
    fake_telegram.blocked.add(USER)  # before the picture is ready
    await settled(bot)
    with bot.store() as store:
        assert [r["reason"] for r in store.events.since() if r["event"] == "image_failed"] == [
            "send_error"
        ]
    assert spool_files(tmp_path) == []
    await bot.stop()


def before_send_photo(request: httpx.Request) -> bool:
    return request.url.path.endswith("/editMessageMedia")


async def leave_a_downloaded_job(
    nursery: trio.Nursery, tmp_path: Path, tg: FakeTelegram, comfy: FakeComfy
) -> str:
    """A process killed with the picture on disk, before sending it; the file's name."""
    bot = await start_bot(nursery, tmp_path, tg, comfy=comfy, free_images=1)
    bot.crash_at(before_send_photo)
    await press_once(tg)
    with trio.fail_after(300):
        await bot.done.wait()
    (name,) = spool_files(tmp_path)
    return name


async def test_a_restart_without_comfyui_deletes_the_pictures_it_releases(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    await leave_a_downloaded_job(nursery, tmp_path, fake_telegram, fake_comfy)
    bot = await start_bot(nursery, tmp_path, fake_telegram, free_images=1)  # no ComfyUI now
    await fake_telegram.wait_for(lambda: fake_telegram.sent[-1].text == t("fail_generation", "ru"))
    with bot.store() as store:
        assert balance(store, USER) == 1
    assert spool_files(tmp_path) == []
    await bot.stop()


async def test_a_start_sweeps_orphans_and_keeps_the_picture_an_active_job_waits_with(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    name = await leave_a_downloaded_job(nursery, tmp_path, fake_telegram, fake_comfy)
    folder = tmp_path / "data" / "spool"
    # Left by jobs that ended in a process that died before deleting them.
    (folder / "0123456789abcdef0123456789abcdef.png").write_bytes(b"old picture")
    (folder / "stray.jpg").write_bytes(b"old picture")
    # The sweep is over before the picture is sent (in place, or as a new photo: the
    # status message's id was let go before the first try).
    fake_telegram.latency_s["editMessageMedia"] = fake_telegram.latency_s["sendPhoto"] = 30
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    await trio.sleep(1)
    assert spool_files(tmp_path) == [name]  # the active job's picture, and nothing else
    await fake_telegram.wait_for(lambda: len(uploads(fake_telegram)) == 1, timeout_s=300)
    await settled(bot)
    assert len(fake_comfy.submitted) == 1  # delivered from the file, not drawn again
    assert spool_files(tmp_path) == []
    await bot.stop()


async def test_a_cancelled_resumed_job_waiting_with_its_picture_leaves_no_file(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    users = [USER, USER + 1, USER + 2]
    # Uploads that never end, in place or as new photos.
    fake_telegram.latency_s["editMessageMedia"] = fake_telegram.latency_s["sendPhoto"] = 10_000
    photos_sent = 0

    def third_photo(request: httpx.Request) -> bool:
        nonlocal photos_sent
        photos_sent += before_send_photo(request)
        return photos_sent == 3

    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    bot.crash_at(third_photo)  # killed with three pictures on disk
    for user_id in users:
        fake_telegram.user_says("привет", user_id=user_id)
        await fake_telegram.wait_for(lambda: fake_telegram.texts_to(user_id) != [])  # noqa: B023
        reply = next(s for s in fake_telegram.sent if s.chat_id == user_id)
        fake_telegram.user_presses(reply.message_id, "look", user_id=user_id)
    with trio.fail_after(600):
        await bot.done.wait()
    with bot.store() as store:
        jobs = store.jobs.unfinished()
        # As if the kill had come a moment earlier, before the third upload began: its
        # row still says downloaded (an upload that began could be cancelled no more).
        store.db.execute("UPDATE jobs SET state = 'downloaded' WHERE job_id = ?", [jobs[-1].job_id])
    assert len(spool_files(tmp_path)) == 3
    # Two workers, both stuck sending the first two pictures: the third job waits.
    bot = await start_bot(
        nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1, comfyui_concurrency=1
    )
    await trio.sleep(5)
    last = jobs[-1]
    query = fake_telegram.user_presses(
        last.message_id, f"cancel:{last.job_id}", user_id=last.user_id
    )
    await fake_telegram.wait_for(lambda: query in fake_telegram.callback_answers)
    assert fake_telegram.callback_answers[query].text == t("toast_cancelled", "ru")
    assert spool_files(tmp_path) == sorted(Path(job.spool_path or "").name for job in jobs[:2])
    await bot.stop()
