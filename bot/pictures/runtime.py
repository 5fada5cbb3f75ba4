"""The picture machinery one process runs; absent when ``COMFYUI_BASE_URL`` is empty."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bot.pictures.deliveries import Deliveries
from bot.pictures.queue import JobQueue
from bot.pictures.status import StatusBoard
from comfy import ComfyClient, Follower, GeneratedImage, PromptProgress, WorkflowTemplate

if TYPE_CHECKING:
    from bot.pictures.servers import ServerPool

__all__ = ["GeneratorFactory", "PictureGenerator", "PicturesRuntime"]


class PictureGenerator(Protocol):
    """What the workers need from ComfyUI: one picture under one budget (``comfy.Comfy``)."""

    async def generate(
        self,
        graph: dict[str, Any],
        *,
        prompt_id: str,
        timeout_s: float,
        on_progress: Callable[[PromptProgress], None] | None = None,
        recover: bool = False,
    ) -> GeneratedImage: ...


class GeneratorFactory(Protocol):
    """Builds one server's generator at start-up; ``comfy.Comfy`` is the production one.

    *concurrency* is that server's slots; the pool never hands it more jobs at once.
    """

    def __call__(
        self, client: ComfyClient, follower: Follower, *, concurrency: int
    ) -> PictureGenerator: ...


@dataclass(frozen=True, slots=True)
class PicturesRuntime:
    queue: JobQueue
    board: StatusBoard
    servers: ServerPool  # every ComfyUI server; its generate() places and draws a job
    template: WorkflowTemplate
    spool_dir: Path
    deliveries: Deliveries = field(default_factory=Deliveries)
