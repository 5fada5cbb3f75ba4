"""Live previews end to end, in-process: the status message becomes the forming picture,
then the picture itself; previews never cost a credit, a picture, or a chat's budget."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client import REGISTRY

from bot.core.texts import t
from bot.pictures.status import (
    GROUP_PREVIEW_INTERVAL_S,
    PREVIEW_INTERVAL_S,
    Action,
    Drawing,
    StatusBoard,
    StatusLine,
    StatusView,
    next_action,
    render,
)
from bot.telegram.client import TelegramApi
from comfy import Preview, ProgressStage, PromptProgress
from store import open_store
from tests.fakes.comfy import JPEG_MAGIC, PNG_MAGIC, FakeComfy, PromptScript
from tests.fakes.telegram import FakeTelegram, SentRecord
from tests.harness import start_bot
from tests.test_image_flow import USER, events, press_look, say_and_get_reply, wait_job_settled

JOB = "p" * 32
PICTURE = Preview(JPEG_MAGIC + b"forming", "image/jpeg")


def previews_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("persona_bot_previews_total", {"outcome": outcome}) or 0.0


def previews(tg: FakeTelegram) -> list[SentRecord]:
    return [r for r in tg.media_edits if (r.content or b"").startswith(JPEG_MAGIC)]


def drawn(value: int, maximum: int = 10, *, preview: Preview | None = PICTURE) -> PromptProgress:
    return PromptProgress(ProgressStage.RUNNING, value, maximum, preview=preview)


# -- the rules -----------------------------------------------------------------------


def line_with(**fields: object) -> StatusLine:
    view = render(Drawing(40), "ru")
    line = StatusLine(JOB, USER, 1, "ru", wanted=view, shown=view, message_id=7)
    for name, value in fields.items():
        setattr(line, name, value)
    return line


CHANGED: dict[str, object] = {
    "written_at": 0.0,
    "wanted": StatusView("x", cancellable=True),
    "changed_at": 0.0,
}


@pytest.mark.parametrize(
    ("fields", "chat_preview_at", "now", "expected"),
    [
        ({"preview": PICTURE, "written_at": 0.0}, -math.inf, 1.9, 2.0),
        ({"preview": PICTURE, "written_at": 0.0}, -math.inf, 2.0, Action.PREVIEW),
        # Another status message of the same chat had a preview at 1.5.
        ({"preview": PICTURE, "written_at": 0.0}, 1.5, 2.0, 3.5),
        # The picture is taking the message over: nothing more for it.
        ({"preview": PICTURE, "handed": True}, -math.inf, 9.0, None),
        ({"preview": PICTURE, "busy": True}, -math.inf, 9.0, None),
        # A changed status and a preview: whichever is due first; the preview carries both.
        (
            {
                "preview": PICTURE,
                "written_at": 0.0,
                "wanted": StatusView("x", True),
                "changed_at": 0.0,
            },
            -math.inf,
            2.5,
            Action.PREVIEW,
        ),
        (
            {
                "preview": PICTURE,
                "written_at": 0.0,
                "wanted": StatusView("x", True),
                "changed_at": 0.0,
            },
            5.0,
            3.0,
            Action.EDIT,
        ),
        (CHANGED, -math.inf, 1.0, 3.0),
    ],
)
def test_when_a_preview_goes(
    fields: dict[str, object], chat_preview_at: float, now: float, expected: object
) -> None:
    line = line_with(**fields)
    assert next_action(line, now, chat_preview_at=chat_preview_at) == expected


def test_a_group_gets_previews_five_times_less_often() -> None:
    assert GROUP_PREVIEW_INTERVAL_S == 5 * PREVIEW_INTERVAL_S
    line = line_with(preview=PICTURE, written_at=0.0, chat_id=-100)
    assert next_action(line, 2.0, preview_interval_s=GROUP_PREVIEW_INTERVAL_S) == 10.0


# -- the board against the fake Bot API ------------------------------------------------


@asynccontextmanager
async def drawing_board(
    api: TelegramApi, telegram: FakeTelegram, nursery: trio.Nursery
) -> AsyncIterator[StatusBoard]:
    """A running board with one job drawing, its status message posted."""
    with open_store(":memory:") as store:
        board = StatusBoard(api, store.jobs)
        await nursery.start(board.run)
        board.open(JOB, chat_id=USER, reply_to=1, lang="ru", status=Drawing(0))
        await telegram.wait_for(lambda: telegram.sent != [])
        yield board


async def test_a_preview_turns_the_message_into_a_photo_and_the_status_into_its_caption(
    telegram_api: TelegramApi,
    fake_telegram: FakeTelegram,
    nursery: trio.Nursery,
    autojump_clock: object,
) -> None:
    fake_telegram.user_says("hi", user_id=USER)
    shown_before = previews_counted("shown")
    async with drawing_board(telegram_api, fake_telegram, nursery) as board:
        start = trio.current_time()
        for step in range(1, 10):  # a step a second, each with its picture
            board.show_progress(JOB, drawn(step))
            await trio.sleep(1.0)
        shown = previews(fake_telegram)
        assert previews_counted("shown") - shown_before == len(shown)
        # At most one every PREVIEW_INTERVAL_S, each with the status under it.
        assert 3 <= len(shown) <= 5
        times = [r.at for r in shown]
        assert all(b - a >= PREVIEW_INTERVAL_S for a, b in itertools.pairwise(times))
        assert shown[0].at - start <= PREVIEW_INTERVAL_S
        assert all(r.caption and r.caption.startswith("🎨") for r in shown)
        assert all(("cancel" in str(r.reply_markup)) for r in shown)
        # A change with no new picture edits the caption, never the (absent) text.
        board.show_progress(JOB, drawn(10, preview=None))
        await trio.sleep(5.0)
        assert fake_telegram.caption_edits[-1].text == t("status_running", "ru", percent=100)
        assert fake_telegram.edits == []
        message_id = await board.hand_over(JOB)
        assert message_id == shown[0].message_id
        # The chat's last preview is forgotten once it constrains nothing: the board
        # remembers chats with recent previews, not every chat that ever had one.
        assert USER in board._chat_preview_at
        await trio.sleep(GROUP_PREVIEW_INTERVAL_S)
        board.open("q" * 32, chat_id=USER, reply_to=1, lang="ru", status=Drawing(0))
        await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 2)
        assert board._chat_preview_at == {}


async def test_the_picture_waits_for_a_preview_upload_still_in_flight(
    telegram_api: TelegramApi,
    fake_telegram: FakeTelegram,
    nursery: trio.Nursery,
    autojump_clock: object,
) -> None:
    fake_telegram.user_says("hi", user_id=USER)
    fake_telegram.latency_s = {"editMessageMedia": 4.0}
    async with drawing_board(telegram_api, fake_telegram, nursery) as board:
        board.show_progress(JOB, drawn(3))
        await trio.sleep(PREVIEW_INTERVAL_S + 1.0)  # the upload is under way
        assert previews(fake_telegram) == []
        before = trio.current_time()
        message_id = await board.hand_over(JOB)
        assert message_id is not None
        assert trio.current_time() > before  # it waited for the upload to land ...
        [landed] = previews(fake_telegram)
        assert landed.at <= trio.current_time()
        board.show_progress(JOB, drawn(5))  # ... and nothing more goes to that message
        await trio.sleep(30)
        assert len(fake_telegram.media_edits) == 1


async def test_a_refused_preview_leaves_text_progress_as_it_was(
    telegram_api: TelegramApi,
    fake_telegram: FakeTelegram,
    nursery: trio.Nursery,
    autojump_clock: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.pictures.status")
    fake_telegram.user_says("hi", user_id=USER)
    fake_telegram.refuse_photos = "Bad Request: not enough rights to send photos to the chat"
    refused_before = previews_counted("refused")
    async with drawing_board(telegram_api, fake_telegram, nursery) as board:
        for step in range(1, 9):
            board.show_progress(JOB, drawn(step))
            await trio.sleep(1.0)
        await trio.sleep(5.0)
    assert fake_telegram.media_edits == []
    assert fake_telegram.edits[-1].text == t("status_running", "ru", percent=80)
    refused = [r for r in caplog.records if r.getMessage() == "status_preview_refused"]
    assert len(refused) == 1  # tried once, then text only
    assert previews_counted("refused") - refused_before == 1


async def test_a_preview_lost_to_the_network_is_followed_by_the_next_one(
    telegram_api: TelegramApi,
    fake_telegram: FakeTelegram,
    nursery: trio.Nursery,
    autojump_clock: object,
) -> None:
    """Only Telegram's refusal ends previews; a Bot API that is down for a while does not."""
    fake_telegram.user_says("hi", user_id=USER)
    down_until = math.inf

    def bad_gateway(method: str, request: httpx.Request) -> httpx.Response | None:
        if method == "editMessageMedia" and trio.current_time() < down_until:
            return httpx.Response(502, text="<html>Bad Gateway</html>")
        return None

    fake_telegram.interpose = bad_gateway
    async with drawing_board(telegram_api, fake_telegram, nursery) as board:
        board.show_progress(JOB, drawn(1))
        await trio.sleep(60.0)  # every try of that preview failed
        assert previews(fake_telegram) == []
        down_until = trio.current_time()
        board.show_progress(JOB, drawn(2))
        await trio.sleep(5.0)
        assert len(previews(fake_telegram)) == 1


