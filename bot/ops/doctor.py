"""``python -m bot doctor``: what is wrong with this deployment, one line per check.

Each check prints ``✓`` or ``✗`` and, when it fails, what to change (usually in ``.env``).
The exit code is 0 only when every check passed, so the command also fits a deploy
script. Checks: settings, personas file, Telegram token and webhook, ComfyUI HTTP and
websocket, the checkpoint and every persona's LoRA, the workflow template, the LLM, and
the database. With several ComfyUI servers, each is checked in turn (its checks carry its
``host:port``), with one more line saying which personas it can draw.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

import httpx
import sqlite_utils
import trio

from bot.core.llm import ChatCompletions, LlmError
from bot.core.logs import setup_logging
from bot.core.personas import PersonaBook, PersonasError, load_personas
from bot.core.settings import Settings, SettingsError, environment_warnings, load_settings
from bot.telegram.client import TelegramApi
from bot.telegram.errors import TelegramError, TelegramUnauthorized
from bot.telegram.redact import Redactor
from comfy import (
    ComfyClient,
    ComfyError,
    OpenWebsocket,
    WorkflowError,
    WorkflowTemplate,
    websocket_opener,
)
from comfy.features import server_features
from comfy.preflight import ModelLists, missing_models, model_lists
from comfy.servers import ServerSpec
from store import StoreError
from store.instance_lock import NO_PID, lock_holder
from store.ledger import check as check_ledger
from store.maintenance import SchemaStatus, open_as_is, schema_status

__all__ = ["Check", "database_checks", "doctor_main", "run_checks"]

CHECK_TIMEOUT_S: Final = 15.0  # each check, all its calls together
HTTP_TIMEOUT: Final = httpx.Timeout(10.0)
WEBSOCKET_TIMEOUT_S: Final = 10.0  # connect and the first status frame
LLM_CHECK_TIMEOUT_S: Final = 10.0  # at most; LLM_TIMEOUT_SECONDS if shorter
LLM_CHECK_TOKENS: Final = 5  # "OK" is enough to prove the endpoint answers
TELEGRAM_CHECK_ATTEMPTS: Final = 2  # a doctor reports a failure, it does not wait one out
LEDGER_MIGRATION: Final = "0008_ledger"  # from which on balances are explained by entries
LEDGER_LINES: Final = 3  # mismatches named in the ledger's line


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.name}: {self.detail}"


@dataclass
class _Server:
    spec: ServerSpec
    http: httpx.AsyncClient
    open_ws: OpenWebsocket


@dataclass
class _Context:
    settings: Settings
    personas: PersonaBook | None
    http: httpx.AsyncClient
    servers: list[_Server]


async def run_checks(
    settings: Settings,
    *,
    telegram_transport: httpx.AsyncBaseTransport | None = None,
    comfy_transport: httpx.AsyncBaseTransport | None = None,
    open_ws: OpenWebsocket | Mapping[str, OpenWebsocket] | None = None,
) -> list[Check]:
    """Every check after the settings, in order, each under its own time limit.

    *open_ws* (tests) serves every ComfyUI server, or each by its ``host:port``.
    """
    personas_check, personas = _check_personas(settings)
    checks = [personas_check]
    async with (
        httpx.AsyncClient(transport=telegram_transport, timeout=HTTP_TIMEOUT) as http,
        AsyncExitStack() as stack,
    ):
        servers: list[_Server] = []
        for spec in settings.comfyui_servers:
            client = httpx.AsyncClient(
                base_url=spec.url, transport=comfy_transport, timeout=HTTP_TIMEOUT
            )
            await stack.enter_async_context(client)
            opener = open_ws.get(spec.name) if isinstance(open_ws, Mapping) else open_ws
            servers.append(_Server(spec, client, opener or websocket_opener(spec.url)))
        ctx = _Context(settings, personas, http, servers)
        for step in _STEPS:
            if step is _comfyui and len(servers) > 1:
                for server in servers:  # each under its own limit: one down, not all
                    checks += await _bounded(partial(_comfyui_server, server=server), ctx)
            else:
                checks += await _bounded(step, ctx)
    return checks


async def _bounded(
    step: Callable[[_Context], Awaitable[list[Check]]], ctx: _Context
) -> list[Check]:
    with trio.move_on_after(CHECK_TIMEOUT_S):
        return await step(ctx)
    name = getattr(step, "__name__", "comfyui").strip("_").replace("_", " ")
    return [Check(name, False, f"no answer within {CHECK_TIMEOUT_S:g} s")]


def _check_personas(settings: Settings) -> tuple[Check, PersonaBook | None]:
    try:
        book = load_personas(settings.personas_file)
    except PersonasError as exc:
        return Check("personas", False, f"{exc}; fix the file or unset PERSONAS_FILE"), None
    keys = ", ".join(persona.key for persona in book.personas)
    return Check(
        "personas", True, f"{len(book.personas)} ({keys}), default {book.default.key}"
    ), book


async def _telegram(ctx: _Context) -> list[Check]:
    api = TelegramApi(
        ctx.http,
        ctx.settings.token,
        base_url=str(ctx.settings.telegram_api_base),
        max_attempts=TELEGRAM_CHECK_ATTEMPTS,
    )
    try:
        me = await api.get_me()
        webhook = await api.get_webhook_info()
    except TelegramUnauthorized:
        return [
            Check(
                "telegram",
                False,
                "Telegram refused TELEGRAM_BOT_TOKEN; copy it again from @BotFather",
            )
        ]
    except TelegramError as exc:
        return [Check("telegram", False, f"{exc}; check TELEGRAM_API_BASE and the network")]
    checks = [Check("telegram", True, f"token valid, bot @{me.username}")]
    if webhook.url:
        pending = webhook.pending_update_count
        detail = f"a webhook is set ({pending} pending); the bot deletes it at start"
    else:
        detail = f"no webhook, long polling can run ({webhook.pending_update_count} pending)"
    checks.append(Check("webhook", True, detail))
    return checks


async def _comfyui(ctx: _Context) -> list[Check]:
    if not ctx.servers:
        return [
            Check(
                "comfyui",
                True,
                "COMFYUI_BASE_URL is empty: pictures are off (set it to turn them on)",
            )
        ]
    return await _comfyui_server(ctx, server=ctx.servers[0])


async def _comfyui_server(ctx: _Context, *, server: _Server) -> list[Check]:
    """One server's checks; named plainly with one server, by host:port with several."""
    several = len(ctx.servers) > 1
    suffix = f" {server.spec.name}" if several else ""
    client = ComfyClient(server.http)
    base = server.spec.url
    try:
        stats = await client.system_stats()
    except ComfyError as exc:
        return [
            Check(
                f"comfyui{suffix}",
                False,
                f"{exc.detail}; is ComfyUI running at {base} (COMFYUI_BASE_URL)?",
            )
        ]
    device = stats.devices[0] if stats.devices else {}
    free_gib = float(device.get("vram_free", 0)) / 2**30
    version = stats.system.get("comfyui_version", "?")
    checks = [
        Check(
            f"comfyui{suffix}",
            True,
            f"{base} ComfyUI {version}, {device.get('name', '?')}, {free_gib:.1f} GiB free",
        )
    ]
    try:
        jobs_api = await client.has_jobs_api()
    except ComfyError as exc:
        checks.append(Check(f"comfyui features{suffix}", False, exc.detail))
    else:
        features = server_features(stats, jobs_api=jobs_api)
        checks.append(Check(f"comfyui features{suffix}", True, features.line()))
    checks.append(await _websocket(server.open_ws, suffix))
    try:
        lists = await model_lists(client)
    except ComfyError as exc:
        return [*checks, Check(f"models{suffix}", False, exc.detail)]
    checks += _models(ctx, lists, suffix)
    if several and ctx.personas is not None:
        checks.append(_drawable(ctx, ctx.personas, lists, suffix))
    return checks


