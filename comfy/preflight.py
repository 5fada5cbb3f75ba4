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

__all__ = ["MODEL_INPUTS", "MissingModel", "check_models", "input_options", "model_files"]

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


async def check_models(
    client: ComfyClient, *, checkpoint: str, loras: Iterable[str]
) -> list[MissingModel]:
    """The configured files ComfyUI does not list, checkpoint first, LoRAs in order.

    Raises:
        ComfyUnavailable: the server cannot be reached or answers 5xx.
        ComfyProtocolError: /object_info answered something unreadable.
    """
    checkpoints = input_options(await client.object_info("CheckpointLoaderSimple"), "ckpt_name")
    lora_files = input_options(await client.object_info("LoraLoader"), "lora_name")
    missing: list[MissingModel] = []
    if checkpoint not in checkpoints:
        missing.append(MissingModel("checkpoint", checkpoint))
    seen: set[str] = set()
    for name in loras:
        if name not in lora_files and name not in seen:
            missing.append(MissingModel("lora", name))
        seen.add(name)
    return missing


async def model_files(client: ComfyClient) -> frozenset[str]:
    """Every checkpoint and LoRA file the server lists.

    Raises:
        ComfyUnavailable, ComfyProtocolError: as :func:`check_models`.
    """
    files: set[str] = set()
    for class_type, input_name in MODEL_INPUTS:
        files |= input_options(await client.object_info(class_type), input_name)
    return frozenset(files)
