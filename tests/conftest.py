"""Shared fixtures: each fake registers its own fixtures as a pytest plugin."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import trio

from bot.personas import load_personas
from bot.settings import SHIPPED_PERSONAS
from tests.fakes.comfy import FakeComfy

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
    yield
    for logger, level, handlers in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers


@pytest.fixture
async def comfy(nursery: trio.Nursery) -> FakeComfy:
    """A running fake ComfyUI holding the shipped personas' checkpoint and LoRA files."""
    fake = FakeComfy(loras=tuple(load_personas(SHIPPED_PERSONAS).lora_files()))
    await nursery.start(fake.run)
    return fake
