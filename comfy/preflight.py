"""Start-up check: does ComfyUI have the checkpoint and every persona's LoRA?

A missing file is reported, never raised: the chat works regardless and the operator gets
one loud line per file (docs/product.md, P15). Only an unreachable server raises
(``ComfyUnavailable``).

GET /object_info/{class} lists a loader's files as the input spec of ``ckpt_name`` /
``lora_name``. Classic (V1) nodes send the ``INPUT_TYPES`` tuple as JSON,
``[["a.safetensors", ...], {"tooltip": ...}]``; V3 nodes send a combo,
``["COMBO", {"options": ["a.safetensors", ...]}]`` (docs/comfyui.md, C19). Both are read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from comfy.client import ComfyClient
from comfy.messages import NodeInfo

__all__ = [
    "MODEL_INPUTS",
    "MissingModel",
    "ModelLists",
    "check_models",
    "input_options",
    "missing_models",
    "model_lists",
]

# The loaders whose files a picture needs, and the input that names the file.
MODEL_INPUTS: Final = (("CheckpointLoaderSimple", "ckpt_name"), ("LoraLoader", "lora_name"))


@dataclass(frozen=True, slots=True)
class MissingModel:
    kind: Literal["checkpoint", "lora"]
    name: str


def input_options(info: NodeInfo | None, input_name: str) -> frozenset[str]:
    """The allowed values of a combo input, from either spec shape; empty if unknown."""
    if info is None:
        return frozenset()
    for section in ("required", "optional"):
        spec: Any = info.input.get(section, {}).get(input_name)
        if not isinstance(spec, list) or not spec:
            continue
        if isinstance(spec[0], list):
            return frozenset(v for v in spec[0] if isinstance(v, str))
        if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
            options = spec[1].get("options")
            if isinstance(options, list):
                return frozenset(v for v in options if isinstance(v, str))
    return frozenset()


@dataclass(frozen=True, slots=True)
class ModelLists:
    """The checkpoint and LoRA files one server lists."""

    checkpoints: frozenset[str]
    loras: frozenset[str]

    @property
    def files(self) -> frozenset[str]:
        return self.checkpoints | self.loras


async def model_lists(client: ComfyClient) -> ModelLists:
    """Every checkpoint and LoRA file the server lists (two ``/object_info`` reads).

    Raises:
        ComfyUnavailable: the server cannot be reached or answers 5xx.
        ComfyProtocolError: /object_info answered something unreadable.
    """
    (checkpoint_class, checkpoint_input), (lora_class, lora_input) = MODEL_INPUTS
    checkpoints = input_options(await client.object_info(checkpoint_class), checkpoint_input)
    loras = input_options(await client.object_info(lora_class), lora_input)
    return ModelLists(checkpoints, loras)


def missing_models(
    lists: ModelLists, *, checkpoint: str, loras: Iterable[str]
) -> list[MissingModel]:
    """PURE: the configured files *lists* lacks, checkpoint first, LoRAs in order, each once."""
    missing: list[MissingModel] = []
    if checkpoint not in lists.checkpoints:
        missing.append(MissingModel("checkpoint", checkpoint))
    for name in dict.fromkeys(loras):
        if name not in lists.loras:
            missing.append(MissingModel("lora", name))
    return missing


async def check_models(
    client: ComfyClient, *, checkpoint: str, loras: Iterable[str]
) -> list[MissingModel]:
    """The configured files ComfyUI does not list (:func:`missing_models` of one read).

    Raises:
        ComfyUnavailable, ComfyProtocolError: as :func:`model_lists`.
    """
    return missing_models(await model_lists(client), checkpoint=checkpoint, loras=loras)
