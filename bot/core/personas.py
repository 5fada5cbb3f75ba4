"""Personas: their chat character and image settings, from a validated data file.

The file (``PERSONAS_FILE``, default the shipped ``bot/core/personas.json``) lists personas and
names the default one. Image settings are found by the persona's ``key`` or ``name``,
lower-cased (``PERSONA_IMAGE_CONFIGS`` in the original feature request); a persona without
its own falls back to ``default_image`` (the request's ``DEFAULT_IMAGE_CONFIG``). The rules:
docs/product.md, P14.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from comfy import MAX_SEED, PromptParams

__all__ = [
    "ImageConfig",
    "OperatorTexts",
    "Persona",
    "PersonaBook",
    "PersonaWords",
    "PersonasError",
    "Translated",
    "load_personas",
]


class PersonasError(Exception):
    """The personas file is missing or invalid; one line saying where."""


class ImageConfig(BaseModel):
    """How ComfyUI draws a persona."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lora_filename: str = Field(min_length=1, description="relative to ComfyUI models/loras/")
    lora_strength_model: float = Field(default=0.8, ge=-10, le=10)
    lora_strength_clip: float = Field(default=0.8, ge=-10, le=10)
    prompt_core: str = Field(min_length=1)
    negative_prompt: str = ""
    default_style: str = ""
    checkpoint: str | None = Field(default=None, description="overrides the default checkpoint")

    def positive_prompt(self, scene: str | None) -> str:
        """``prompt_core, default_style, scene``, skipping the empty parts."""
        parts = [self.prompt_core, self.default_style, scene or ""]
        return ", ".join(part.strip().strip(",") for part in parts if part and part.strip())

    def prompt_params(
        self, *, scene: str | None, default_checkpoint: str, rng: random.Random
    ) -> PromptParams:
        """Everything the workflow template needs for one picture, with a fresh seed."""
        return PromptParams(
            checkpoint=self.checkpoint or default_checkpoint,
            lora_name=self.lora_filename,
            lora_strength_model=self.lora_strength_model,
            lora_strength_clip=self.lora_strength_clip,
            positive=self.positive_prompt(scene),
            negative=self.negative_prompt,
            seed=rng.randint(0, MAX_SEED),
        )


class PersonaWords(BaseModel):
    """A persona's words in another language (``"en"`` in the file): whatever is given
    replaces the persona's own for users of that language."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    system_prompt: str = Field(min_length=1)
    greeting: str = Field(min_length=1)
    offline_lines: tuple[str, ...] = Field(min_length=1)
    fallback_line: str | None = Field(default=None, min_length=1)


class Persona(BaseModel):
    """One character the user can talk to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_-]+$")
    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    system_prompt: str = Field(min_length=1)
    greeting: str = Field(min_length=1)
    offline_lines: tuple[str, ...] = Field(min_length=1)
    image: ImageConfig | None = None
    # How the persona speaks of themselves in Russian ("задумался" / "задумалась"), for
    # the line shown when the LLM fails; ``fallback_line`` replaces that line outright.
    gender: Literal["masculine", "feminine"] = "masculine"
    fallback_line: str | None = Field(default=None, min_length=1)
    # English users meet the persona in English when these are given (docs/product.md, P14).
    en: PersonaWords | None = None

    def speaking(self, lang: str) -> Persona:
        """The persona with its words in *lang*: its English ones for English users when
        the file has them, its own otherwise. Key, image and gender stay."""
        if lang != "en" or self.en is None:
            return self
        words = self.en
        return self.model_copy(
            update={
                "name": words.name,
                "description": words.description,
                "system_prompt": words.system_prompt,
                "greeting": words.greeting,
                "offline_lines": words.offline_lines,
                "fallback_line": words.fallback_line,
            }
        )


class Translated(BaseModel):
    """One text in both languages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ru: str = Field(min_length=1, max_length=4096)
    en: str = Field(min_length=1, max_length=4096)

    def get(self, lang: str) -> str:
        return self.en if lang == "en" else self.ru


class OperatorTexts(BaseModel):
    """Texts the operator words themselves: ``/paysupport`` and ``/terms`` for buyers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    paysupport: Translated | None = None
    terms: Translated | None = None


class _PersonasFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str
    default_image: ImageConfig
    personas: tuple[Persona, ...] = Field(min_length=1)
    texts: OperatorTexts = OperatorTexts()

    @model_validator(mode="after")
    def _consistent(self) -> _PersonasFile:
        keys = [persona.key for persona in self.personas]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise ValueError(f"duplicate persona keys {duplicates}")
        if self.default not in keys:
            raise ValueError(f"default {self.default!r} is not one of the persona keys {keys}")
        return self


class PersonaBook:
    """Lookups over the validated file."""

    def __init__(
        self,
        personas: tuple[Persona, ...],
        *,
        default: str,
        default_image: ImageConfig,
        texts: OperatorTexts | None = None,
    ):
        self.personas = personas
        self.texts = texts if texts is not None else OperatorTexts()
        self._by_key = {persona.key: persona for persona in personas}
        self.default = self._by_key[default]
        self.default_image = default_image
        self._images: dict[str, ImageConfig] = {}
        for persona in personas:
            if persona.image is not None:
                self._images[persona.key.lower()] = persona.image
                self._images[persona.name.lower()] = persona.image

    def get(self, key: str | None) -> Persona:
        """The persona with *key*, else the default (a stored key may be from an old file)."""
        if key is not None and key in self._by_key:
            return self._by_key[key]
        return self.default

    def find(self, key: str) -> Persona | None:
        return self._by_key.get(key)

    def image_config(self, persona: Persona) -> ImageConfig:
        """By key or name, lower-cased; otherwise ``default_image`` (docs/product.md, P14)."""
        return (
            self._images.get(persona.key.lower())
            or self._images.get(persona.name.lower())
            or self.default_image
        )

    def lora_files(self) -> list[str]:
        """Every LoRA file some persona (or the default) needs, each once."""
        names = [self.default_image.lora_filename]
        names += [persona.image.lora_filename for persona in self.personas if persona.image]
        return list(dict.fromkeys(names))

    def checkpoints(self, default_checkpoint: str) -> list[str]:
        names = [default_checkpoint] + [
            config.checkpoint
            for config in [self.default_image, *(p.image for p in self.personas if p.image)]
            if config.checkpoint
        ]
        return list(dict.fromkeys(names))


def load_personas(path: Path) -> PersonaBook:
    """Read and validate the personas file, or raise :class:`PersonasError` (one line)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PersonasError(f"PERSONAS_FILE {str(path)!r} cannot be read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise PersonasError(
            f"PERSONAS_FILE {str(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno}"
        ) from None
    try:
        parsed = _PersonasFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise PersonasError(
            f"PERSONAS_FILE {str(path)!r}: {where}: {_sentence(first)}"
            + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")
        ) from None
    return PersonaBook(
        parsed.personas,
        default=parsed.default,
        default_image=parsed.default_image,
        texts=parsed.texts,
    )


def _sentence(error: Any) -> str:
    """pydantic's message, without the "Value error, " it puts before a validator's own."""
    if error.get("type") == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])
    return str(error["msg"])
