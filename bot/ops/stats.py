"""How the bot is doing: ``python -m bot stats`` and the admins' ``/stats``.

Both read one window of the database and print :mod:`bot.ops.report`'s summary of the
pictures, then the per-server table (several ComfyUI servers) and the payments section,
when there is something to show. Everything is counted by SQLite (``store.stats``,
``store.server_stats``, ``store.payments``), so the time and memory of a report stay flat
as the tables grow. The command line opens the database read-only beside a running bot
and needs only ``DATABASE_PATH``; ``/stats`` reads a file database on a read-only
connection of its own in a worker thread, so the bot never waits for it. Every output
passes through the redactor.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

import sqlite_utils
import trio

from bot.core.settings import SettingsError, load_settings
from bot.core.texts import t
from bot.ops.report import (
    DEFAULT_SINCE,
    MAX_MESSAGE_CHARS,
    NO_PERSONA,
    PERCENTS,
    WINDOW_FORMS,
    StatsSummary,
    format_json,
    format_payments_text,
    format_text,
    parse_since,
    payments_json,
    summarize_stats,
)
from bot.ops.server_report import server_json, server_lines
from bot.telegram.redact import Redactor
from store.clock import utc_now
from store.errors import StoreError
from store.payments import RevenueSummary, revenue_summary
from store.server_stats import ServerCounts, server_counts
from store.stats import database_file, image_stats, open_readonly

if TYPE_CHECKING:
    from bot.core.commands import AdminCmd
    from bot.core.deps import Deps

__all__ = [
    "FullReport",
    "add_stats_arguments",
    "handle_stats",
    "read_report",
    "read_report_sync",
    "stats_main",
]

EXIT_BAD_INPUT: Final = 2  # as ``python -m bot`` for an operator's mistake


@dataclass(frozen=True, slots=True)
class FullReport:
    """One window's numbers: the pictures, per server, and the payments (None: none)."""

    summary: StatsSummary
    servers: list[ServerCounts]
    revenue: RevenueSummary | None


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
        report = _read_file(path, since=since, until=until)
    except (ValueError, StoreError, SettingsError) as exc:
        print(redact(f"stats: {exc}"), file=sys.stderr)
        return EXIT_BAD_INPUT
    print(redact(_as_json(report) if args.json else "\n\n".join(_as_text(report, "en"))))
    return 0


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
    report = await read_report(deps.store.db, since=since, until=until)
    redact = Redactor(deps.settings.secrets())
    sections = [redact(section) for section in _as_text(report, lang)]
    text = "\n\n".join(sections)
    # Monospace, so the tables stay aligned in Telegram; escaped entities count as one
    # character each against the limit, so the plain length is what counts.
    parts = [text] if len(text) <= MAX_MESSAGE_CHARS else sections
    for part in parts:  # a long per-persona table: each part a message of its own
        await deps.api.send_message(
            cmd.ctx.chat_id, f"<pre>{html.escape(part)}</pre>", parse_mode="HTML"
        )


def read_report_sync(db: sqlite_utils.Database, *, since: datetime, until: datetime) -> FullReport:
    """The window's report, counted by SQLite on *db*.

    Raises:
        StoreError: *db* is not a database of this bot.
    """
    stats = image_stats(db, since=since, until=until, percents=PERCENTS, unnamed=NO_PERSONA)
    return FullReport(
        summary=summarize_stats(stats, since=since, until=until),
        servers=server_counts(db, since=since, until=until),
        revenue=revenue_summary(db, since=since, until=until),
    )


async def read_report(db: sqlite_utils.Database, *, since: datetime, until: datetime) -> FullReport:
    """The window's report, read without blocking the event loop.

    A file database is read on a read-only connection of its own in a worker thread
    (sqlite3 connections stay on the thread that opened them). A cancel waits for the
    thread, which is bounded: the queries walk indexes and take well under a second
    over a million events (benchmarks/stats_report.py).
    """
    path = database_file(db)
    if path is None:
        return read_report_sync(db, since=since, until=until)
    return await trio.to_thread.run_sync(partial(_read_file, path, since=since, until=until))


def _read_file(path: Path, *, since: datetime, until: datetime) -> FullReport:
    db = open_readonly(path)
    try:
        return read_report_sync(db, since=since, until=until)
    finally:
        db.close()


def _as_text(report: FullReport, lang: str) -> list[str]:
    """The pictures (with the per-server table when it fits), then the payments."""
    sections = [_with_servers_text(format_text(report.summary, lang), report.servers, lang)]
    if report.revenue is not None:
        sections.append(format_payments_text(report.revenue, lang))
    return sections


def _as_json(report: FullReport) -> str:
    document = json.loads(format_json(report.summary))
    if server_lines(report.servers):
        document["servers"] = server_json(report.servers)
    if report.revenue is not None:
        document["payments"] = payments_json(report.revenue)
    return json.dumps(document, ensure_ascii=False, indent=2)


def _with_servers_text(report: str, servers: list[ServerCounts], lang: str = "en") -> str:
    """The report, then a table per ComfyUI server (left out if it would not fit)."""
    lines = server_lines(servers, lang)
    if not lines:
        return report
    section = "\n".join(["", *lines])
    return report + "\n" + section if len(report) + len(section) < MAX_MESSAGE_CHARS else report
