"""Settings from ``.env`` and the environment, checked once at start-up.

Examples::

    TELEGRAM_BOT_TOKEN=123456:ABC...        # required
    COMFYUI_BASE_URL=http://gpu-host:8188   # empty: the image feature is skipped
    COMFYUI_BASE_URL=http://gpu1:8188#3,http://gpu2:8188   # several servers, #N slots
    ADMIN_USER_IDS=111,222

A bad or missing value stops the start with one line that names the variable
(:class:`SettingsError`); the token never appears in it. So does a name in ``.env`` that
looks meant for the bot but is no setting (``COMFYUI_CONCURENCY=3``): the line says which
known name is closest. The same name in the environment is only warned about
(:func:`environment_warnings`), since the environment is shared with other programs.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from dotenv import dotenv_values
from pydantic import (
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.telegram.redact import TOKEN_PATTERN
from bot.telegram.send_budget import DEFAULT_PER_SECOND
from comfy.servers import ServerSpec, parse_servers
from comfy.workflow import SHIPPED_WORKFLOW
from store.retention import RetentionPolicy

__all__ = [
    "EXAMPLE_ENV",
    "MAX_SUBSCRIPTION_STARS",
    "SECRET_FIELDS",
    "SETTING_NAMES",
    "ListenAddress",
    "Pack",
    "Settings",
    "SettingsError",
    "environment_warnings",
    "load_settings",
    "parse_listen_address",
    "parse_packs",
    "unknown_names",
]

DEFAULT_TELEGRAM_API_BASE: Final = "https://api.telegram.org"
# Inside the package, so an installed wheel finds it from any working folder.
SHIPPED_PERSONAS: Final = Path(str(resources.files("bot.core").joinpath("personas.json")))
EXAMPLE_ENV: Final = Path(str(resources.files("bot.core").joinpath("env.example")))
SECRET_FIELDS: Final = frozenset({"telegram_bot_token", "llm_api_key"})
DEFAULT_USER_MESSAGES_PER_MINUTE: Final = 20
DEFAULT_LLM_REPLIES_PER_USER_PER_MINUTE: Final = 6
DEFAULT_USER_PRESSES_PER_MINUTE: Final = 30
MAX_SUBSCRIPTION_STARS: Final = 10_000  # Telegram's ceiling for a subscription price
MAX_PACK_PICTURES: Final = 100_000
MAX_PACK_STARS: Final = 100_000
_PACK_ITEM: Final = re.compile(r"^(\d{1,6}):(\d{1,6})$")
_LISTEN: Final = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})"
)
MAX_PORT: Final = 65_535
# A contact goes into a press's alert, which Telegram cuts at 200 characters.
MAX_CONTACT_CHARS: Final = 64
_REQUIRED: Final = "{name} is required; set it in .env (see .env.example)"
# difflib's similarity from which a name counts as a typo of a setting even without one of
# the settings' prefixes (COMFUI_BASE_URL); measured on the names here, 0.8 catches one
# dropped, doubled or swapped letter and no unrelated variable of a usual environment.
_TYPO_SIMILARITY: Final = 0.8


class SettingsError(Exception):
    """A setting is missing or wrong; the message is one line naming the variable."""


@dataclass(frozen=True, slots=True)
class Pack:
    """*pictures* added to the balance for *stars*."""

    pictures: int
    stars: int


def parse_packs(text: str) -> tuple[Pack, ...]:
    """``"10:50,50:200"`` (pictures:stars) → packs; empty → none (payments off).

    Raises:
        ValueError: one line naming the rule and the bad item.
    """
    packs: list[Pack] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        match = _PACK_ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"each pack is pictures:stars, like 10:50 (got {item!r})")
        pictures, stars = int(match.group(1)), int(match.group(2))
        if not (1 <= pictures <= MAX_PACK_PICTURES and 1 <= stars <= MAX_PACK_STARS):
            raise ValueError(
                f"a pack needs 1..{MAX_PACK_PICTURES} pictures and 1..{MAX_PACK_STARS} stars"
                f" (got {item!r})"
            )
        if any(pack.pictures == pictures for pack in packs):
            raise ValueError(f"two packs of {pictures} pictures; a pack is named by its size")
        packs.append(Pack(pictures, stars))
    return tuple(packs)


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where a local HTTP listener binds (``127.0.0.1:9464``, ``[::1]:9464``)."""

    host: str
    port: int  # 0: any free port, named in the log line

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen_address(text: str) -> ListenAddress:
    """``host:port`` (an IPv6 host in brackets) → :class:`ListenAddress`.

    Raises:
        ValueError: one line with the expected shape.
    """
    match = _LISTEN.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected host:port, like 127.0.0.1:9464 (got {text.strip()!r})")
    host = match.group("v6") or match.group("host")
    port = int(match.group("port"))
    if port > MAX_PORT:
        raise ValueError(f"port {port} is above {MAX_PORT}")
    return ListenAddress(host, port)


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
    workflow_file: Path = SHIPPED_WORKFLOW

    # One URL or a comma-separated list, each with an optional "#N" slots (comfy.servers).
    comfyui_base_url: str | None = None
    comfyui_timeout_seconds: float = Field(default=120.0, gt=0, le=3600)
    comfyui_concurrency: int = Field(default=2, ge=1, le=64)
    comfyui_default_checkpoint: str = Field(default="sd_xl_base_1.0.safetensors", min_length=1)
    # How ComfyUI draws the forming picture shown in the status message: latent2rgb is
    # nearly free, taesd looks better and costs sampling time; off shows text progress only.
    comfyui_previews: Literal["latent2rgb", "taesd", "auto", "off"] = "latent2rgb"
    image_enabled: bool = True
    image_queue_size: int = Field(default=20, ge=1, le=10_000)
    free_images: int = Field(default=3, ge=0)
    subscription_daily_images: int = Field(default=20, ge=0)
    admin_user_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    stars_packs: Annotated[tuple[Pack, ...], NoDecode] = ()
    stars_subscription_price: int = Field(default=0, ge=0, le=MAX_SUBSCRIPTION_STARS)

    llm_base_url: HttpUrl | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str = "gpt-4o-mini"
    llm_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    llm_history_turns: int = Field(default=12, ge=0, le=200)

    # Fairness: what one user may ask of the bot per minute (0 turns a limit off).
    user_messages_per_minute: int = Field(default=DEFAULT_USER_MESSAGES_PER_MINUTE, ge=0)
    llm_replies_per_user_per_minute: int = Field(
        default=DEFAULT_LLM_REPLIES_PER_USER_PER_MINUTE, ge=0
    )
    user_presses_per_minute: int = Field(default=DEFAULT_USER_PRESSES_PER_MINUTE, ge=0)

    # How long users' data is kept, in days; 0 keeps it forever (docs/product.md, P20).
    # Texts go first; events (no texts) stay longer so the picture report keeps its history.
    turns_retention_days: int = Field(default=90, ge=0, le=36_500)
    sent_messages_retention_days: int = Field(default=90, ge=0, le=36_500)
    jobs_retention_days: int = Field(default=90, ge=0, le=36_500)
    events_retention_days: int = Field(default=400, ge=0, le=36_500)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["plain", "json"] = "plain"

    # Where users reach a person: "@shop_support", an e-mail or a URL; empty: nobody named.
    support_contact: str | None = Field(default=None, max_length=MAX_CONTACT_CHARS)

    # host:port of the /metrics and /healthz listener; empty keeps it off.
    metrics_address: Annotated[ListenAddress | None, NoDecode] = None

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

    @field_validator("comfyui_base_url")
    @classmethod
    def _server_list(cls, value: str | None) -> str | None:
        if value is not None:
            parse_servers(value, default_slots=1)  # the shape only; slots are read later
        return value

    @field_validator("personas_file", "workflow_file", mode="before")
    @classmethod
    def _empty_is_shipped(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str) and not value.strip():
            return SHIPPED_PERSONAS if info.field_name == "personas_file" else SHIPPED_WORKFLOW
        return value

    @field_validator("admin_user_ids", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        parts = [part for part in value.replace(" ", "").split(",") if part]
        bad = [part for part in parts if not part.lstrip("-").isdigit()]
        if bad:
            raise ValueError(f"not a comma-separated list of Telegram user ids: {bad[0]!r}")
        return frozenset(int(part) for part in parts)

    @field_validator("support_contact", mode="before")
    @classmethod
    def _one_line(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if "\n" in value.strip():
            raise ValueError("must be one line, like @shop_support")
        return value.strip() or None

    @field_validator("metrics_address", mode="before")
    @classmethod
    def _listen_address(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_listen_address(value) if value.strip() else None
        return value

    @field_validator("stars_packs", mode="before")
    @classmethod
    def _packs(cls, value: object) -> object:
        return parse_packs(value) if isinstance(value, str) else value

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
    def payments_on(self) -> bool:
        """Something is for sale: the buy buttons, /buy, /paysupport and /terms in the menu."""
        return bool(self.stars_packs) or self.stars_subscription_price > 0

    def pack(self, pictures: int) -> Pack | None:
        """The pack of *pictures* on sale now, if any."""
        return next((pack for pack in self.stars_packs if pack.pictures == pictures), None)

    @property
    def comfyui_servers(self) -> tuple[ServerSpec, ...]:
        """The ComfyUI servers, in the order given; empty without ``COMFYUI_BASE_URL``."""
        if self.comfyui_base_url is None:
            return ()
        return parse_servers(self.comfyui_base_url, default_slots=self.comfyui_concurrency)

    @property
    def token(self) -> SecretStr:
        """The bot token; ``load_settings`` made sure it is set."""
        if self.telegram_bot_token is None:
            raise SettingsError(_REQUIRED.format(name="TELEGRAM_BOT_TOKEN"))
        return self.telegram_bot_token

    @property
    def retention(self) -> RetentionPolicy:
        """The four retention settings, as the store's pruning rules take them."""
        return RetentionPolicy(
            turns_days=self.turns_retention_days,
            sent_messages_days=self.sent_messages_retention_days,
            jobs_days=self.jobs_retention_days,
            events_days=self.events_retention_days,
        )

    def is_admin(self, user_id: int) -> bool:
        """May *user_id* run the admin commands (``/grant``, ``/subscribe``, ``/stats``,
        ``/refund``, ``/stoprenewal``)?"""
        return user_id in self.admin_user_ids

    def secrets(self) -> tuple[str, ...]:
        """The values every output hides (:class:`bot.telegram.redact.Redactor`)."""
        values = (getattr(self, name) for name in sorted(SECRET_FIELDS))
        return tuple(value.get_secret_value() for value in values if value is not None)


SETTING_NAMES: Final = frozenset(name.upper() for name in Settings.model_fields)
# A variable with one of these prefixes is meant for the bot (TELEGRAM_, COMFYUI_, LLM_…).
_PREFIXES: Final = frozenset(name.split("_", 1)[0] + "_" for name in SETTING_NAMES)


def load_settings(
    *, env_file: str | Path | None = ".env", require_token: bool = True, **overrides: object
) -> Settings:
    """Read the settings, or raise :class:`SettingsError` with one line per problem.

    *overrides* replace values (tests); the environment and *env_file* fill the rest.
    *require_token* is False only for commands that read the database and nothing else.
    """
    problems = unknown_names(_names_in_file(env_file), where=str(env_file))
    settings: Settings | None = None
    try:
        # ``_env_file`` is pydantic-settings' init-time override of model_config's file.
        factory: Any = Settings
        settings = factory(_env_file=env_file, **overrides)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()] + problems
    if settings is None or problems:
        raise SettingsError("; ".join(problems))
    if require_token and settings.telegram_bot_token is None:
        raise SettingsError(_REQUIRED.format(name="TELEGRAM_BOT_TOKEN"))
    return settings


def unknown_names(names: Iterable[str], *, where: str) -> list[str]:
    """PURE: one line per name that looks meant for the bot but is no setting.

    A name looks meant for the bot when it starts with a setting's prefix (``COMFYUI_``)
    or is a near miss of a setting's name. Case does not matter, as in pydantic-settings.
    """
    lines: list[str] = []
    for raw in names:
        name = raw.upper()
        if name in SETTING_NAMES:
            continue
        closest = difflib.get_close_matches(name, SETTING_NAMES, n=1, cutoff=0.6)
        near = difflib.get_close_matches(name, SETTING_NAMES, n=1, cutoff=_TYPO_SIMILARITY)
        if not near and not name.startswith(tuple(_PREFIXES)):
            continue
        hint = f"did you mean {closest[0]}?" if closest else "see .env.example for the names"
        lines.append(f"{raw} in {where} is not a setting; {hint}")
    return lines


def environment_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per variable in the environment that looks like a mistyped setting."""
    return unknown_names(os.environ if environ is None else environ, where="the environment")


def _names_in_file(env_file: str | Path | None) -> list[str]:
    if env_file is None or not Path(env_file).is_file():
        return []
    return list(dotenv_values(env_file))


def _describe(error: object) -> str:
    assert isinstance(error, dict)
    field = str(error["loc"][0]) if error.get("loc") else "?"
    name = field.upper()
    if error.get("type") == "missing":
        return _REQUIRED.format(name=name)
    message = str(error.get("msg", "invalid value"))
    if error.get("type") == "value_error":
        # pydantic prefixes a validator's own sentence with "Value error, ".
        message = str(error.get("ctx", {}).get("error", message))
    if field in SECRET_FIELDS:
        return f"{name}: {message}"
    return f"{name}: {message} (got {error.get('input')!r})"
