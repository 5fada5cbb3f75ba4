"""Log lines carry their data as fields: JSON objects with them as keys, plain key=value."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from bot.core.logs import setup_logging
from common.logfields import fields


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _emit(*, json_lines: bool) -> list[str]:
    stream = io.StringIO()
    setup_logging(level="INFO", json_lines=json_lines, stream=stream)
    log = logging.getLogger("comfy.generate")
    log.info("comfy prompt submitted", extra=fields(prompt_id="p-1", client_id="c 2", none=None))
    log.warning("telegram_retry", extra=fields(delay_s=0.5, failures="1/5"))
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("job crashed", extra=fields(job="j-9"))
    log.info("no data here %s", "at all")
    return stream.getvalue().splitlines()


@pytest.mark.usefixtures("restore_root_logging")
def test_json_lines_have_the_fields_as_fields() -> None:
    lines = _emit(json_lines=True)
    objects = [json.loads(line) for line in lines]  # every line is one object
    assert len(objects) == 4
    submitted, retry, crashed, plain = objects
    assert submitted["msg"] == "comfy prompt submitted"
    assert (submitted["prompt_id"], submitted["client_id"]) == ("p-1", "c 2")
    assert "none" not in submitted
    assert retry["delay_s"] == 0.5
    assert crashed["job"] == "j-9"
    assert "ValueError: boom" in crashed["exc"]
    assert plain["msg"] == "no data here at all"
    assert all("=" not in obj["msg"] for obj in objects)


@pytest.mark.usefixtures("restore_root_logging")
def test_plain_lines_stay_greppable_with_fields_before_the_traceback() -> None:
    lines = _emit(json_lines=False)
    prefix = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    assert re.fullmatch(
        prefix + r'INFO comfy.generate: comfy prompt submitted prompt_id=p-1 client_id="c 2"',
        lines[0],
    )
    assert lines[1].endswith("telegram_retry delay_s=0.5 failures=1/5")
    assert lines[2].endswith("ERROR comfy.generate: job crashed job=j-9")
    assert lines[3] == "Traceback (most recent call last):"
    assert lines[-1].endswith("no data here at all")