async def _websocket(open_ws: OpenWebsocket, suffix: str) -> Check:
    try:
        with trio.fail_after(WEBSOCKET_TIMEOUT_S):
            async with open_ws("persona-bot-doctor") as ws:
                await ws.get_message()
    except Exception as exc:  # every failure here means the same thing to the operator
        return Check(
            f"comfyui websocket{suffix}",
            False,
            f"{type(exc).__name__}: {exc}; a proxy must pass /ws upgrades",
        )
    return Check(f"comfyui websocket{suffix}", True, "/ws answers")


def _models(ctx: _Context, lists: ModelLists, suffix: str) -> list[Check]:
    book = ctx.personas
    loras = book.lora_files() if book else []
    checkpoint = ctx.settings.comfyui_default_checkpoint
    missing = missing_models(lists, checkpoint=checkpoint, loras=loras)
    if not missing:
        return [
            Check(
                f"models{suffix}",
                True,
                f"checkpoint {checkpoint} and {len(loras)} LoRA file(s) present",
            )
        ]
    return [
        Check(
            f"models{suffix}",
            False,
            f"{model.kind} {model.name!r} is missing; put it in ComfyUI's " + _WHERE[model.kind],
        )
        for model in missing
    ]


def _drawable(ctx: _Context, book: PersonaBook, lists: ModelLists, suffix: str) -> Check:
    """Which personas this server can draw; fails only if it can draw none."""
    files = lists.files
    default = ctx.settings.comfyui_default_checkpoint
    can, cannot = [], []
    for persona in book.personas:
        config = book.image_config(persona)
        needs = (config.checkpoint or default, config.lora_filename)
        lacking = [name for name in needs if name not in files]
        if lacking:
            cannot.append(f"{persona.key} (no {', '.join(lacking)})")
        else:
            can.append(persona.key)
    detail = f"draws {', '.join(can) or 'none'}"
    if cannot:
        detail += f"; cannot draw {'; '.join(cannot)}"
    return Check(f"personas{suffix}", bool(can), detail)


