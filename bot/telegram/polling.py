"""Telegram long polling that neither loses nor repeats an update across restarts.

Telegram forgets an update once ``getUpdates`` is called with a higher offset
(docs/telegram.md, T3). So each batch is written to a durable inbox, together with the
next offset, in one transaction *before* the next ``getUpdates`` confirms it; the
dispatcher marks an update done once its handler returned. After a restart, updates
received but not done are sent again (once), and polling resumes from the stored offset.

Failures never end polling, except a 401 (the token is wrong) and a store error no wait
can mend (a damaged database): a 409 (another poller, or a webhook) is explained in one
log line and backed off; transient errors are retried by :class:`TelegramApi` and then
backed off here; a locked database is waited out (``store.patience``).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import trio
from pydantic import ValidationError

from bot.telegram.client import TelegramApi
from bot.telegram.errors import TelegramConflict, TelegramError, TelegramUnauthorized
from bot.telegram.inbox import Inbox
from bot.telegram.types import Update
from common.backoff import backoff_delays
from common.logfields import fields
from common.metrics import TELEGRAM_LAST_POLL
from store.patience import FOREVER, persist

__all__ = [
    "ALLOWED_UPDATES",
    "LONG_POLL_TIMEOUT_S",
    "parse_update",
    "prepare_polling",
    "run_polling",
]

ALLOWED_UPDATES: Final = ("message", "callback_query", "my_chat_member", "pre_checkout_query")
LONG_POLL_TIMEOUT_S: Final = 50  # seconds; Telegram's server caps it at 50 (docs/telegram.md, T4)
CONFLICT_BACKOFF_INITIAL_S: Final = 10.0  # seconds; equal jitter: the first wait is 5-10 s
CONFLICT_BACKOFF_MAXIMUM_S: Final = 60.0  # seconds; waits grow to 30-60 s
ERROR_BACKOFF_INITIAL_S: Final = 1.0  # seconds, after the client's own retries gave up
ERROR_BACKOFF_MAXIMUM_S: Final = 30.0

log = logging.getLogger(__name__)


async def prepare_polling(api: TelegramApi) -> None:
    """Delete a webhook if one is set: Telegram refuses getUpdates while it exists.

    See docs/telegram.md, T6.
    """
    info = await api.get_webhook_info()
    if info.url:
        log.warning(
            "telegram_webhook_deleted",
            extra=fields(
                pending=info.pending_update_count,
                hint="a webhook was set; deleted so that long polling can run",
            ),
        )
        await api.delete_webhook()


def _nothing() -> None:
    pass


async def run_polling(
    api: TelegramApi,
    inbox: Inbox,
    updates_out: trio.MemorySendChannel[Update],
    *,
    poll_timeout_s: int = LONG_POLL_TIMEOUT_S,
    allowed_updates: Sequence[str] = ALLOWED_UPDATES,
    rng: random.Random | None = None,
    on_polled: Callable[[], None] = _nothing,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Receive updates forever, store each batch, then send every update to ``updates_out``.

    Updates still pending in the inbox are sent first. ``updates_out`` is closed when
    this returns or is cancelled, so a dispatcher reading it drains and ends.
    *on_polled* is called when polling begins (Telegram has just answered the webhook
    check, and a first long poll with nothing to deliver takes 50 s) and after each
    successful ``getUpdates``: the health check's sign that polling is live.

    Raises:
        TelegramUnauthorized: the token is wrong; polling cannot go on.
    """
    rng = rng if rng is not None else random.Random()
    async with updates_out:
        task_status.started()
        on_polled()
        for update_id, raw_json in inbox.pending():
            update = _parse_stored(inbox, update_id, raw_json)
            if update is not None:
                await updates_out.send(update)
        while True:
            batch = await _poll_until_answered(api, inbox, poll_timeout_s, allowed_updates, rng)
            TELEGRAM_LAST_POLL.set_to_current_time()
            on_polled()
            for update in await _save_batch_patiently(inbox, batch, rng):
                await updates_out.send(update)


