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
from common.logfields import fields

__all__ = ["run_preflight"]

log = logging.getLogger(__name__)


async def run_preflight(deps: Deps, servers: ServerPool) -> None:
    """Log what each ComfyUI server lacks; runs once, in the background."""
    async with trio.open_nursery() as nursery:
        for server in servers.servers:
            nursery.start_soon(_check_server, deps, server.client)


async def _check_server(deps: Deps, client: ComfyClient) -> None:
    server = client.server
    checkpoint = deps.personas.checkpoints(deps.settings.comfyui_default_checkpoint)[0]
    loras = deps.personas.lora_files()
    try:
        missing = await check_models(client, checkpoint=checkpoint, loras=loras)
    except ComfyError as exc:
        log.warning(
            "comfy_preflight_models_not_listed",
            extra=fields(
                server=server,
                error=f"{type(exc).__name__}: {exc.detail}",
                hint="pictures fail there until it answers",
            ),
        )
        return
    except Exception:  # started with start_soon in the root nursery: a bug must not end it
        log.exception("comfy_preflight_failed", extra=fields(server=server))
        return
    for model in missing:
        folder = "models/checkpoints" if model.kind == "checkpoint" else "models/loras"
        log.warning(
            "comfy_preflight_model_missing",
            extra=fields(
                server=server,
                kind=model.kind,
                file=model.name,
                hint=f"put it in ComfyUI's {folder}/",
            ),
        )
    if not missing:
        log.info(
            "comfy_preflight_models_present",
            extra=fields(server=server, checkpoint=checkpoint, loras=len(loras)),
        )