async def _workflow(ctx: _Context) -> list[Check]:
    path = ctx.settings.workflow_file
    try:
        template = WorkflowTemplate.from_file(path)
        if ctx.personas is not None:
            config = ctx.personas.image_config(ctx.personas.default)
            params = config.prompt_params(
                scene="a test", default_checkpoint="x", rng=random.Random(0)
            )
            template.build(params)
    except WorkflowError as exc:
        return [Check("workflow", False, f"{exc} (WORKFLOW_FILE)")]
    return [Check("workflow", True, f"{str(path)!r} accepted")]


async def _llm(ctx: _Context) -> list[Check]:
    settings = ctx.settings
    if settings.llm_base_url is None:
        return [
            Check("llm", True, "LLM_BASE_URL is empty: personas answer with their offline lines")
        ]
    llm = ChatCompletions(
        ctx.http,
        base_url=str(settings.llm_base_url),
        model=settings.llm_model,
        api_key=settings.llm_api_key,
        timeout_s=min(settings.llm_timeout_seconds, LLM_CHECK_TIMEOUT_S),
    )
    try:
        await llm.complete([{"role": "user", "content": "Say OK."}], max_tokens=LLM_CHECK_TOKENS)
    except LlmError as exc:
        return [Check("llm", False, f"{exc.detail}; check LLM_BASE_URL, LLM_MODEL and LLM_API_KEY")]
    return [Check("llm", True, f"{settings.llm_base_url} answers as {settings.llm_model}")]


async def _database(ctx: _Context) -> list[Check]:
    return database_checks(ctx.settings.database_path)


def database_checks(path: Path) -> list[Check]:
    """Writable, which migrations the next start applies (the doctor applies none), the
    ledger, and a bot running on it; alone, for a copy just restored from a backup."""
    holder = lock_holder(path)
    if holder is not None:
        # Not a failure: doctor is meant to run beside the bot.
        who = f"pid {holder}" if holder != NO_PID else "a process"
        running = [Check("instance", True, f"a bot is running on it ({who})")]
    else:
        running = []
    if not path.exists():
        return [_new_database(path), *running]
    ledger: list[Check] = []
    try:
        db = open_as_is(path)
        try:
            status = schema_status(db)
            if LEDGER_MIGRATION in status.applied:
                ledger = [_ledger_check(db)]
            db.execute("BEGIN IMMEDIATE")  # proves the bot could take the write lock
            db.execute("ROLLBACK")
        finally:
            db.close()
    except (StoreError, OSError) as exc:
        return [Check("database", False, f"{exc}; check DATABASE_PATH")]
    except Exception as exc:  # sqlite3 errors: a read-only file, a full disk
        return [
            Check("database", False, f"{str(path)!r}: {exc}; check DATABASE_PATH and permissions")
        ]
    return [_schema_check(path, status), *ledger, *running]


def _ledger_check(db: sqlite_utils.Database) -> Check:
    """Every balance, bought part, pack and subscription end agrees with the ledger."""
    mismatches = check_ledger(db, limit=LEDGER_LINES + 1)
    if not mismatches:
        return Check("ledger", True, "every balance and subscription agrees with its entries")
    shown = "; ".join(m.line() for m in mismatches[:LEDGER_LINES])
    more = " and more" if len(mismatches) > LEDGER_LINES else ""
    return Check("ledger", False, f"{shown}{more}; restore a backup, or report it: this is a bug")


def _new_database(path: Path) -> Check:
    folder = next((p for p in path.absolute().parents if p.exists()), Path("/"))
    if not os.access(folder, os.W_OK):
        return Check("database", False, f"cannot create {str(path)!r}: {folder} is not writable")
    return Check("database", True, f"no file yet; the bot creates {str(path)!r} at start")


def _schema_check(path: Path, status: SchemaStatus) -> Check:
    if status.unknown:
        return Check(
            "database",
            False,
            f"{str(path)!r} has migrations this version does not know "
            f"({', '.join(status.unknown)}): a newer version used it; migrations only go "
            "forward, so install that version again or restore a backup",
        )
    where = f"{str(path)!r} writable, schema {status.version}"
    if not status.pending:
        return Check("database", True, f"{where}, no migrations pending")
    return Check(
        "database",
        True,
        f"{where}, {len(status.pending)} migration(s) pending "
        f"({', '.join(status.pending)}); the next start applies them",
    )


_WHERE: Final = {
    "checkpoint": "models/checkpoints/ (or fix COMFYUI_DEFAULT_CHECKPOINT)",
    "lora": "models/loras/ (or fix lora_filename in the personas file)",
}
_STEPS: Final = (_telegram, _comfyui, _workflow, _llm, _database)


def doctor_main() -> int:
    """Print every check; exit 0 only if all passed."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(Redactor()(Check("settings", False, str(exc)).line()))
        return 1
    # Retries are worth a line in the bot's log, not in this report.
    setup_logging(level="ERROR", secrets=settings.secrets(), stream=sys.stderr)
    print(Check("settings", True, f"images {'on' if settings.images_available else 'off'}").line())
    checks = [Check("environment", False, line) for line in environment_warnings()]
    checks += trio.run(run_checks, settings)
    # A check's detail quotes what servers said, and a server may echo a secret.
    redact = Redactor(settings.secrets())
    for check in checks:
        print(redact(check.line()))
    return 0 if all(check.ok for check in checks) else 1
