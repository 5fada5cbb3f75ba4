"""``python -m bot doctor``: one ✓/✗ line per check, with the fix, against the fakes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest
import sqlite_utils

from bot.core.settings import Settings, load_settings
from bot.ops.doctor import Check, doctor_main, run_checks
from comfy import SHIPPED_WORKFLOW
from store import open_store, utc_now
from store.maintenance import schema_status
from store.schema import migration_names
from tests.fakes.comfy import FakeComfy
from tests.fakes.telegram import FAKE_BASE_URL, TEST_TOKEN, FakeTelegram
from tests.harness import LLM_BASE_URL, host_router


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "telegram_bot_token": TEST_TOKEN,
        "telegram_api_base": FAKE_BASE_URL,
        "comfyui_base_url": "http://comfy.test:8188",
        "database_path": tmp_path / "data" / "bot.db",
        "workflow_file": SHIPPED_WORKFLOW,
    }
    values.update(overrides)
    return load_settings(env_file=None, **values)


async def llm_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"choices": [{"message": {"content": "OK"}}]})


async def checks_for(
    settings: Settings, telegram: FakeTelegram, fake_comfy: FakeComfy, *, llm: object = llm_ok
) -> dict[str, Check]:
    routes = {httpx.URL(FAKE_BASE_URL).host: telegram.handler, "llm.test": llm}
    checks = await run_checks(
        settings,
        telegram_transport=host_router(routes),  # type: ignore[arg-type]
        comfy_transport=httpx.MockTransport(fake_comfy.handler),
        open_ws=fake_comfy.open_ws,
    )
    return {check.name: check for check in checks}


async def test_a_healthy_deployment_passes_every_check(
    tmp_path: Path, fake_telegram: FakeTelegram, fake_comfy: FakeComfy, autojump_clock: object
) -> None:
    settings = settings_for(tmp_path, llm_base_url=LLM_BASE_URL)
    checks = await checks_for(settings, fake_telegram, fake_comfy)
    assert list(checks) == [
        "personas", "telegram", "webhook", "comfyui", "comfyui features", "comfyui websocket",
        "models", "workflow", "llm", "database",
    ]  # fmt: skip
    assert checks["comfyui features"].detail == (
        "ComfyUI 0.3.64: no jobs API (history and queue); cache classic (the last prompt);"
        " previews off"
    )
    assert all(check.ok for check in checks.values()), [c.line() for c in checks.values()]
    assert checks["telegram"].line() == "✓ telegram: token valid, bot @persona_test_bot"
    assert "present" in checks["models"].detail
    assert "the bot creates" in checks["database"].detail
    assert not (tmp_path / "data" / "bot.db").exists()  # the doctor changes nothing


async def test_each_broken_part_is_one_line_with_its_fix(
    tmp_path: Path, fake_telegram: FakeTelegram, fake_comfy: FakeComfy, autojump_clock: object
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"prompt": {"1": {"class_type": "KSampler", "inputs": {}}}}))
    fake_comfy.loras.remove("max_v1.safetensors")
    fake_telegram.webhook_url = "https://example.invalid/hook"

    async def llm_down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="model loading")

    settings = settings_for(tmp_path, llm_base_url=LLM_BASE_URL, workflow_file=broken)
    checks = await checks_for(settings, fake_telegram, fake_comfy, llm=llm_down)
    assert checks["webhook"].ok  # set, but the bot deletes it at start
    assert "deletes it at start" in checks["webhook"].detail
    assert not checks["models"].ok
    assert "'max_v1.safetensors' is missing" in checks["models"].detail
    assert "models/loras/" in checks["models"].detail
    assert not checks["workflow"].ok
    assert "WORKFLOW_FILE" in checks["workflow"].detail
    assert not checks["llm"].ok
    assert "LLM_BASE_URL" in checks["llm"].detail
    assert all("\n" not in check.line() for check in checks.values())


async def test_a_wrong_token_and_an_absent_comfyui(
    tmp_path: Path, fake_comfy: FakeComfy, autojump_clock: object
) -> None:
    telegram = FakeTelegram(token="999999:ANOTHER-token-entirely")
    fake_comfy.unreachable = True
    checks = await checks_for(settings_for(tmp_path), telegram, fake_comfy)
    assert checks["telegram"].line() == (
        "✗ telegram: Telegram refused TELEGRAM_BOT_TOKEN; copy it again from @BotFather"
    )
    assert not checks["comfyui"].ok
    assert "COMFYUI_BASE_URL" in checks["comfyui"].detail
    assert "models" not in checks  # nothing to ask an unreachable server


async def test_without_comfyui_and_llm_the_optional_parts_pass(
    tmp_path: Path, fake_telegram: FakeTelegram, fake_comfy: FakeComfy, autojump_clock: object
) -> None:
    settings = settings_for(tmp_path, comfyui_base_url="")
    checks = await checks_for(settings, fake_telegram, fake_comfy)
    assert checks["comfyui"].ok
    assert "pictures are off" in checks["comfyui"].detail
    assert checks["llm"].ok
    assert "offline lines" in checks["llm"].detail


def test_doctor_main_reports_bad_settings_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    assert doctor_main() == 1
    out = capsys.readouterr().out
    assert out.startswith("✗ settings: TELEGRAM_BOT_TOKEN is required")


async def test_with_pictures_off_a_broken_workflow_is_still_reported(
    tmp_path: Path, fake_telegram: FakeTelegram, fake_comfy: FakeComfy, autojump_clock: object
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    settings = settings_for(
        tmp_path, comfyui_base_url="", image_enabled=False, workflow_file=broken
    )
    checks = await checks_for(settings, fake_telegram, fake_comfy)
    assert checks["comfyui"].ok
    assert not checks["workflow"].ok
    assert "WORKFLOW_FILE" in checks["workflow"].detail


async def test_the_database_check_names_the_schema_and_pending_migrations(
    tmp_path: Path, fake_telegram: FakeTelegram, fake_comfy: FakeComfy, autojump_clock: object
) -> None:
    path = tmp_path / "data" / "bot.db"
    path.parent.mkdir()
    sqlite3.connect(path).close()  # a file no bot has started on yet
    settings = settings_for(tmp_path)
    checks = await checks_for(settings, fake_telegram, fake_comfy)
    assert checks["database"].ok
    every = migration_names()
    pending = f"schema empty, {len(every)} migration(s) pending ({', '.join(every)})"
    assert pending in checks["database"].detail
    untouched = sqlite_utils.Database(path)
    assert schema_status(untouched).pending == every
    assert untouched.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # not switched
    untouched.close()

    open_store(path).close()
    checks = await checks_for(settings, fake_telegram, fake_comfy)
    assert checks["database"].line().endswith(f"schema {every[-1]}, no migrations pending")
    assert checks["ledger"].ok


async def test_the_doctor_names_a_balance_the_ledger_does_not_explain(
    tmp_path: Path, fake_telegram: FakeTelegram, fake_comfy: FakeComfy, autojump_clock: object
) -> None:
    path = tmp_path / "data" / "bot.db"
    with open_store(path) as store:
        store.users.ensure(7, now=utc_now(), free_images=3)
        store.db.execute("UPDATE users SET image_balance = 30 WHERE user_id = 7")
    checks = await checks_for(settings_for(tmp_path), fake_telegram, fake_comfy)
    assert checks["ledger"].line() == (
        "✗ ledger: user 7 balance: stored 30, the ledger says 3;"
        " restore a backup, or report it: this is a bug"
    )


async def test_a_database_from_a_newer_version_is_refused_by_the_doctor(
    tmp_path: Path, fake_telegram: FakeTelegram, fake_comfy: FakeComfy, autojump_clock: object
) -> None:
    path = tmp_path / "data" / "bot.db"
    with open_store(path) as store:
        store.db["_sqlite_migrations"].insert(
            {"migration_set": "persona_bot", "name": "0999_future", "applied_at": "2027"}
        )
    checks = await checks_for(settings_for(tmp_path), fake_telegram, fake_comfy)
    assert not checks["database"].ok
    assert "0999_future" in checks["database"].detail
    assert "forward" in checks["database"].detail


def test_doctor_main_reports_a_mistyped_variable_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("TELEGRAM_API_BASE", "http://127.0.0.1:9")  # refused at once
    monkeypatch.setenv("COMFYUI_CONCURENCY", "3")
    assert doctor_main() == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("✓ settings")
    assert lines[1] == (
        "✗ environment: COMFYUI_CONCURENCY in the environment is not a setting;"
        " did you mean COMFYUI_CONCURRENCY?"
    )


async def test_doctor_names_what_a_newer_server_offers(
    tmp_path: Path, fake_telegram: FakeTelegram, fake_comfy: FakeComfy, autojump_clock: object
) -> None:
    fake_comfy.version, fake_comfy.jobs_api = "0.3.75", True
    fake_comfy.argv = ["main.py", "--cache-lru", "4", "--preview-method=taesd"]
    checks = await checks_for(settings_for(tmp_path), fake_telegram, fake_comfy)
    assert checks["comfyui features"].detail == (
        "ComfyUI 0.3.75: jobs API; cache lru 4; previews taesd (server flag)"
    )
