"""Structured fields for log lines: ``log.info("prompt submitted", extra=fields(prompt_id=p))``.

The fields travel on the record under one attribute, so no name can collide with the
record's own (``name``, ``msg``…). The bot's formatter writes them as ``key=value`` after
the message in plain logs and as fields of the object in JSON lines.
"""

from __future__ import annotations

from typing import Final

__all__ = ["FIELDS_ATTRIBUTE", "fields"]

FIELDS_ATTRIBUTE: Final = "event_fields"


def fields(**values: object) -> dict[str, dict[str, object]]:
    """The ``extra`` of a log call carrying *values*; None values are left out."""
    return {FIELDS_ATTRIBUTE: {key: value for key, value in values.items() if value is not None}}
