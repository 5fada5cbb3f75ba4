"""The baseline: a bot of the original design, which polls ``/history`` for each picture.

``python -m benchmarks.baseline_bot --poll 1.0`` is a small bot built from the product's
own parts (the Bot API client, the ComfyUI client, the workflow template, the shipped
personas) the way the first design described it: long polling; a reply with
«👁️ Посмотреть» to every text; on a press, ``POST /prompt``, then ``GET /history/{id}``
every ``--poll`` seconds until the outputs appear, ``GET /view``, and ``sendPhoto``. At
most ``COMFYUI_CONCURRENCY`` pictures at once, no websocket, no quota, no status message:
everything the bot does beyond drawing is left out, which only flatters the baseline.

It reads the same settings as the bot (the benchmark's environment) and writes each
press's ``prompt_id`` to a ``jobs`` table in ``DATABASE_PATH``, where the benchmark's
timelines look for it. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sqlite3
import sys
import uuid
from pathlib import Path
from typing import Any, Final

import httpx
import trio

from bot.chat.keyboards import look_keyboard
from bot.core.personas import load_personas
from bot.core.settings import Settings, load_settings
from bot.telegram.client import TelegramApi
from comfy import ComfyClient, WorkflowTemplate
from comfy.protocol import Signal, probe_from_history

__all__ = ["main"]

log = logging.getLogger("benchmarks.baseline_bot")

LONG_POLL_S: Final = 50
REPLY: Final = "Смотри: я сижу у окна, за стеклом закат."
HTTP_TIMEOUT: Final = httpx.Timeout(60.0, connect=10.0)


class BaselineBot:
    """Polling, replies and presses; each press drawn by polling ``/history``."""

    def __init__(self, settings: Settings, api: TelegramApi, comfy: ComfyClient, poll_s: float):
        self._settings = settings
        self._api = api
        self._comfy = comfy
        self._poll_s = poll_s
        self._limiter = trio.CapacityLimiter(settings.comfyui_concurrency)
        self._template = WorkflowTemplate.from_file(settings.workflow_file)
        book = load_personas(settings.personas_file)
        self._config = book.image_config(book.default)
        self._rng = random.Random()
        self._db = _open_jobs(settings.database_path)

    async def run(self) -> None:
        offset: int | None = None
        async with trio.open_nursery() as nursery:
            while True:
                updates = await self._api.get_updates(
                    offset=offset, timeout_s=LONG_POLL_S, allowed_updates=()
                )
                for update in updates:
                    offset = int(update["update_id"]) + 1
                    nursery.start_soon(self._handle, update)

    async def _handle(self, update: dict[str, Any]) -> None:
        message = update.get("message")
        if message is not None and message.get("text"):
            await self._api.send_message(
                message["chat"]["id"], REPLY, reply_markup=look_keyboard("ru")
            )
            return
        query = update.get("callback_query")
        if query is not None and query.get("data") == "look":
            await self._api.answer_callback_query(query["id"])
            pressed = query["message"]
            await self._draw(pressed["chat"]["id"], pressed["message_id"])

    async def _draw(self, chat_id: int, message_id: int) -> None:
        prompt_id = str(uuid.uuid4())
        self._db.execute(
            "INSERT INTO jobs (chat_id, message_id, prompt_id) VALUES (?, ?, ?)",
            (chat_id, message_id, prompt_id),
        )
        params = self._config.prompt_params(
            scene=None,
            default_checkpoint=self._settings.comfyui_default_checkpoint,
            rng=self._rng,
        )
        async with self._limiter:
            with trio.fail_after(self._settings.comfyui_timeout_seconds):
                await self._comfy.submit(
                    self._template.build(params), prompt_id=prompt_id, client_id=None
                )
                data, filename = await self._poll_and_download(prompt_id)
        await self._api.send_photo(chat_id, data, filename=filename, reply_to_message_id=message_id)

    async def _poll_and_download(self, prompt_id: str) -> tuple[bytes, str]:
        while True:
            await trio.sleep(self._poll_s)
            entry = await self._comfy.get_history(prompt_id)
            if entry is None:
                continue
            probe = probe_from_history(entry)
            if probe.signal is not Signal.FOUND_SUCCESS or not probe.images:
                raise RuntimeError(f"prompt {prompt_id}: history says {probe.signal.value}")
            image = probe.images[0]
            return (await self._comfy.download(image)).data, image.filename


def _open_jobs(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(
        "CREATE TABLE IF NOT EXISTS jobs (chat_id INTEGER, message_id INTEGER, prompt_id TEXT)"
    )
    return db


async def _run(poll_s: float) -> None:
    settings = load_settings()
    (server,) = settings.comfyui_servers
    async with (
        httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http,
        httpx.AsyncClient(base_url=server.url, timeout=HTTP_TIMEOUT) as comfy_http,
        trio.open_nursery() as nursery,
    ):
        api = TelegramApi(http, settings.token, base_url=str(settings.telegram_api_base))
        bot = BaselineBot(settings, api, ComfyClient(comfy_http), poll_s)
        nursery.start_soon(bot.run)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between polls")
    args = parser.parse_args(argv)
    if args.poll <= 0:
        parser.error(f"--poll must be positive, not {args.poll!r}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
    trio.run(_run, args.poll)
    return 0


if __name__ == "__main__":
    sys.exit(main())
