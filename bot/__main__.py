"""``python -m bot``: load the settings, set up logging, run the bot.

``python -m bot doctor`` checks a deployment; ``python -m bot stats`` reports from the
database.

Start-up problems an operator must fix (a bad setting, an unreadable personas file, a
broken workflow template, a locked database, a token Telegram refuses) end the process
with one line on stderr and exit code 2; nothing else is printed for them.
"""

from __future__ import annotations

import logging
import sys
from typing import Final

import trio

from bot import app
from bot.logging_setup import setup_logging
from bot.personas import PersonasError
from bot.settings import Settings, SettingsError, load_settings
from bot.telegram_errors import TelegramUnauthorized
from comfy import WorkflowError
from store import StoreError

__all__ = ["main"]

USAGE: Final = "use: python -m bot [doctor | stats [--since 7d] [--json]]"
EXIT_CONFIG: Final = 2
EXIT_CRASH: Final = 1
_FATAL: Final = (PersonasError, WorkflowError, StoreError, TelegramUnauthorized)


def main(argv: list[str] | None = None) -> int:
    """Run the bot, or the ``doctor`` or ``stats`` command named in *argv*."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "stats":
        from bot.stats import stats_main

        return stats_main(args[1:])
    if args and args[0] == "doctor":
        from bot.doctor import doctor_main

        return doctor_main(args[1:])
    if args:
        print(f"unknown command {args[0]!r}; {USAGE}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _setup_logging(settings)
    fatal: BaseException | None = None
    crashed = False
    try:
        trio.run(app.run, settings)
    except* _FATAL as group:
        fatal = group.exceptions[0]
    except* Exception:
        # Through logging, so the redacting formatter sees the traceback too.
        logging.getLogger("bot").exception("the bot stopped on an unexpected error")
        crashed = True
    if fatal is not None:
        print(f"cannot start: {_fatal_line(fatal, settings)}", file=sys.stderr)
        return EXIT_CONFIG
    if crashed:
        return EXIT_CRASH
    return 0


def _setup_logging(settings: Settings) -> None:
    secrets = [settings.telegram_bot_token.get_secret_value()]
    if settings.llm_api_key is not None:
        secrets.append(settings.llm_api_key.get_secret_value())
    setup_logging(
        level=settings.log_level, json_lines=settings.log_format == "json", secrets=secrets
    )


def _fatal_line(exc: BaseException, settings: Settings) -> str:
    if isinstance(exc, TelegramUnauthorized):
        return (
            "Telegram refused TELEGRAM_BOT_TOKEN (401 Unauthorized); copy it again from @BotFather"
        )
    if isinstance(exc, WorkflowError):
        return f"WORKFLOW_FILE {str(settings.workflow_file)!r}: {exc}"
    return str(exc)


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
