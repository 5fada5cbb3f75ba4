"""The picture's prompt: persona core + style + the scene of the reply.

Replies are Russian and CLIP reads English, so with an LLM configured the reply is
turned into a short English scene; if that fails, or without an LLM, the persona's core
and style are used alone. The pure part (:func:`prompt_params`) is tested without I/O.
"""

from __future__ import annotations

import logging
import random
from typing import Final

from bot.llm import SCENE_MAX_TOKENS, ChatCompletions, LlmError, clean_scene, scene_messages
from bot.personas import ImageConfig
from comfy import MAX_SEED, PromptParams

__all__ = ["describe_scene", "positive_prompt", "prompt_params"]

log = logging.getLogger(__name__)

SCENE_TEMPERATURE: Final = 0.3  # a short factual description, not a creative one


def positive_prompt(config: ImageConfig, scene: str | None) -> str:
    """``prompt_core, default_style, scene``, skipping the empty parts."""
    parts = [config.prompt_core, config.default_style, scene or ""]
    return ", ".join(part.strip().strip(",") for part in parts if part and part.strip())


def prompt_params(
    config: ImageConfig,
    *,
    scene: str | None,
    default_checkpoint: str,
    rng: random.Random,
) -> PromptParams:
    """Everything the workflow template needs for one picture, with a fresh seed."""
    return PromptParams(
        checkpoint=config.checkpoint or default_checkpoint,
        lora_name=config.lora_filename,
        lora_strength_model=config.lora_strength_model,
        lora_strength_clip=config.lora_strength_clip,
        positive=positive_prompt(config, scene),
        negative=config.negative_prompt,
        seed=rng.randint(0, MAX_SEED),
    )


async def describe_scene(llm: ChatCompletions | None, reply_text: str) -> str | None:
    """A short English scene for *reply_text*, or None (no LLM, or it failed)."""
    if llm is None:
        return None
    try:
        text = await llm.complete(
            scene_messages(reply_text), max_tokens=SCENE_MAX_TOKENS, temperature=SCENE_TEMPERATURE
        )
    except LlmError as exc:
        log.warning("scene description failed, using the persona's core and style: %s", exc)
        return None
    return clean_scene(text) or None