async def test_an_adopted_photo_message_gets_its_status_as_a_caption(
    telegram_api: TelegramApi,
    fake_telegram: FakeTelegram,
    nursery: trio.Nursery,
    autojump_clock: object,
) -> None:
    """After a restart the board does not know the message became a photo; Telegram's
    refusal of a text edit tells it."""
    fake_telegram.user_says("hi", user_id=USER)
    photo = await telegram_api.send_photo(USER, PNG_MAGIC + b"preview", caption="🎨 …")
    with open_store(":memory:") as store:
        board = StatusBoard(telegram_api, store.jobs)
        await nursery.start(board.run)
        board.adopt(JOB, chat_id=USER, reply_to=1, lang="ru", message_id=photo.message_id)
        board.show(JOB, Drawing(50))
        await fake_telegram.wait_for(lambda: fake_telegram.caption_edits != [], timeout_s=30)
    assert fake_telegram.caption_edits[-1].text == t("status_running", "ru", percent=50)


# -- the whole bot ---------------------------------------------------------------------


async def test_a_press_shows_the_forming_picture_then_the_picture_in_the_same_message(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_comfy.preview_method = "latent2rgb"  # a 0.3.64 server started with previews
    fake_comfy.default_script = PromptScript(run_s=12.0, steps=6)
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=2)
    reply = await say_and_get_reply(fake_telegram)
    await press_look(fake_telegram, reply)
    await wait_job_settled(bot)
    shown = previews(fake_telegram)
    assert len(shown) >= 3
    final = fake_telegram.media_edits[-1]
    assert final.content is not None
    assert final.content.startswith(PNG_MAGIC)
    assert final.caption is None  # the preview's caption went with it
    assert final.buttons() == [(t("variant_button", "ru"), f"variant:{reply.message_id}")]
    assert {r.message_id for r in fake_telegram.media_edits} == {final.message_id}
    assert [s.kind for s in fake_telegram.sent if s.message_id == final.message_id] == ["photo"]
    assert fake_telegram.deleted == []
    assert "sendPhoto" not in fake_telegram.calls
    with bot.store() as store:
        assert events(store) == [("image_requested", None), ("image_generated", None)]


async def test_previews_are_asked_for_per_prompt_on_a_newer_server_and_not_when_off(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_comfy.jobs_api = True  # after 0.3.64: no previews unless the prompt asks
    fake_comfy.default_script = PromptScript(run_s=12.0, steps=6)
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=2)
    reply = await say_and_get_reply(fake_telegram)
    await press_look(fake_telegram, reply)
    await wait_job_settled(bot)
    [submitted] = fake_comfy.submitted
    assert submitted.preview_method == "latent2rgb"
    assert len(previews(fake_telegram)) >= 3


async def test_with_previews_off_nothing_is_asked_and_frames_are_not_shown(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    fake_comfy.preview_method = "latent2rgb"  # the server sends them anyway
    fake_comfy.default_script = PromptScript(run_s=12.0, steps=6)
    bot = await start_bot(
        nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=2, comfyui_previews="off"
    )
    reply = await say_and_get_reply(fake_telegram)
    await press_look(fake_telegram, reply)
    await wait_job_settled(bot)
    [submitted] = fake_comfy.submitted
    assert submitted.preview_method is None
    assert fake_comfy.previews_sent == 6
    assert previews(fake_telegram) == []
    assert len(fake_telegram.media_edits) == 1  # the picture itself
