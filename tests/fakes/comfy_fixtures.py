"""Pytest fixtures for the fake ComfyUI (registered as a plugin by ``tests/conftest.py``).

* ``fake_comfy``: a started ``FakeComfy`` (one GPU, 3 s prompts; the default test models
  and every shipped persona's LoRA);
* ``comfy_stack``: ``fake_comfy`` plus the real client side wired to it, connected:
  ``stack.http`` (``httpx.AsyncClient`` on ``MockTransport(fake.handler)``, base URL
  ``http://comfy.test``), ``stack.client`` (``ComfyClient``), ``stack.follower``
  (``Follower`` over ``fake.open_ws``, backoff without jitter) and ``stack.comfy``
  (``Comfy``).

Combine either with ``autojump_clock`` so virtual time runs instantly. For a fake with
other options, use ``async with open_fake_comfy(parallel=2) as fake:`` and
``async with open_comfy_stack(fake) as stack:`` in the test body.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
import trio

from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS
from comfy.client import ComfyClient
from comfy.follower import Follower
from comfy.generate import Comfy
from tests.fakes.comfy import DEFAULT_LORAS, FakeComfy

__all__ = [
    "FAKE_BASE_URL",
    "ComfyStack",
    "NoJitter",
    "comfy_stack",
    "fake_comfy",
    "open_comfy_stack",
]

FAKE_BASE_URL = "http://comfy.test"


class NoJitter(random.Random):
    """A ``random.Random`` whose ``uniform(a, b)`` is always *a*: exact backoff delays."""

    def random(self) -> float:
        return 0.0


@dataclass
class ComfyStack:
    fake: FakeComfy
    http: httpx.AsyncClient
    client: ComfyClient
    follower: Follower
    comfy: Comfy


def _client_side(fake: FakeComfy, http: httpx.AsyncClient, rng: random.Random | None) -> ComfyStack:
    client = ComfyClient(http)
    follower = Follower(client, fake.open_ws, rng=rng if rng is not None else NoJitter())
    return ComfyStack(fake, http, client, follower, Comfy(client, follower))


@asynccontextmanager
async def open_comfy_stack(
    fake: FakeComfy,
    *,
    rng: random.Random | None = None,
    wait_connected: bool = True,
) -> AsyncIterator[ComfyStack]:
    """The client side wired to *fake*, its follower running, for one test body."""
    transport = httpx.MockTransport(fake.handler)
    async with httpx.AsyncClient(transport=transport, base_url=FAKE_BASE_URL) as http:
        stack = _client_side(fake, http, rng)
        async with trio.open_nursery() as nursery:
            await nursery.start(stack.follower.run)
            if wait_connected:
                await stack.follower.wait_connected()
            yield stack
            nursery.cancel_scope.cancel()


@pytest.fixture
async def fake_comfy(nursery: trio.Nursery) -> FakeComfy:
    """A running fake ComfyUI: one GPU, 3 s prompts, the default checkpoint, and the LoRA
    files of the default test models and of every shipped persona."""
    shipped = load_personas(SHIPPED_PERSONAS).lora_files()
    fake = FakeComfy(loras=tuple(dict.fromkeys([*DEFAULT_LORAS, *shipped])))
    await nursery.start(fake.run)
    return fake


@pytest.fixture
async def comfy_stack(fake_comfy: FakeComfy, nursery: trio.Nursery) -> AsyncIterator[ComfyStack]:
    transport = httpx.MockTransport(fake_comfy.handler)
    async with httpx.AsyncClient(transport=transport, base_url=FAKE_BASE_URL) as http:
        stack = _client_side(fake_comfy, http, None)
        follower_scope = trio.CancelScope()

        async def run_follower(task_status: trio.TaskStatus[None]) -> None:
            with follower_scope:
                await stack.follower.run(task_status=task_status)

        await nursery.start(run_follower)
        await stack.follower.wait_connected()
        yield stack
        follower_scope.cancel()  # before the http client closes under it
