"""``python -m bot doctor`` with several ComfyUI servers: each checked, each one's personas."""

from __future__ import annotations

from pathlib import Path

import httpx

from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS, load_settings
from bot.ops.doctor import run_checks
from tests.fakes.comfy import DEFAULT_LORAS, open_fake_comfy
from tests.fakes.telegram import FAKE_BASE_URL, TEST_TOKEN, FakeTelegram
from tests.harness import comfy_name, host_router

ROOT = Path(__file__).resolve().parent.parent
ALL_LORAS = tuple(dict.fromkeys([*DEFAULT_LORAS, *load_personas(SHIPPED_PERSONAS).lora_files()]))


async def test_each_server_is_checked_and_says_which_personas_it_can_draw(
    tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    lacking = tuple(f for f in ALL_LORAS if f != "alice_v1.safetensors")
    async with (
        open_fake_comfy(loras=ALL_LORAS) as full,
        open_fake_comfy(loras=lacking) as partial,
        open_fake_comfy() as down,
    ):
        down.unreachable = True
        fakes = [full, partial, down]
        names = [comfy_name(i) for i in (1, 2, 3)]
        settings = load_settings(
            env_file=None,
            telegram_bot_token=TEST_TOKEN,
            telegram_api_base=FAKE_BASE_URL,
            comfyui_base_url=",".join(f"http://{name}#1" for name in names),
            database_path=tmp_path / "bot.db",
            workflow_file=ROOT / "workflows" / "sdxl_lora.json",
        )
        routes = {httpx.URL(FAKE_BASE_URL).host: fake_telegram.handler}
        routes |= {
            name.split(":")[0]: fake.handler for name, fake in zip(names, fakes, strict=True)
        }
        checks = await run_checks(
            settings,
            telegram_transport=host_router(routes),
            comfy_transport=host_router(routes),
            open_ws={name: fake.open_ws for name, fake in zip(names, fakes, strict=True)},
        )
    lines = {check.name: check for check in checks}
    assert lines[f"comfyui {names[0]}"].ok
    assert lines[f"comfyui websocket {names[0]}"].ok
    assert lines[f"models {names[0]}"].ok
    drawable = lines[f"personas {names[0]}"]
    assert drawable.ok
    assert "cannot" not in drawable.detail
    assert "alice" in drawable.detail
    partial_line = lines[f"personas {names[1]}"]
    assert partial_line.ok  # it draws the others
    assert "cannot draw alice (no alice_v1.safetensors)" in partial_line.detail
    assert not lines[f"models {names[1]}"].ok
    assert not lines[f"comfyui {names[2]}"].ok
    assert "http://comfy3.test:8188" in lines[f"comfyui {names[2]}"].detail
    assert f"personas {names[2]}" not in lines
    assert lines["database"].ok
