"""At start, ask ComfyUI whether the checkpoint and every persona's LoRA exist.

A missing file is one loud warning per file, never a crash (docs/product.md, P15): the
chat works regardless, and pictures for that persona will fail with a clear
``generation_error`` until it is fixed. Whatever ComfyUI answers, and whatever goes wrong
here, the check only logs: it runs beside the chat in the root nursery, and an exception
out of it would end the process.
"""

from __future__ import annotations

import logging

from bot.deps import Deps
from comfy import ComfyError, check_models

__all__ = ["run_preflight"]

log = logging.getLogger(__name__)


async def run_preflight(deps: Deps) -> None:
    """Log what ComfyUI lacks; runs once, in the background."""
    if deps.pictures is None:
        return
    checkpoints = deps.personas.checkpoints(deps.settings.comfyui_default_checkpoint)
    try:
        missing = await check_models(
            deps.pictures.client,
            checkpoint=checkpoints[0],
            loras=deps.personas.lora_files(),
        )
    except ComfyError as exc:
        log.warning(
            "comfyui preflight: cannot list the models (%s: %s); pictures fail until it answers",
            type(exc).__name__,
            exc.detail,
        )
        return
    except Exception:  # started with start_soon in the root nursery: a bug here must not end it
        log.exception("comfyui preflight failed; the models were not checked")
        return
    for model in missing:
        folder = "models/checkpoints" if model.kind == "checkpoint" else "models/loras"
        log.warning(
            "comfyui preflight: %s %r is missing on the ComfyUI host; put it in ComfyUI's %s/",
            model.kind,
            model.name,
            folder,
        )
    if not missing:
        log.info(
            "comfyui preflight: checkpoint and %d LoRA file(s) present",
            len(deps.personas.lora_files()),
        )
