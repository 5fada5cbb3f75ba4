"""Logging to stdout, plain or JSON, with secrets scrubbed from every line.

httpx logs each request URL at INFO, and Telegram URLs carry the token
(docs/libraries.md, L15); its loggers are held at WARNING, and the handler's formatter also
hides the secrets it is given (the token, the LLM key) in every form, and anything shaped
like a bot token, tracebacks included (:class:`bot.telegram.redact.Redactor`). Filters
attached to a *logger* do not see records propagated from child loggers
(docs/libraries.md, L16), so the redaction lives in the handler's formatter. An exception
nothing caught would be printed by Python itself, past the formatter, so
``sys.excepthook`` goes through the handler too.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, TextIO

from bot.telegram.redact import Redactor
from common.logfields import FIELDS_ATTRIBUTE

__all__ = ["EVENT_FIELDS_KEY", "RedactingFormatter", "plain_fields", "setup_logging"]

EVENT_FIELDS_KEY: Final = FIELDS_ATTRIBUTE  # where common.logfields.fields puts a line's data
_QUIET_LOGGERS: Final = ("httpx", "httpcore", "hpack", "trio-websocket")


class RedactingFormatter(logging.Formatter):
    """Formats a record (plain or JSON) and removes secrets from the finished text."""

    def __init__(self, *, json_lines: bool, secrets: Iterable[str] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._json = json_lines
        self._redactor = Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        text = self._format_json(record) if self._json else self._format_plain(record)
        return self.redact(text)

    def redact(self, text: str) -> str:
        return self._redactor(text)

    def _format_plain(self, record: logging.LogRecord) -> str:
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # The fields follow the message on its own line, before any traceback.
        return super().formatMessage(record) + plain_fields(record)

    def _format_json(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, EVENT_FIELDS_KEY, None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False, default=str)


def plain_fields(record: logging.LogRecord) -> str:
    """The record's fields as `` key=value`` pairs (empty without fields), as plain lines show."""
    fields = getattr(record, EVENT_FIELDS_KEY, None)
    if not isinstance(fields, dict) or not fields:
        return ""
    return " " + " ".join(f"{key}={_plain_value(value)}" for key, value in fields.items())


def _plain_value(value: object) -> str:
    """key=value pairs stay greppable: values with spaces or quotes are JSON-quoted."""
    text = "" if value is None else str(value)
    if text == "" or any(ch in text for ch in ' "=\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


def setup_logging(
    *,
    level: str = "INFO",
    json_lines: bool = False,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every log record to *stream* (stdout) through the redacting formatter."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(RedactingFormatter(json_lines=json_lines, secrets=secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    sys.excepthook = _log_uncaught
    return handler


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    """Python's last word on an exception nothing caught, through the redacting handler."""
    logging.getLogger("bot").critical("bot_uncaught_exception", exc_info=(exc_type, exc, tb))
