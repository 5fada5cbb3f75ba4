"""The scene of a picture: a persona's reply, told in English for CLIP.

Replies are Russian and CLIP reads English, so with an LLM configured the reply is
turned into a short English scene; if that fails, or without an LLM, the persona's core
and style are used alone (``ImageConfig.prompt_params`` puts them together).
"""

from __future__ import annotations

import logging
from typing import Final

from bot.core.llm import SCENE_MAX_TOKENS, ChatCompletions, LlmError, clean_scene, scene_messages
from common.logfields import fields

__all__ = ["describe_scene"]

log = logging.getLogger(__name__)

SCENE_TEMPERATURE: Final = 0.3  # a short factual description, not a creative one


async def describe_scene(llm: ChatCompletions | None, reply_text: str) -> str | None:
    """A short English scene for *reply_text*, or None (no LLM, or it failed)."""
    if llm is None:
        return None
    try:
        text = await llm.complete(
            scene_messages(reply_text), max_tokens=SCENE_MAX_TOKENS, temperature=SCENE_TEMPERATURE
        )
    except LlmError as exc:
        log.warning(
            "llm_scene_failed",
            extra=fields(error=str(exc), hint="the persona's core and style are drawn alone"),
        )
        return None
    return clean_scene(text) or None
