"""Shared fixtures: each fake registers its own fixtures as a pytest plugin."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "tests.fakes.comfy_fixtures",
    "tests.fakes.telegram_fixtures",
]

_TOUCHED_LOGGERS = ("", "httpx", "httpcore", "hpack", "trio-websocket")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Tests that call ``setup_logging`` must not change logging for the tests after them."""
    loggers = [logging.getLogger(name) for name in _TOUCHED_LOGGERS]
    saved = [(logger, logger.level, list(logger.handlers)) for logger in loggers]
    excepthook = sys.excepthook
    yield
    for logger, level, handlers in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers
    sys.excepthook = excepthook
