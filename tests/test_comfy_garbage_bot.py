"""The whole bot in-process behind a proxy that garbles some of ComfyUI's answers: the
chat goes on, nothing is charged for what is not a picture, and nothing that is not a
picture reaches the user (docs/comfyui.md, C26)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import WebSocketConnection

from bot.core.logs import plain_fields
from bot.core.texts import t
from tests.fakes.comfy import PNG_MAGIC, FakeComfy
from tests.fakes.telegram import DEFAULT_USER_ID, FakeTelegram, SentRecord
from tests.harness import Bot, start_bot
from tests.rows import balance

USER = DEFAULT_USER_ID
HTML_PAGE = b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head></html>"
Reply = Callable[[httpx.Request], httpx.Response]


class Proxied:
    """*fake* behind a proxy that answers requests whose path starts with a key of
    *garbage* itself; the websocket passes through."""

    def __init__(self, fake: FakeComfy, garbage: dict[str, Reply]) -> None:
        self.fake = fake
        self.garbage = garbage

    async def handler(self, request: httpx.Request) -> httpx.Response:
        for prefix, reply in self.garbage.items():
            if request.url.path.startswith(prefix):
                return reply(request)
        return await self.fake.handler(request)

    def open_ws(self, client_id: str) -> AbstractAsyncContextManager[WebSocketConnection]:
        return self.fake.open_ws(client_id)


def html_as_png(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=HTML_PAGE, headers={"content-type": "image/png"})


def broken_gzip(request: httpx.Request) -> httpx.Response:
    headers = {"content-encoding": "gzip", "content-type": "application/json"}
    return httpx.Response(200, headers=headers, stream=httpx.ByteStream(b"\x1f\x8b\x08 broken"))


def transport_bug(request: httpx.Request) -> httpx.Response:
    raise RuntimeError("a bug below the client")


def uploads(tg: FakeTelegram) -> list[SentRecord]:
    return [s for s in tg.sent if s.kind in ("photo", "document")]


def not_status(tg: FakeTelegram) -> list[SentRecord]:
    return [s for s in tg.sent if not (s.text or "").startswith("🎨")]


async def wait_settled(bot: Bot) -> None:
    def settled() -> bool:
        with bot.store() as store:
            rows = list(store.db.query("SELECT state FROM jobs"))
        return bool(rows) and all(r["state"] in ("delivered", "failed") for r in rows)

    with trio.fail_after(600):
        while not settled():  # noqa: ASYNC110 (a second connection has no event to wait on)
            await trio.sleep(0.5)


async def test_an_html_page_from_view_is_neither_sent_nor_charged(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    comfy = Proxied(fake_comfy, {"/view": html_as_png})
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=comfy, free_images=1)
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    reply = fake_telegram.sent[0]
    fake_telegram.user_presses(reply.message_id, "look")
    await wait_settled(bot)
    assert uploads(fake_telegram) == []  # not as a photo, not as a document
    notice = not_status(fake_telegram)[-1]
    assert notice.text == t("fail_generation", "ru")
    assert notice.reply_to_message_id == reply.message_id
    with bot.store() as store:
        assert balance(store, USER) == 1
        rows = store.events.since()
    assert [(r["event"], r["reason"]) for r in rows] == [
        ("image_requested", None),
        ("image_failed", "generation_error"),
    ]
    assert rows[1]["detail"] == (
        "ComfyProtocolError: GET /view for 'persona_bot_00001_.png' answered image/png, "
        "72 bytes, starting '<!DOCTYPE html> <html><head><title>502 Bad Gatew…', "
        "not a PNG, JPEG or WebP picture"
    )
    assert not list((tmp_path / "data" / "spool").iterdir())
    await bot.stop()


@pytest.mark.parametrize(
    ("object_info", "logged"),
    [
        (
            broken_gzip,
            'comfy_preflight_models_not_listed server=comfy.test:8188 error="ComfyProtocolError:'
            " GET /object_info/CheckpointLoaderSimple: compressed body does not decompress: ",
        ),
        (
            transport_bug,
            "comfy_preflight_failed server=comfy.test:8188",
        ),
    ],
    ids=["broken-gzip", "bug-below-the-client"],
)
async def test_a_preflight_that_cannot_read_object_info_only_logs(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
    caplog: pytest.LogCaptureFixture,
    object_info: Reply,
    logged: str,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.pictures.preflight")
    comfy = Proxied(fake_comfy, {"/object_info/": object_info})
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=comfy, free_images=1)
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    fake_telegram.user_presses(fake_telegram.sent[0].message_id, "look")
    await fake_telegram.wait_for(lambda: len(uploads(fake_telegram)) == 1)  # pictures still work
    [record] = [r for r in caplog.records if r.name == "bot.pictures.preflight"]
    assert (record.getMessage() + plain_fields(record)).startswith(logged)
    assert not bot.done.is_set()
    await bot.stop()


async def test_a_spool_file_that_is_not_a_picture_is_drawn_again_not_sent(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.sent) == 1)
    bot.crash_at(lambda r: r.url.path.endswith("/editMessageMedia"))  # killed with the file spooled
    fake_telegram.user_presses(fake_telegram.sent[0].message_id, "look")
    with trio.fail_after(300):
        await bot.done.wait()
    [spooled] = list((tmp_path / "data" / "spool").iterdir())
    spooled.write_bytes(HTML_PAGE)  # as an older version, which did not check, kept it

    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=1)
    await wait_settled(bot)
    [photo] = uploads(fake_telegram)
    assert photo.content is not None
    assert photo.content.startswith(PNG_MAGIC)
    assert len(fake_comfy.submitted) == 2  # looked up first, then drawn again
    with bot.store() as store:
        assert balance(store, USER) == 0
        assert store.events.count("image_generated") == 1
        assert store.events.count("image_failed") == 0
    assert not spooled.exists()
    await bot.stop()
