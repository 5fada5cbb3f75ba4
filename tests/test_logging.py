"""Log lines: plain and JSON, event fields greppable, and no secret ever printed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.core.logs import EVENT_FIELDS_KEY, setup_logging

TOKEN = "987654:SECRET-token-that-must-never-be-logged"


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logging")
def test_plain_lines_redact_the_token_everywhere_even_in_tracebacks() -> None:
    stream = io.StringIO()
    setup_logging(level="DEBUG", secrets=[TOKEN], stream=stream)
    log = logging.getLogger("bot.test")
    log.info("calling https://api.telegram.org/bot%s/getMe", TOKEN)
    try:
        raise RuntimeError(f"failed for url 'https://api.telegram.org/bot{TOKEN}/sendPhoto'")
    except RuntimeError:
        log.exception("boom")
    log.info("an unknown token shape 111222333:AAbbCCddEEffGGhhIIjjKKll is redacted too")
    text = stream.getvalue()
    assert TOKEN not in text
    assert "111222333:AAbbCCddEEffGGhhIIjjKKll" not in text
    assert text.count("<redacted>") == 3
    assert "RuntimeError" in text


@pytest.mark.usefixtures("restore_root_logging")
def test_httpx_request_lines_are_held_back() -> None:
    stream = io.StringIO()
    setup_logging(level="DEBUG", stream=stream)
    logging.getLogger("httpx").info(
        'HTTP Request: POST https://api.telegram.org/bot1:x/getMe "200"'
    )
    assert stream.getvalue() == ""


@pytest.mark.usefixtures("restore_root_logging")
def test_event_fields_as_key_values_and_as_json() -> None:
    fields = {"event": "image_failed", "user": 7, "reason": "no_quota", "detail": "no images left"}
    stream = io.StringIO()
    setup_logging(stream=stream)
    logging.getLogger("bot.events").info("image_failed", extra={EVENT_FIELDS_KEY: fields})
    line = stream.getvalue().strip()
    assert line.endswith('event=image_failed user=7 reason=no_quota detail="no images left"')

    stream = io.StringIO()
    setup_logging(stream=stream, json_lines=True)
    logging.getLogger("bot.events").info("image_failed", extra={EVENT_FIELDS_KEY: fields})
    parsed = json.loads(stream.getvalue())
    assert parsed["event"] == "image_failed"
    assert parsed["reason"] == "no_quota"
    assert parsed["level"] == "INFO"
