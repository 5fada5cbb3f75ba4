"""What every handler needs, passed explicitly as one frozen object (no kwargs DI)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bot.chat import ChatCompletions
from bot.personas import PersonaBook
from bot.pool import GenerationPool
from bot.settings import Settings
from bot.telegram_api import TelegramApi
from comfy import Comfy, ComfyClient, Follower, WorkflowTemplate
from store import Store

__all__ = ["Deps", "ImageRuntime"]


@dataclass(frozen=True, slots=True)
class ImageRuntime:
    """The picture machinery; absent when ``COMFYUI_BASE_URL`` is empty."""

    pool: GenerationPool
    comfy: Comfy
    client: ComfyClient
    follower: Follower
    template: WorkflowTemplate
    spool_dir: Path


@dataclass(frozen=True, slots=True)
class Deps:
    api: TelegramApi
    store: Store
    personas: PersonaBook
    settings: Settings
    llm: ChatCompletions | None
    rng: random.Random
    now: Callable[[], datetime]
    images: ImageRuntime | None = None
    bot_username: str | None = None
