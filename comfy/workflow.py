"""Sans-IO workflow template: find the nodes to fill in, then build a fresh graph per picture.

Operators re-export workflows from ComfyUI's UI, which renumbers nodes, so nothing here
trusts a node id (docs/product.md, P17). The sampler is found by ``class_type``; its
``positive`` and ``negative`` links name the two ``CLIPTextEncode`` nodes, its ``model``
link names the ``LoraLoader`` and the LoRA's ``model`` link the ``CheckpointLoaderSimple``;
where a link does not lead to the expected class, a single node of that class is used. A
template that lacks a node, or offers two where one is needed, is refused at start-up with
one line saying which and how to fix it.

User text enters only as values in a Python dict that is later JSON-encoded as a whole;
no JSON is ever built by string substitution, so quotes, braces and newlines in a prompt
cannot change the graph.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

__all__ = ["MAX_SEED", "SHIPPED_WORKFLOW", "PromptParams", "WorkflowError", "WorkflowTemplate"]

MAX_SEED: Final = 2**64 - 1  # KSampler's seed input accepts 0..18446744073709551615
_EXPORT_HINT: Final = "re-export it from ComfyUI with 'Export (API)'"
# The SDXL + LoRA template shipped inside the package, so an installed wheel finds it from
# any working folder. pip unpacks wheels, so the resource is a real file with a path.
SHIPPED_WORKFLOW: Final = Path(str(resources.files("comfy").joinpath("workflows/sdxl_lora.json")))


class WorkflowError(ValueError):
    """The template cannot be used; the message is one line naming the problem and fix."""


@dataclass(frozen=True, slots=True)
class PromptParams:
    """Everything that changes between two pictures. ``None`` keeps the template's value.

    Example: ``PromptParams(checkpoint="sd_xl_base_1.0.safetensors",
    lora_name="anna.safetensors", lora_strength_model=0.8, lora_strength_clip=0.8,
    positive="anna, portrait, soft light", negative="blurry", seed=42)``.
    """

    checkpoint: str
    lora_name: str
    lora_strength_model: float
    lora_strength_clip: float
    positive: str
    negative: str
    seed: int
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg: float | None = None
    sampler_name: str | None = None
    scheduler: str | None = None


@dataclass(frozen=True, slots=True)
class _Roles:
    checkpoint: str
    lora: str
    positive: str
    negative: str
    sampler: str
    latent: str | None


class WorkflowTemplate:
    """An API-format graph plus the ids of the nodes ``build`` fills in."""

    def __init__(self, graph: dict[str, Any], roles: _Roles, source: str) -> None:
        self._graph = graph
        self._roles = roles
        self.source = source

    @classmethod
    def from_file(cls, path: str | Path) -> WorkflowTemplate:
        """Load a template file (a POST /prompt body or a bare API-format graph)."""
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise WorkflowError(f"cannot read workflow {source!r}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise WorkflowError(f"workflow {source!r} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise WorkflowError(f"workflow {source!r} is not a JSON object; {_EXPORT_HINT}")
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<template>") -> WorkflowTemplate:
        """Accept ``{"prompt": graph, ...}`` (what the curl check posts) or a bare graph."""
        inner = data.get("prompt")
        graph = dict(inner) if isinstance(inner, Mapping) else dict(data)
        if isinstance(graph.get("nodes"), list) and "links" in graph:
            raise WorkflowError(f"workflow {source!r} is in UI format; {_EXPORT_HINT}")
        for node_id, node in graph.items():
            if not (
                isinstance(node, Mapping)
                and isinstance(node.get("class_type"), str)
                and isinstance(node.get("inputs"), Mapping)
            ):
                raise WorkflowError(
                    f"workflow {source!r}: node {node_id!r} has no class_type/inputs; "
                    f"{_EXPORT_HINT}"
                )
        graph = copy.deepcopy(graph)
        return cls(graph, _find_roles(graph, source), source)

    def build(self, params: PromptParams) -> dict[str, Any]:
        """A fresh graph for POST /prompt's ``prompt``, with *params* filled in."""
        if not 0 <= params.seed <= MAX_SEED:
            raise WorkflowError(f"seed {params.seed!r} is outside 0..{MAX_SEED}")
        graph = copy.deepcopy(self._graph)
        r = self._roles

        def set_inputs(node_id: str, **values: Any) -> None:
            graph[node_id]["inputs"].update(values)

        set_inputs(r.checkpoint, ckpt_name=params.checkpoint)
        set_inputs(
            r.lora,
            lora_name=params.lora_name,
            strength_model=float(params.lora_strength_model),
            strength_clip=float(params.lora_strength_clip),
        )
        set_inputs(r.positive, text=params.positive)
        set_inputs(r.negative, text=params.negative)
        sampler = {
            "seed": params.seed,
            "steps": params.steps,
            "cfg": None if params.cfg is None else float(params.cfg),
            "sampler_name": params.sampler_name,
            "scheduler": params.scheduler,
        }
        set_inputs(r.sampler, **{k: v for k, v in sampler.items() if v is not None})
        size = {"width": params.width, "height": params.height}
        size = {k: v for k, v in size.items() if v is not None}
        if size:
            if r.latent is None:
                raise WorkflowError(
                    f"workflow {self.source!r} has no EmptyLatentImage to set the size on; "
                    "add one linked to the KSampler's latent_image"
                )
            set_inputs(r.latent, **size)
        return graph


