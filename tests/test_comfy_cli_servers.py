"""``python -m comfy`` with the bot's list of several ComfyUI servers."""

from __future__ import annotations

from pathlib import Path

import trio

from comfy.__main__ import build_parser, run_cli
from tests.fakes.comfy import PNG_MAGIC, open_fake_comfy
from tests.harness import comfy_name, host_router

WORKFLOW = str(Path(__file__).resolve().parent.parent / "workflows" / "sdxl_lora.json")
URLS = f"http://{comfy_name(1)}#2, http://{comfy_name(2)}"


async def test_check_reports_each_server_by_name(autojump_clock: trio.abc.Clock) -> None:
    args = build_parser().parse_args(["--url", URLS, "--check", "--lora", "anna.safetensors"])
    lines: list[str] = []
    async with open_fake_comfy(loras=()) as lacking, open_fake_comfy() as full:
        routes = {"comfy1.test": lacking.handler, "comfy2.test": full.handler}
        code = await run_cli(args, transport=host_router(routes), say=lines.append)
    assert code == 1
    assert lines == [
        f"{comfy_name(1)}: missing lora: anna.safetensors",
        f"{comfy_name(2)}: ok: checkpoint and 1 LoRA file(s) present",
    ]


async def test_draws_on_the_first_server_that_has_the_models(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    out = tmp_path / "out.png"
    argv = ["--url", URLS, "--lora", "anna.safetensors", "--prompt", "anna"]
    args = build_parser().parse_args([*argv, "--workflow", WORKFLOW, "-o", str(out)])
    lines: list[str] = []
    async with open_fake_comfy(loras=()) as lacking, open_fake_comfy() as full:
        routes = {"comfy1.test": lacking.handler, "comfy2.test": full.handler}
        sockets = {comfy_name(1): lacking.open_ws, comfy_name(2): full.open_ws}
        code = await run_cli(args, transport=host_router(routes), open_ws=sockets, say=lines.append)
    assert code == 0
    assert lines[:2] == [f"{comfy_name(1)}: missing anna.safetensors", f"server {comfy_name(2)}"]
    assert lacking.submitted == []
    assert len(full.submitted) == 1
    assert out.read_bytes().startswith(PNG_MAGIC)


async def test_a_bad_list_is_one_line() -> None:
    lines: list[str] = []
    args = build_parser().parse_args(["--url", "http://a:1#0", "--check"])
    assert await run_cli(args, say=lines.append) == 1
    assert lines == ["error: server 'http://a:1#0': the number after # must be 1..64 slots"]
