"""The picture machinery one process runs; absent when ``COMFYUI_BASE_URL`` is empty.

Built and started by :mod:`bot.pictures.start`; every picture handler and task is given
it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bot.pictures.deliveries import Deliveries
from bot.pictures.queue import JobQueue
from bot.pictures.servers import ServerPool
from bot.pictures.status import StatusBoard
from comfy import WorkflowTemplate
from common.metrics import QUEUE_JOBS

__all__ = ["PicturesRuntime"]


@dataclass(frozen=True, slots=True)
class PicturesRuntime:
    queue: JobQueue
    board: StatusBoard
    servers: ServerPool  # every ComfyUI server; its generate() places and draws a job
    template: WorkflowTemplate
    spool_dir: Path
    deliveries: Deliveries = field(default_factory=Deliveries)

    def sample_metrics(self) -> None:
        """Set the pictures' gauges to the state now (the heartbeat calls it each second)."""
        QUEUE_JOBS.set(self.queue.waiting)
        self.servers.sample_metrics()
