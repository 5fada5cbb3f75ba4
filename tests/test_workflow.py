"""Workflow template: node discovery by links, one-line refusals, user text as JSON values."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comfy.workflow import SHIPPED_WORKFLOW, PromptParams, WorkflowError, WorkflowTemplate

SHIPPED = SHIPPED_WORKFLOW
TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts" / "comfy"

PARAMS = PromptParams(
    checkpoint="sd_xl_base_1.0.safetensors",
    lora_name="anna.safetensors",
    lora_strength_model=0.7,
    lora_strength_clip=0.6,
    positive="anna, portrait",
    negative="blurry",
    seed=1234,
)


def recorded_graph() -> dict[str, Any]:
    """The graph ComfyUI ran in transcript a (ids 1..8, bare API format)."""
    doc = json.loads((TRANSCRIPTS / "a_success.json").read_text())
    graph: dict[str, Any] = doc["http"][4]["request"]["json"]["prompt"]
    return graph


def renumbered_graph() -> dict[str, Any]:
    """The same chain re-exported with other ids; the negative encoder sorts first."""
    return {
        "40": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x"}},
        "12": {
            "class_type": "LoraLoader",
            "inputs": {
                "model": ["40", 0],
                "clip": ["40", 1],
                "lora_name": "y",
                "strength_model": 1.0,
                "strength_clip": 1.0,
            },
        },
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "neg", "clip": ["12", 1]}},
        "9": {"class_type": "CLIPTextEncode", "inputs": {"text": "pos", "clip": ["12", 1]}},
        "21": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 512, "height": 512, "batch_size": 1},
        },
        "30": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["12", 0],
                "seed": 1,
                "steps": 20,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["9", 0],
                "negative": ["3", 0],
                "latent_image": ["21", 0],
                "denoise": 1.0,
            },
        },
        "31": {"class_type": "VAEDecode", "inputs": {"samples": ["30", 0], "vae": ["40", 2]}},
        "32": {"class_type": "SaveImage", "inputs": {"images": ["31", 0], "filename_prefix": "p"}},
    }


def test_shipped_template_is_a_prompt_body_with_sdxl_defaults() -> None:
    doc = json.loads(SHIPPED.read_text())
    # postable as is: curl -d @comfy/workflows/sdxl_lora.json
    assert set(doc) <= {"prompt", "client_id"}
    classes = sorted(node["class_type"] for node in doc["prompt"].values())
    assert classes == sorted(
        [
            "CheckpointLoaderSimple",
            "LoraLoader",
            "CLIPTextEncode",
            "CLIPTextEncode",
            "EmptyLatentImage",
            "KSampler",
            "VAEDecode",
            "SaveImage",
        ]
    )
    sampler = next(n for n in doc["prompt"].values() if n["class_type"] == "KSampler")["inputs"]
    assert (sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == (
        25,
        6.5,
        "dpmpp_2m",
        "karras",
    )


def test_shipped_template_loads_and_builds() -> None:
    graph = WorkflowTemplate.from_file(SHIPPED).build(PARAMS)
    assert graph["1"]["inputs"]["ckpt_name"] == "sd_xl_base_1.0.safetensors"
    assert graph["2"]["inputs"]["lora_name"] == "anna.safetensors"
    assert (graph["2"]["inputs"]["strength_model"], graph["2"]["inputs"]["strength_clip"]) == (
        0.7,
        0.6,
    )
    assert (graph["3"]["inputs"]["text"], graph["4"]["inputs"]["text"]) == (
        "anna, portrait",
        "blurry",
    )
    assert graph["5"]["inputs"] == {"width": 1024, "height": 1024, "batch_size": 1}
    assert graph["6"]["inputs"]["seed"] == 1234
    assert graph["8"]["inputs"]["filename_prefix"] == "persona_bot"
    assert "prompt" not in graph  # build returns the bare graph for POST /prompt's "prompt"


def test_bare_api_graph_is_accepted() -> None:
    graph = WorkflowTemplate.from_dict(recorded_graph(), source="a").build(PARAMS)
    assert graph["3"]["inputs"]["text"] == "anna, portrait"
    assert graph["4"]["inputs"]["text"] == "blurry"


def test_nodes_are_found_by_links_not_ids() -> None:
    graph = WorkflowTemplate.from_dict(renumbered_graph()).build(PARAMS)
    assert graph["9"]["inputs"]["text"] == "anna, portrait"  # KSampler.positive → 9
    assert graph["3"]["inputs"]["text"] == "blurry"  # KSampler.negative → 3
    assert graph["40"]["inputs"]["ckpt_name"] == "sd_xl_base_1.0.safetensors"
    assert graph["12"]["inputs"]["lora_name"] == "anna.safetensors"
    assert graph["30"]["inputs"]["seed"] == 1234


def test_optional_params_override_the_template_and_none_keeps_it() -> None:
    template = WorkflowTemplate.from_file(SHIPPED)
    params = PromptParams(
        **{
            **_asdict(PARAMS),
            "width": 832,
            "height": 1216,
            "steps": 30,
            "cfg": 5,
            "sampler_name": "euler",
            "scheduler": "normal",
        }
    )
    graph = template.build(params)
    assert (graph["5"]["inputs"]["width"], graph["5"]["inputs"]["height"]) == (832, 1216)
    sampler = graph["6"]["inputs"]
    assert (sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == (
        30,
        5.0,
        "euler",
        "normal",
    )
    assert template.build(PARAMS)["6"]["inputs"]["steps"] == 25


def test_each_build_is_a_fresh_deep_copy() -> None:
    template = WorkflowTemplate.from_file(SHIPPED)
    first = template.build(PARAMS)
    first["3"]["inputs"]["text"] = "mutated"
    first["6"]["inputs"]["model"][0] = "999"
    second = template.build(PARAMS)
    assert second["3"]["inputs"]["text"] == "anna, portrait"
    assert second["6"]["inputs"]["model"] == ["2", 0]


def _asdict(params: PromptParams) -> dict[str, Any]:
    return {name: getattr(params, name) for name in PromptParams.__slots__}


NASTY = 'say "hi"}, {"9": {"class_type": "X"}} \\ back\\slash\nnew line \t tab \u2028 {{x}} %s $x'


@given(positive=st.text(), negative=st.text())
def test_user_text_round_trips_as_json_values(positive: str, negative: str) -> None:
    template = WorkflowTemplate.from_file(SHIPPED)
    params = PromptParams(**{**_asdict(PARAMS), "positive": positive, "negative": negative})
    decoded = json.loads(json.dumps({"prompt": template.build(params)}))["prompt"]
    assert decoded["3"]["inputs"]["text"] == positive
    assert decoded["4"]["inputs"]["text"] == negative
    assert sorted(decoded) == [str(i) for i in range(1, 9)]


def test_quotes_braces_backslashes_and_newlines_stay_one_string() -> None:
    template = WorkflowTemplate.from_file(SHIPPED)
    params = PromptParams(**{**_asdict(PARAMS), "positive": NASTY})
    body = json.dumps({"prompt": template.build(params)})
    decoded = json.loads(body)["prompt"]
    assert decoded["3"]["inputs"]["text"] == NASTY
    assert [n["class_type"] for n in decoded.values()].count("X") == 0


def _refusal(graph: dict[str, Any]) -> str:
    with pytest.raises(WorkflowError) as caught:
        WorkflowTemplate.from_dict(graph, source="w.json")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_refuses_a_template_without_ksampler() -> None:
    graph = recorded_graph()
    del graph["6"]
    assert _refusal(graph) == (
        "workflow 'w.json' has no KSampler node; add one or re-export it from ComfyUI with "
        "'Export (API)'"
    )


def test_refuses_two_ksamplers() -> None:
    graph = recorded_graph()
    graph["9"] = copy.deepcopy(graph["6"])
    assert _refusal(graph) == "workflow 'w.json' has 2 KSampler nodes (6, 9); keep exactly one"


def test_refuses_a_template_without_lora_loader() -> None:
    graph = recorded_graph()
    del graph["2"]
    graph["6"]["inputs"]["model"] = ["1", 0]
    assert _refusal(graph) == (
        "workflow 'w.json' has no LoraLoader node; add one or re-export it from ComfyUI with "
        "'Export (API)'"
    )


def test_refuses_two_lora_loaders_when_the_links_do_not_decide() -> None:
    graph = recorded_graph()
    graph["12"] = copy.deepcopy(graph["2"])
    graph["6"]["inputs"]["model"] = ["1", 0]  # the sampler bypasses both LoRAs
    assert _refusal(graph) == (
        "workflow 'w.json' has 2 LoraLoader nodes (12, 2) and none is linked where expected; "
        "keep exactly one"
    )


def test_two_lora_loaders_are_fine_when_the_sampler_links_one() -> None:
    graph = recorded_graph()
    graph["12"] = copy.deepcopy(graph["2"])  # a dangling copy; KSampler.model → "2"
    built = WorkflowTemplate.from_dict(graph).build(PARAMS)
    assert built["2"]["inputs"]["lora_name"] == "anna.safetensors"
    assert built["12"]["inputs"]["lora_name"] == "tiny_persona.safetensors"


def test_refuses_a_positive_input_that_is_not_a_text_encoder() -> None:
    graph = recorded_graph()
    graph["6"]["inputs"]["positive"] = ["5", 0]
    assert _refusal(graph) == (
        "workflow 'w.json': KSampler 6 input 'positive' is linked to EmptyLatentImage 5, "
        "not a CLIPTextEncode; link a CLIPTextEncode to it directly"
    )


def test_refuses_one_encoder_for_both_positive_and_negative() -> None:
    graph = recorded_graph()
    graph["6"]["inputs"]["negative"] = ["3", 0]
    assert _refusal(graph) == (
        "workflow 'w.json': KSampler 6 uses CLIPTextEncode 3 as both positive and negative; "
        "give each its own node"
    )


def test_refuses_a_template_without_save_image() -> None:
    graph = recorded_graph()
    del graph["8"]
    assert "has no SaveImage node" in _refusal(graph)


def test_refuses_a_ui_format_export() -> None:
    assert _refusal({"nodes": [], "links": [], "version": 0.4}) == (
        "workflow 'w.json' is in UI format; re-export it from ComfyUI with 'Export (API)'"
    )


def test_refuses_files_that_are_missing_or_not_json(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match=r"^cannot read workflow '.*nope.json': "):
        WorkflowTemplate.from_file(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"prompt": ')
    with pytest.raises(WorkflowError, match=r"^workflow '.*broken.json' is not valid JSON: "):
        WorkflowTemplate.from_file(broken)


def test_refuses_a_seed_out_of_range() -> None:
    template = WorkflowTemplate.from_file(SHIPPED)
    with pytest.raises(WorkflowError, match="seed -1 is outside"):
        template.build(PromptParams(**{**_asdict(PARAMS), "seed": -1}))
