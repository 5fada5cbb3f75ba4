"""Building the picture machinery at start-up, and starting its tasks.

:func:`build_pictures` makes the :class:`~bot.pictures.runtime.PicturesRuntime` from the
settings; :func:`start_pictures` starts its tasks in the root nursery: the servers (one
websocket follower each), the status board, the workers and the model preflight.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Final

import httpx
import trio

from bot.core.deps import Deps
from bot.core.settings import Settings
from bot.pictures.preflight import run_preflight
from bot.pictures.queue import JobQueue, Place
from bot.pictures.runtime import PicturesRuntime
from bot.pictures.servers import Server, ServerPool
from bot.pictures.spool import spool_folder
from bot.pictures.status import StatusBoard
from bot.pictures.workers import run_workers
from bot.telegram.client import TelegramApi
from comfy import ComfyClient, Follower, OpenWebsocket, WorkflowTemplate, websocket_opener
from store import Store

__all__ = ["WORKERS_PER_SLOT", "build_pictures", "start_pictures"]

# Twice as many workers as ComfyUI slots, summed over the servers (the pool holds at most
# a server's slots on it): one job's prompt is built and another's photo uploaded while
# the GPUs already draw the next.
WORKERS_PER_SLOT: Final = 2


def build_pictures(
    settings: Settings,
    api: TelegramApi,
    store: Store,
    template: WorkflowTemplate | None,
    comfy_http: list[httpx.AsyncClient],
    *,
    open_ws: OpenWebsocket | Mapping[str, OpenWebsocket] | None,
    rng: random.Random,
) -> PicturesRuntime | None:
    """The picture machinery, or None without ``COMFYUI_BASE_URL`` (or a template).

    *comfy_http* has one client per server, in the order of the setting. *open_ws*
    (tests) serves every server, or each by its name (``host:port``); without it each
    server's own URL is opened.
    """
    if not settings.comfyui_servers or template is None:
        return None
    servers: list[Server] = []
    for spec, http in zip(settings.comfyui_servers, comfy_http, strict=True):
        client = ComfyClient(http)
        opener = open_ws.get(spec.name) if isinstance(open_ws, Mapping) else open_ws
        follower = Follower(client, opener or websocket_opener(spec.url), rng=rng)
        servers.append(Server(spec, client, follower, rng))
    spool_dir = spool_folder(settings.database_path)
    spool_dir.mkdir(parents=True, exist_ok=True)
    board = StatusBoard(api, store.jobs, previews=settings.comfyui_previews != "off")

    def show_places(places: Sequence[Place]) -> None:
        # The jobs waiting in the pool for a slot are ahead of the whole queue.
        board.show_places(places, ahead=pool.waiting)

    queue = JobQueue(size=settings.image_queue_size, on_change=show_places)
    pool = ServerPool(
        servers, remember=store.abandoned, on_waiting=lambda: show_places(queue.places())
    )
    return PicturesRuntime(
        queue=queue,
        board=board,
        servers=pool,
        template=template,
        spool_dir=spool_dir,
    )


async def start_pictures(nursery: trio.Nursery, deps: Deps, pictures: PicturesRuntime) -> None:
    """The servers, the status board, the workers, then the preflight."""
    await nursery.start(pictures.servers.run)
    await nursery.start(pictures.board.run)
    workers = WORKERS_PER_SLOT * pictures.servers.slots
    await nursery.start(partial(run_workers, count=workers), deps, pictures)
    nursery.start_soon(run_preflight, deps, pictures.servers)
