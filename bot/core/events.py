"""Product events: one ``events_analytics`` row and one structured stdout line each.

The event names and failure reasons are closed sets (docs/product.md, P8 and P9), also
listed in the README. Diagnostics: ``grep image_failed`` on stdout, or
``sqlite3 data/bot.db "select * from events_analytics where event='image_failed'"``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from datetime import datetime

from bot.core.logs import EVENT_FIELDS_KEY
from common.metrics import EVENTS, PICTURE_SECONDS
from store import EventRecord

__all__ = ["EventName", "Reason", "announce", "event_record"]

log = logging.getLogger("bot.events")


class EventName(enum.StrEnum):
    IMAGE_REQUESTED = "image_requested"  # a genuine press on «👁️ Посмотреть»
    IMAGE_GENERATED = "image_generated"  # the picture was delivered and charged
    IMAGE_FAILED = "image_failed"  # the request ended without a charge; see Reason
    IMAGE_RESENT = "image_resent"  # a press after delivery: same file_id, free
    PAYMENT_SUCCEEDED = "payment_succeeded"  # a pack or a first subscription month, credited
    SUBSCRIPTION_RENEWED = "subscription_renewed"  # a recurring month, credited
    PAYMENT_REFUNDED = "payment_refunded"  # a refund, taken back (detail: stars, pictures)


class Reason(enum.StrEnum):
    NO_QUOTA = "no_quota"  # neither balance nor subscription allowance left
    GENERATION_ERROR = "generation_error"  # ComfyUI refused, failed, timed out, unreachable
    SEND_ERROR = "send_error"  # Telegram refused the photo and the document
    DISABLED = "disabled"  # IMAGE_ENABLED=false or no COMFYUI_BASE_URL
    BUSY = "busy"  # the generation queue is full
    CANCELLED = "cancelled"  # the user cancelled their own job


def event_record(
    event: EventName,
    *,
    now: Callable[[], datetime],
    user_id: int | None = None,
    chat_id: int | None = None,
    persona: str | None = None,
    job_id: str | None = None,
    reason: Reason | None = None,
    detail: str | None = None,
    duration_ms: int | None = None,
    server: str | None = None,
) -> EventRecord:
    """The ``events_analytics`` row for *event*, to be written with the change it records."""
    return EventRecord(
        ts=now(),
        event=event.value,
        user_id=user_id,
        chat_id=chat_id,
        persona=persona,
        job_id=job_id,
        reason=reason.value if reason else None,
        detail=detail,
        duration_ms=duration_ms,
        server=server,
    )


def announce(record: EventRecord) -> None:
    """The event's one structured line on stdout and its count in the metrics, once its
    row is committed (``Deps.write`` calls it for every event the committed transaction
    wrote)."""
    EVENTS.labels(event=record.event, reason=record.reason or "").inc()
    if record.event == EventName.IMAGE_GENERATED and record.duration_ms is not None:
        PICTURE_SECONDS.observe(record.duration_ms / 1000)
    fields = {
        "event": record.event,
        "user": record.user_id,
        "chat": record.chat_id,
        "persona": record.persona,
        "job": record.job_id,
        "reason": record.reason,
        "detail": record.detail,
        "duration_ms": record.duration_ms,
        "server": record.server,
    }
    log.info(
        record.event,
        extra={EVENT_FIELDS_KEY: {k: v for k, v in fields.items() if v is not None}},
    )
