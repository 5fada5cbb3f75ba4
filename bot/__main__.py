"""``python -m bot`` (or ``persona-bot``): run the bot, or one of its operator commands.

    python -m bot                      run the bot (reads .env)
    python -m bot doctor               check a deployment, one line per check
    python -m bot stats [--since 7d]   the picture report from the database
    python -m bot backup FILE          a consistent copy of the database, while it runs
    python -m bot example-env          a .env with every setting, commented
    python -m bot health               is the running bot alive? (exit 0 or 1)

Start-up problems an operator must fix (a bad setting, an unreadable personas file, a
broken workflow template, a locked or damaged database, another bot already running on the
same database, a token Telegram refuses, a ``METRICS_ADDRESS`` it cannot listen on) end
the process with one line on stderr and exit code 2; nothing else is printed for them. A
wrong command line prints the usage and exits with 2 as well.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Final

import trio

from bot import __version__, app
from bot.core.logs import setup_logging
from bot.core.personas import PersonasError
from bot.core.settings import (
    EXAMPLE_ENV,
    Settings,
    SettingsError,
    environment_warnings,
    load_settings,
)
from bot.ops.listener import ListenerError
from bot.telegram.errors import TelegramUnauthorized
from bot.telegram.redact import Redactor
from comfy import WorkflowError
from common.logfields import fields
from store import StoreError

__all__ = ["build_parser", "main"]

INSTALLED: Final = "persona-bot"  # [project.scripts] in pyproject.toml
EXIT_CONFIG: Final = 2
EXIT_CRASH: Final = 1
_FATAL: Final = (PersonasError, WorkflowError, StoreError, TelegramUnauthorized, ListenerError)


def build_parser() -> argparse.ArgumentParser:
    """The command line: no command runs the bot; ``doctor`` and ``stats`` report."""
    from bot.ops.backup import add_backup_arguments
    from bot.ops.stats import add_stats_arguments

    parser = argparse.ArgumentParser(
        prog=_program(),
        description=(
            "Telegram persona chat bot that draws pictures with a self-hosted ComfyUI. "
            "Without a command it runs the bot with the settings in .env and the environment."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "doctor",
        help="check settings, Telegram, ComfyUI, models, workflow, LLM and database",
        description=(
            "One ✓/✗ line per check, with what to change when it fails. "
            "Exit code 0 only when every check passed."
        ),
    )
    stats = commands.add_parser(
        "stats",
        help="presses, pictures, failures by reason and timings from the database",
        description="Picture presses, results and timings, read from the database (read-only).",
    )
    add_stats_arguments(stats)
    backup = commands.add_parser(
        "backup",
        help="copy the database to FILE, consistent even while the bot runs",
        description=(
            "A consistent copy of the database through SQLite's online backup API, safe "
            "while the bot runs; FILE is replaced only once the copy is complete and checked."
        ),
    )
    add_backup_arguments(backup)
    commands.add_parser(
        "health",
        help="is the running bot alive? asks /healthz (METRICS_ADDRESS), exit 0 or 1",
        description=(
            "With METRICS_ADDRESS set, asks the running bot's /healthz: polling live and "
            "the event loop answering. Without it, checks only that a bot holds the "
            "database. One line; exit 0 when healthy, 1 otherwise (for HEALTHCHECK)."
        ),
    )
    commands.add_parser(
        "example-env",
        help="print a .env with every setting, commented (persona-bot example-env > .env)",
        description="The settings file with every variable, its default and what it does.",
    )
    return parser


def _program() -> str:
    """How the user started us, for the usage lines: the installed command, or -m."""
    return INSTALLED if Path(sys.argv[0]).name == INSTALLED else "python -m bot"


def main(argv: list[str] | None = None) -> int:
    """Run the command in *argv*; the process exit code."""
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG
    if args.command is None:
        return _run_bot()
    try:
        return _report(args)
    except BrokenPipeError:
        # The reader left early (`persona-bot stats | head`): what it read is what it
        # wanted. Point stdout at /dev/null so the flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _report(args: argparse.Namespace) -> int:
    """An operator command: stats, backup, doctor, health or example-env."""
    if args.command == "stats":
        from bot.ops.stats import stats_main

        return stats_main(args)
    if args.command == "backup":
        from bot.ops.backup import backup_main

        return backup_main(args)
    if args.command == "doctor":
        from bot.ops.doctor import doctor_main

        return doctor_main()
    if args.command == "health":
        from bot.ops.health import health_main

        return health_main()
    if args.command == "example-env":
        sys.stdout.write(EXAMPLE_ENV.read_text(encoding="utf-8"))
        return 0
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse allows no other


def _run_bot() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _setup_logging(settings)
    for line in environment_warnings():
        logging.getLogger("bot").warning("settings_name_unknown", extra=fields(detail=line))
    fatal: BaseException | None = None
    crashed = False
    try:
        trio.run(app.run, settings)
    except* _FATAL as group:
        fatal = group.exceptions[0]
    except* Exception:
        # Through logging, so the redacting formatter sees the traceback too.
        logging.getLogger("bot").exception("bot_crashed")
        crashed = True
    if fatal is not None:
        line = Redactor(settings.secrets())(_fatal_line(fatal, settings))
        print(f"cannot start: {line}", file=sys.stderr)
        return EXIT_CONFIG
    if crashed:
        return EXIT_CRASH
    return 0


def _setup_logging(settings: Settings) -> None:
    setup_logging(
        level=settings.log_level,
        json_lines=settings.log_format == "json",
        secrets=settings.secrets(),
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