async def _save_batch_patiently(
    inbox: Inbox, batch: list[dict[str, Any]], rng: random.Random
) -> list[Update]:
    """Store a batch, waiting out a database another process holds locked.

    Until it is stored, the batch is not confirmed to Telegram (the next ``getUpdates``
    waits too), so waiting loses nothing; an error no wait can mend is raised.
    """
    return await persist(
        "store a batch of updates", lambda: _save_batch(inbox, batch), rng=rng, patience_s=FOREVER
    )


async def _poll_until_answered(
    api: TelegramApi,
    inbox: Inbox,
    poll_timeout_s: int,
    allowed_updates: Sequence[str],
    rng: random.Random,
) -> list[dict[str, Any]]:
    conflict_delays: Iterator[float] | None = None
    error_delays: Iterator[float] | None = None
    while True:
        try:
            return await api.get_updates(
                offset=inbox.next_offset(),
                timeout_s=poll_timeout_s,
                allowed_updates=allowed_updates,
            )
        except TelegramUnauthorized as exc:
            log.error("telegram_polling_stopped", extra=fields(error=str(exc)))
            raise
        except TelegramConflict as exc:
            if conflict_delays is None:
                conflict_delays = backoff_delays(
                    initial_s=CONFLICT_BACKOFF_INITIAL_S,
                    maximum_s=CONFLICT_BACKOFF_MAXIMUM_S,
                    jitter="equal",
                    rng=rng,
                )
                log.warning(
                    "telegram_poll_conflict",
                    extra=fields(
                        error=exc.description,
                        hint="another instance polls with this token, or a webhook is set:"
                        " stop it or delete the webhook; polling again with backoff",
                    ),
                )
            await trio.sleep(next(conflict_delays))
        except TelegramError as exc:
            if error_delays is None:
                error_delays = backoff_delays(
                    initial_s=ERROR_BACKOFF_INITIAL_S, maximum_s=ERROR_BACKOFF_MAXIMUM_S, rng=rng
                )
            delay = next(error_delays)
            log.warning(
                "telegram_poll_failed", extra=fields(delay_s=round(delay, 3), error=str(exc))
            )
            await trio.sleep(delay)


def _save_batch(inbox: Inbox, batch: list[dict[str, Any]]) -> list[Update]:
    """Store a getUpdates batch with its next offset; return the updates that parse."""
    offset = inbox.next_offset()
    entries: list[tuple[int, dict[str, Any]]] = []
    for raw in batch:
        update_id = raw.get("update_id")
        if type(update_id) is not int:
            log.warning(
                "telegram_update_skipped",
                extra=fields(update_id=repr(update_id), reason="no integer update_id"),
            )
        elif offset is None or update_id >= offset:  # an already confirmed id is never resent
            entries.append((update_id, raw))
    if not entries:
        return []
    stored = [(update_id, json.dumps(raw, ensure_ascii=False)) for update_id, raw in entries]
    inbox.save_batch(stored, next_offset=max(update_id for update_id, _ in entries) + 1)
    updates = []
    for update_id, raw in entries:
        update = parse_update(update_id, raw)
        if update is None:
            inbox.mark_done(update_id)
        else:
            updates.append(update)
    return updates


def _parse_stored(inbox: Inbox, update_id: int, raw_json: str) -> Update | None:
    try:
        raw = json.loads(raw_json)
    except json.JSONDecodeError:
        raw = None
    update = parse_update(update_id, raw)
    if update is None:
        inbox.mark_done(update_id)
    return update


def parse_update(update_id: int, raw: object) -> Update | None:
    """Validate one raw update; log a one-line summary and return None if it is malformed."""
    try:
        return Update.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "update"
        log.warning(
            "telegram_update_skipped",
            extra=fields(
                update_id=update_id,
                reason=f"{exc.error_count()} validation errors, first: {where}: {first['msg']}",
            ),
        )
        return None
