"""Settings from ``.env`` and the environment, checked once at start-up.

Examples::

    TELEGRAM_BOT_TOKEN=123456:ABC...        # required
    COMFYUI_BASE_URL=http://gpu-host:8188   # empty: the image feature is skipped
    ADMIN_USER_IDS=111,222

A bad or missing value stops the start with one line that names the variable
(:class:`SettingsError`); the token never appears in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import Field, HttpUrl, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.telegram.redact import TOKEN_PATTERN
from bot.telegram.send_budget import DEFAULT_PER_SECOND

__all__ = ["SECRET_FIELDS", "Settings", "SettingsError", "load_settings"]

DEFAULT_TELEGRAM_API_BASE: Final = "https://api.telegram.org"
SHIPPED_PERSONAS: Final = Path(__file__).with_name("personas.json")
SECRET_FIELDS: Final = frozenset({"telegram_bot_token", "llm_api_key"})
_REQUIRED: Final = "{name} is required; set it in .env (see .env.example)"


class SettingsError(Exception):
    """A setting is missing or wrong; the message is one line naming the variable."""


class Settings(BaseSettings):
    """Every knob of the bot; field names are the environment variables, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # Required to run the bot (``load_settings`` checks it); reports read the database only.
    telegram_bot_token: SecretStr | None = None
    telegram_api_base: HttpUrl = HttpUrl(DEFAULT_TELEGRAM_API_BASE)
    telegram_messages_per_second: int = Field(default=DEFAULT_PER_SECOND, ge=2, le=1000)
    database_path: Path = Path("data/bot.db")
    personas_file: Path = SHIPPED_PERSONAS
    workflow_file: Path = Path("workflows/sdxl_lora.json")

    comfyui_base_url: HttpUrl | None = None
    comfyui_timeout_seconds: float = Field(default=120.0, gt=0, le=3600)
    comfyui_concurrency: int = Field(default=2, ge=1, le=64)
    comfyui_default_checkpoint: str = Field(default="sd_xl_base_1.0.safetensors", min_length=1)
    image_enabled: bool = True
    image_queue_size: int = Field(default=20, ge=1, le=10_000)
    free_images: int = Field(default=3, ge=0)
    subscription_daily_images: int = Field(default=20, ge=0)
    admin_user_ids: Annotated[frozenset[int], NoDecode] = frozenset()

    llm_base_url: HttpUrl | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str = "gpt-4o-mini"
    llm_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    llm_history_turns: int = Field(default=12, ge=0, le=200)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["plain", "json"] = "plain"

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not TOKEN_PATTERN.fullmatch(value.get_secret_value()):
            raise ValueError("does not look like a bot token from @BotFather (digits:secret)")
        return value

    @field_validator(
        "telegram_bot_token", "comfyui_base_url", "llm_base_url", "llm_api_key", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("personas_file", mode="before")
    @classmethod
    def _empty_is_shipped(cls, value: object) -> object:
        return SHIPPED_PERSONAS if isinstance(value, str) and not value.strip() else value

    @field_validator("admin_user_ids", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(int(part) for part in value.replace(" ", "").split(",") if part)
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _case_insensitive(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        return (
            value.upper()
            if value.lower() in {"debug", "info", "warning", "error"}
            else value.lower()
        )

    @property
    def images_available(self) -> bool:
        """The «👁️ Посмотреть» button is shown (in private chats)."""
        return self.image_enabled and self.comfyui_base_url is not None

    @property
    def token(self) -> SecretStr:
        """The bot token; ``load_settings`` made sure it is set."""
        if self.telegram_bot_token is None:
            raise SettingsError(_REQUIRED.format(name="TELEGRAM_BOT_TOKEN"))
        return self.telegram_bot_token

    def is_admin(self, user_id: int) -> bool:
        """May *user_id* run ``/grant``, ``/subscribe`` and ``/stats``?"""
        return user_id in self.admin_user_ids


def load_settings(
    *, env_file: str | Path | None = ".env", require_token: bool = True, **overrides: object
) -> Settings:
    """Read the settings, or raise :class:`SettingsError` with one line per problem.

    *overrides* replace values (tests); the environment and *env_file* fill the rest.
    *require_token* is False only for commands that read the database and nothing else.
    """
    try:
        # ``_env_file`` is pydantic-settings' init-time override of model_config's file.
        factory: Any = Settings
        settings: Settings = factory(_env_file=env_file, **overrides)
    except ValidationError as exc:
        raise SettingsError("; ".join(_describe(error) for error in exc.errors())) from None
    if require_token and settings.telegram_bot_token is None:
        raise SettingsError(_REQUIRED.format(name="TELEGRAM_BOT_TOKEN"))
    return settings


def _describe(error: object) -> str:
    assert isinstance(error, dict)
    field = str(error["loc"][0]) if error.get("loc") else "?"
    name = field.upper()
    if error.get("type") == "missing":
        return _REQUIRED.format(name=name)
    message = str(error.get("msg", "invalid value"))
    if field in SECRET_FIELDS:
        return f"{name}: {message}"
    return f"{name}: {message} (got {error.get('input')!r})"
