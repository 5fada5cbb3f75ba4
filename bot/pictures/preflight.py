"""At start, ask each ComfyUI server whether the checkpoint and every persona's LoRA exist.

A missing file is one loud warning per file, never a crash (docs/product.md, P15): the
chat works regardless, and pictures for that persona will fail with a clear
``generation_error`` until it is fixed. Whatever ComfyUI answers, and whatever goes wrong
here, the check only logs: it runs beside the chat in the root nursery, and an exception
out of it would end the process.
"""

from __future__ import annotations

import logging

import trio

from bot.core.deps import Deps
from bot.pictures.servers import ServerPool
from comfy import ComfyClient, ComfyError, check_models

__all__ = ["run_preflight"]

log = logging.getLogger(__name__)


async def run_preflight(deps: Deps, servers: ServerPool) -> None:
    """Log what each ComfyUI server lacks; runs once, in the background."""
    async with trio.open_nursery() as nursery:
        for server in servers.servers:
            nursery.start_soon(_check_server, deps, server.client)


async def _check_server(deps: Deps, client: ComfyClient) -> None:
    server = client.server
    checkpoints = deps.personas.checkpoints(deps.settings.comfyui_default_checkpoint)
    try:
        missing = await check_models(
            client,
            checkpoint=checkpoints[0],
            loras=deps.personas.lora_files(),
        )
    except ComfyError as exc:
        log.warning(
            "comfyui preflight server=%s: cannot list the models (%s: %s); pictures fail"
            " there until it answers",
            server,
            type(exc).__name__,
            exc.detail,
        )
        return
    except Exception:  # started with start_soon in the root nursery: a bug must not end it
        log.exception("comfyui preflight server=%s failed; the models were not checked", server)
        return
    for model in missing:
        folder = "models/checkpoints" if model.kind == "checkpoint" else "models/loras"
        log.warning(
            "comfyui preflight server=%s: %s %r is missing; put it in ComfyUI's %s/",
            server,
            model.kind,
            model.name,
            folder,
        )
    if not missing:
        log.info(
            "comfyui preflight server=%s: checkpoint and %d LoRA file(s) present",
            server,
            len(deps.personas.lora_files()),
        )
