"""Fixtures for the fake Bot API: ``fake_telegram`` and a ``telegram_api`` client for it."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Final

import httpx
import pytest
from pydantic import SecretStr

from bot.telegram.client import TelegramApi
from tests.fakes.telegram import FAKE_BASE_URL, FakeTelegram

__all__ = ["API_SEED", "fake_telegram", "telegram_api"]

API_SEED: Final = 20240611  # the jitter of the client's backoff delays in tests


@pytest.fixture
def fake_telegram() -> FakeTelegram:
    """A fresh fake Bot API with no users, no updates and nothing sent."""
    return FakeTelegram()


@pytest.fixture
async def telegram_api(fake_telegram: FakeTelegram) -> AsyncIterator[TelegramApi]:
    """A :class:`TelegramApi` whose HTTP client talks to ``fake_telegram``."""
    transport = httpx.MockTransport(fake_telegram.handler)
    async with httpx.AsyncClient(transport=transport) as http:
        yield TelegramApi(
            http,
            SecretStr(fake_telegram.token),
            base_url=FAKE_BASE_URL,
            rng=random.Random(API_SEED),
        )
