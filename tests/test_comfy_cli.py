"""``python -m comfy``: argument parsing and wiring, run against the fake ComfyUI."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from comfy import SHIPPED_WORKFLOW
from comfy.__main__ import bot_settings, build_parser, run_cli
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


def test_defaults_come_from_the_bots_env_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("COMFYUI_BASE_URL", "COMFYUI_TIMEOUT_SECONDS", "COMFYUI_DEFAULT_CHECKPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("WORKFLOW_FILE", raising=False)
    (tmp_path / ".env").write_text(
        "COMFYUI_BASE_URL=http://gpu:8188\nCOMFYUI_TIMEOUT_SECONDS=45\nWORKFLOW_FILE=\n"
        "comfyui_default_checkpoint=own.safetensors\n"
    )
    monkeypatch.setenv("COMFYUI_TIMEOUT_SECONDS", "30")  # the environment wins, as for the bot
    args = build_parser(bot_settings()).parse_args(["--check", "--lora", "a.safetensors"])
    assert args.url == "http://gpu:8188"
    assert args.timeout == 30.0
    assert args.checkpoint == "own.safetensors"
    assert args.workflow == WORKFLOW  # empty means the shipped template
    explicit = build_parser(bot_settings()).parse_args(["--url", "http://other:1", "--check"])
    assert explicit.url == "http://other:1"


def test_without_a_url_anywhere_the_usage_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("COMFYUI_BASE_URL", raising=False)
    with pytest.raises(SystemExit) as exited:
        build_parser(bot_settings()).parse_args(["--check"])
    assert exited.value.code == 2
    assert "the following arguments are required: --url" in capsys.readouterr().err
