"""How the picture feature is doing: ``python -m bot stats`` and the admins' ``/stats``.

Both read the picture events of a window and print :mod:`bot.ops.report`'s summary. The
command line opens the database read-only beside a running bot and needs only
``DATABASE_PATH``; ``/stats`` uses the bot's own connection.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bot.ops.report import (
    DEFAULT_SINCE,
    MAX_MESSAGE_CHARS,
    WINDOW_FORMS,
    format_json,
    format_payments_text,
    format_text,
    parse_since,
    payments_json,
    summarize,
)
from bot.ops.server_report import server_json, server_lines
from bot.settings import SettingsError, load_settings
from bot.telegram.redact import Redactor
from bot.texts import t
from store.clock import utc_now
from store.errors import StoreError
from store.payments import revenue_summary
from store.server_stats import ServerCounts, server_counts
from store.stats import image_events, open_readonly

if TYPE_CHECKING:
    from bot.deps import Deps
    from bot.routing import AdminCmd

__all__ = ["add_stats_arguments", "handle_stats", "stats_main"]

EXIT_BAD_INPUT: Final = 2  # as ``python -m bot`` for an operator's mistake


def add_stats_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m bot stats``."""
    parser.add_argument("--since", default=DEFAULT_SINCE, help=f"window start; {WINDOW_FORMS}")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--database", type=Path, help="database file (default: DATABASE_PATH)")


def stats_main(args: argparse.Namespace, *, now: Callable[[], datetime] = utc_now) -> int:
    """Print the report for *args* (see :func:`add_stats_arguments`); the exit code.

    Reads the database without creating or changing it. An operator's mistake (a bad
    window, no database file, a file that is not the bot's database) is one line on
    stderr and exit code 2.
    """
    until = now()
    redact = Redactor()  # the secrets are added once the settings are read
    try:
        since = parse_since(args.since, now=until)
        path = args.database
        if path is None:
            settings = load_settings(require_token=False)
            redact = Redactor(settings.secrets())
            path = settings.database_path
        db = open_readonly(path)
        try:
            rows = image_events(db, since=since, until=until)
            revenue = revenue_summary(db, since=since, until=until)
            servers = server_counts(db, since=since, until=until)
        finally:
            db.close()
    except (ValueError, StoreError, SettingsError) as exc:
        print(redact(f"stats: {exc}"), file=sys.stderr)
        return EXIT_BAD_INPUT
    summary = summarize(rows, since=since, until=until)
    if args.json:
        document = json.loads(_with_servers_json(format_json(summary), servers))
        if revenue is not None:
            document["payments"] = payments_json(revenue)
        output = json.dumps(document, ensure_ascii=False, indent=2)
    else:
        sections = [_with_servers_text(format_text(summary), servers)]
        if revenue is not None:
            sections.append(format_payments_text(revenue))
        output = "\n\n".join(sections)
    print(redact(output))
    return 0


def _with_servers_text(report: str, servers: list[ServerCounts], lang: str = "en") -> str:
    """The report, then a table per ComfyUI server (left out if it would not fit)."""
    lines = server_lines(servers, lang)
    if not lines:
        return report
    section = "\n".join(["", *lines])
    return report + "\n" + section if len(report) + len(section) < MAX_MESSAGE_CHARS else report


def _with_servers_json(report: str, servers: list[ServerCounts]) -> str:
    if not server_lines(servers):
        return report
    document = json.loads(report)
    document["servers"] = server_json(servers)
    return json.dumps(document, ensure_ascii=False, indent=2)


async def handle_stats(deps: Deps, cmd: AdminCmd) -> None:
    """``/stats [window]`` for admins: the report for the last 7 days, or for *window*."""
    lang = cmd.ctx.lang
    until = deps.now()
    try:
        (window,) = cmd.args or (DEFAULT_SINCE,)  # more than one argument: ValueError too
        since = parse_since(window, now=until)
    except ValueError:
        await deps.api.send_message(cmd.ctx.chat_id, t("stats_usage", lang))
        return
    rows = image_events(deps.store.db, since=since, until=until)
    servers = server_counts(deps.store.db, since=since, until=until)
    summary = summarize(rows, since=since, until=until)
    redact = Redactor(deps.settings.secrets())
    report = redact(_with_servers_text(format_text(summary, lang), servers, lang))
    revenue = revenue_summary(deps.store.db, since=since, until=until)
    if revenue is None:
        await deps.api.send_message(cmd.ctx.chat_id, report)
        return
    payments = format_payments_text(revenue, lang)
    if len(report) + 2 + len(payments) <= MAX_MESSAGE_CHARS:
        await deps.api.send_message(cmd.ctx.chat_id, f"{report}\n\n{payments}")
    else:  # a long per-persona table: the payments follow in a message of their own
        await deps.api.send_message(cmd.ctx.chat_id, report)
        await deps.api.send_message(cmd.ctx.chat_id, payments)
