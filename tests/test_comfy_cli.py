"""``python -m comfy``: argument parsing and wiring, run against the fake ComfyUI."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from comfy import SHIPPED_WORKFLOW
from comfy.__main__ import build_parser, run_cli
from tests.fakes.comfy import PNG_MAGIC, open_fake_comfy
from tests.fakes.comfy_fixtures import FAKE_BASE_URL

WORKFLOW = str(SHIPPED_WORKFLOW)


def test_parser_defaults_and_repeatable_lora() -> None:
    args = build_parser().parse_args(
        [
            "--url",
            "http://gpu:8188",
            "--lora",
            "a.safetensors",
            "--lora",
            "b.safetensors",
            "--check",
        ]
    )
    assert args.lora == ["a.safetensors", "b.safetensors"]
    assert (args.checkpoint, args.timeout, args.workflow) == (
        "sd_xl_base_1.0.safetensors",
        120.0,
        WORKFLOW,
    )
    assert args.check
    assert args.seed is None


async def test_draws_a_picture_into_a_file(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    out = tmp_path / "out.png"
    args = build_parser().parse_args(
        [
            "--url",
            FAKE_BASE_URL,
            "--lora",
            "anna.safetensors",
            "--prompt",
            "anna",
            "--seed",
            "5",
            "--workflow",
            WORKFLOW,
            "-o",
            str(out),
        ]
    )
    lines: list[str] = []
    async with open_fake_comfy() as fake:
        code = await run_cli(
            args,
            transport=httpx.MockTransport(fake.handler),
            open_ws=fake.open_ws,
            say=lines.append,
        )
    assert code == 0
    assert out.read_bytes() == PNG_MAGIC + b"persona_bot_00001_.png"
    assert fake.submitted[0].graph["6"]["inputs"]["seed"] == 5
    assert "running 5/5" in lines
    assert "downloading" in lines
    assert lines[-1] == f"wrote {out} (30 bytes, image/png)"


async def test_failure_exits_1_with_one_line(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    args = build_parser().parse_args(
        [
            "--url",
            FAKE_BASE_URL,
            "--lora",
            "ghost.safetensors",
            "--prompt",
            "x",
            "--workflow",
            WORKFLOW,
            "-o",
            str(tmp_path / "x.png"),
        ]
    )
    lines: list[str] = []
    async with open_fake_comfy() as fake:
        code = await run_cli(
            args,
            transport=httpx.MockTransport(fake.handler),
            open_ws=fake.open_ws,
            say=lines.append,
        )
    assert code == 1
    assert lines[-1] == (
        "error: PromptRejected: ComfyUI rejected the prompt: node 2 (LoraLoader): "
        "lora_name 'ghost.safetensors' not in list"
    )
    assert not (tmp_path / "x.png").exists()


async def test_check_lists_missing_models(autojump_clock: trio.abc.Clock) -> None:
    args = build_parser().parse_args(
        [
            "--url",
            FAKE_BASE_URL,
            "--check",
            "--lora",
            "anna.safetensors",
            "--lora",
            "bob.safetensors",
        ]
    )
    lines: list[str] = []
    async with open_fake_comfy() as fake:
        code = await run_cli(args, transport=httpx.MockTransport(fake.handler), say=lines.append)
    assert (code, lines) == (1, ["missing lora: bob.safetensors"])


async def test_drawing_needs_prompt_lora_and_output() -> None:
    lines: list[str] = []
    code = await run_cli(build_parser().parse_args(["--url", FAKE_BASE_URL]), say=lines.append)
    assert (code, lines) == (2, ["error: --prompt, --lora and -o are required to draw a picture"])
