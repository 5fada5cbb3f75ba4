"""Settings: the defaults, .env reading, and one-line errors that name the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.core.settings import (
    Settings,
    SettingsError,
    environment_warnings,
    load_settings,
    unknown_names,
)
from comfy import SHIPPED_WORKFLOW

TOKEN = "123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [
        "TELEGRAM_BOT_TOKEN",
        "COMFYUI_BASE_URL",
        "COMFYUI_TIMEOUT_SECONDS",
        "COMFYUI_CONCURRENCY",
        "COMFYUI_DEFAULT_CHECKPOINT",
        "IMAGE_ENABLED",
        "ADMIN_USER_IDS",
        "LLM_BASE_URL",
    ]:
        monkeypatch.delenv(name, raising=False)


def test_seed_defaults() -> None:
    settings = load_settings(env_file=None, telegram_bot_token=TOKEN)
    assert settings.comfyui_base_url is None
    assert settings.comfyui_timeout_seconds == 120
    assert settings.comfyui_concurrency == 2
    assert settings.comfyui_default_checkpoint == "sd_xl_base_1.0.safetensors"
    assert settings.image_enabled is True
    assert settings.workflow_file == SHIPPED_WORKFLOW
    assert settings.workflow_file.is_file()
    assert settings.database_path == Path("data/bot.db")
    assert not settings.images_available  # no ComfyUI, no button


def test_env_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text(
        f"TELEGRAM_BOT_TOKEN={TOKEN}\nCOMFYUI_BASE_URL=http://gpu:8188\nADMIN_USER_IDS=1, 22\n"
    )
    monkeypatch.setenv("COMFYUI_CONCURRENCY", "4")
    settings = load_settings(env_file=env)
    assert settings.comfyui_base_url == "http://gpu:8188"
    (server,) = settings.comfyui_servers
    assert (server.url, server.name, server.slots) == ("http://gpu:8188", "gpu:8188", 4)
    assert settings.admin_user_ids == frozenset({1, 22})
    assert settings.comfyui_concurrency == 4
    assert settings.images_available


def test_image_enabled_false_hides_the_feature() -> None:
    settings = load_settings(
        env_file=None,
        telegram_bot_token=TOKEN,
        comfyui_base_url="http://gpu:8188",
        image_enabled="false",
    )
    assert not settings.images_available


def test_missing_token_is_one_line_naming_the_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env_file=None)
    assert str(caught.value) == "TELEGRAM_BOT_TOKEN is required; set it in .env (see .env.example)"


def test_bad_values_name_each_variable_and_value() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            env_file=None,
            telegram_bot_token=TOKEN,
            comfyui_concurrency="two",
            comfyui_timeout_seconds="-5",
        )
    message = str(caught.value)
    assert "\n" not in message
    assert "COMFYUI_CONCURRENCY" in message
    assert "'two'" in message
    assert "COMFYUI_TIMEOUT_SECONDS" in message


def test_a_malformed_token_is_refused_without_echoing_it() -> None:
    secret = "not-a-token-SECRET-VALUE"
    with pytest.raises(SettingsError) as caught:
        load_settings(env_file=None, telegram_bot_token=secret)
    assert "TELEGRAM_BOT_TOKEN" in str(caught.value)
    assert secret not in str(caught.value)


def test_the_token_is_hidden_in_repr_and_dumps() -> None:
    settings = load_settings(env_file=None, telegram_bot_token=TOKEN)
    assert TOKEN not in repr(settings)
    assert TOKEN not in settings.model_dump_json()
    assert settings.telegram_bot_token.get_secret_value() == TOKEN


def test_bad_admin_ids() -> None:
    with pytest.raises(SettingsError, match="ADMIN_USER_IDS"):
        load_settings(env_file=None, telegram_bot_token=TOKEN, admin_user_ids="1,abc")


def test_env_example_lists_every_setting_and_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parent.parent / ".env.example"
    lines = example.read_text(encoding="utf-8").splitlines()
    names = {line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")}
    # Listed but commented out, so that a service's own value is not overridden.
    commented = {m[1] for line in lines if (m := re.match(r"# ([A-Z][A-Z_]+)=", line))}
    assert commented == {"DATABASE_PATH", "METRICS_ADDRESS"}
    assert names | commented == {field.upper() for field in Settings.model_fields}
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)  # the one value the example leaves empty
    settings = load_settings(env_file=example)
    assert settings.workflow_file.is_file()  # every path the example names exists
    assert settings.personas_file.is_file()
    assert settings.comfyui_base_url is None
    assert not settings.images_available


def test_several_comfyui_servers_each_with_its_own_slots_or_the_default() -> None:
    settings = load_settings(
        env_file=None,
        telegram_bot_token=TOKEN,
        comfyui_base_url=" http://gpu1:8188#3 , http://gpu2:8188/ ",
        comfyui_concurrency=2,
    )
    servers = [(s.url, s.name, s.slots) for s in settings.comfyui_servers]
    assert servers == [("http://gpu1:8188", "gpu1:8188", 3), ("http://gpu2:8188", "gpu2:8188", 2)]


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("http://gpu1:8188#0", "#0"),
        ("http://gpu1:8188#many", "#many"),
        ("gpu1:8188", "gpu1:8188"),
        ("http://gpu1:8188, http://gpu1:8188#2", "gpu1:8188"),
    ],
)
def test_a_bad_server_list_is_one_line_naming_the_entry(value: str, names: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env_file=None, telegram_bot_token=TOKEN, comfyui_base_url=value)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("COMFYUI_BASE_URL: ")
    assert names in message


def test_an_empty_token_in_env_or_environment_says_it_is_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / ".env"
    for line in ("TELEGRAM_BOT_TOKEN=\n", "TELEGRAM_BOT_TOKEN=   \n"):
        env.write_text(line)
        with pytest.raises(SettingsError) as caught:
            load_settings(env_file=env)
        assert str(caught.value) == (
            "TELEGRAM_BOT_TOKEN is required; set it in .env (see .env.example)"
        )
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "")
    with pytest.raises(SettingsError, match=r"^TELEGRAM_BOT_TOKEN is required"):
        load_settings(env_file=None)


def test_validator_sentences_reach_the_operator_without_pydantics_prefix() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env_file=None, telegram_bot_token="nonsense", admin_user_ids="1,abc")
    message = str(caught.value)
    assert "Value error" not in message
    assert "TELEGRAM_BOT_TOKEN: does not look like a bot token" in message
    assert "ADMIN_USER_IDS: not a comma-separated list of Telegram user ids: 'abc'" in message


def test_a_mistyped_name_in_env_stops_the_start_with_the_closest_name(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\nCOMFYUI_CONCURENCY=3\ncomfui_base_url=x\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(env_file=env)
    assert str(caught.value) == (
        f"COMFYUI_CONCURENCY in {env} is not a setting; did you mean COMFYUI_CONCURRENCY?; "
        f"comfui_base_url in {env} is not a setting; did you mean COMFYUI_BASE_URL?"
    )


def test_a_bad_value_and_a_typo_are_reported_together(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\nCOMFYUI_CONCURRENCY=x\nLOG_LEVL=DEBUG\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(env_file=env)
    message = str(caught.value)
    assert message.startswith("COMFYUI_CONCURRENCY: ")
    assert message.endswith(f"; LOG_LEVL in {env} is not a setting; did you mean LOG_LEVEL?")


def test_unknown_names_keeps_to_the_bots_prefixes_and_near_misses() -> None:
    names = ["PATH", "HOME", "LOGNAME", "PYTHONPATH", "INVOCATION_ID", "TELEGRAM_BOT_TOKEN"]
    assert unknown_names(names, where=".env") == []
    assert unknown_names(["COMFYUI_ZZZZZZZZZZZZZ", "IMAGES_ENABLED"], where=".env") == [
        "COMFYUI_ZZZZZZZZZZZZZ in .env is not a setting; see .env.example for the names",
        "IMAGES_ENABLED in .env is not a setting; did you mean IMAGE_ENABLED?",
    ]


def test_the_environment_is_only_warned_about() -> None:
    environ = {"PATH": "/bin", "LLM_MODLE": "x", "TELEGRAM_BOT_TOKEN": TOKEN}
    assert environment_warnings(environ) == [
        "LLM_MODLE in the environment is not a setting; did you mean LLM_MODEL?"
    ]
    assert load_settings(env_file=None, **{"telegram_bot_token": TOKEN}).llm_model


def test_empty_workflow_and_personas_files_mean_the_shipped_ones(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\nWORKFLOW_FILE=\nPERSONAS_FILE=\n")
    settings = load_settings(env_file=env)
    assert settings.workflow_file == SHIPPED_WORKFLOW
    assert settings.personas_file.is_file()
