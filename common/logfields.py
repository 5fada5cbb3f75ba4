"""Structured log lines: ``log.info("comfy_prompt_submitted", extra=fields(prompt_id=p))``.

Every log line of the project is one event name (lower-case words joined by ``_``, the
room first: ``comfy_ws_lost``, ``job_delivered``, ``telegram_poll_failed``) and its data
as fields, never inside the message: an operator greps or filters by the name, and JSON
logs keep every value apart. Advice for the operator goes in a ``hint`` field. The
fields travel on the record under one attribute, so no name can collide with the
record's own (``name``, ``msg``…). The bot's formatter writes them as ``key=value``
after the message in plain logs and as fields of the object in JSON lines.
"""

from __future__ import annotations

from typing import Final

__all__ = ["FIELDS_ATTRIBUTE", "fields"]

FIELDS_ATTRIBUTE: Final = "event_fields"


def fields(**values: object) -> dict[str, dict[str, object]]:
    """The ``extra`` of a log call carrying *values*; None values are left out."""
    return {FIELDS_ATTRIBUTE: {key: value for key, value in values.items() if value is not None}}