def _link_target(graph: Mapping[str, Any], node_id: str, input_name: str) -> str | None:
    """The node id an input is linked to (``["3", 0]``), or None for a literal value."""
    value = graph[node_id]["inputs"].get(input_name)
    if isinstance(value, list) and len(value) == 2 and str(value[0]) in graph:
        return str(value[0])
    return None


def _pick(graph: Mapping[str, Any], class_type: str, linked: str | None, source: str) -> str:
    """The linked node if it has *class_type*, else the only node of that class."""
    if linked is not None and graph[linked]["class_type"] == class_type:
        return linked
    ids = sorted(nid for nid, node in graph.items() if node["class_type"] == class_type)
    if not ids:
        raise WorkflowError(
            f"workflow {source!r} has no {class_type} node; add one or {_EXPORT_HINT}"
        )
    if len(ids) > 1:
        raise WorkflowError(
            f"workflow {source!r} has {len(ids)} {class_type} nodes ({', '.join(ids)}) "
            f"and none is linked where expected; keep exactly one"
        )
    return ids[0]


def _text_encoder(graph: Mapping[str, Any], sampler: str, which: str, source: str) -> str:
    target = _link_target(graph, sampler, which)
    if target is None or graph[target]["class_type"] != "CLIPTextEncode":
        got = "nothing" if target is None else f"{graph[target]['class_type']} {target}"
        raise WorkflowError(
            f"workflow {source!r}: KSampler {sampler} input {which!r} is linked to {got}, "
            "not a CLIPTextEncode; link a CLIPTextEncode to it directly"
        )
    return target


def _find_roles(graph: Mapping[str, Any], source: str) -> _Roles:
    samplers = sorted(nid for nid, node in graph.items() if node["class_type"] == "KSampler")
    if not samplers:
        raise WorkflowError(f"workflow {source!r} has no KSampler node; add one or {_EXPORT_HINT}")
    if len(samplers) > 1:
        raise WorkflowError(
            f"workflow {source!r} has {len(samplers)} KSampler nodes ({', '.join(samplers)}); "
            "keep exactly one"
        )
    sampler = samplers[0]
    positive = _text_encoder(graph, sampler, "positive", source)
    negative = _text_encoder(graph, sampler, "negative", source)
    if positive == negative:
        raise WorkflowError(
            f"workflow {source!r}: KSampler {sampler} uses CLIPTextEncode {positive} as both "
            "positive and negative; give each its own node"
        )
    lora = _pick(graph, "LoraLoader", _link_target(graph, sampler, "model"), source)
    checkpoint = _pick(graph, "CheckpointLoaderSimple", _link_target(graph, lora, "model"), source)
    _pick(graph, "SaveImage", None, source)
    latent_link = _link_target(graph, sampler, "latent_image")
    latent = (
        latent_link
        if latent_link and graph[latent_link]["class_type"] == "EmptyLatentImage"
        else None
    )
    return _Roles(checkpoint, lora, positive, negative, sampler, latent)
