"""How the picture feature is doing: ``python -m bot stats`` and the admins' ``/stats``.

Both count the picture events of a window in SQL and print :mod:`bot.ops.report`'s
summary. The command line opens the database read-only beside a running bot and needs
only ``DATABASE_PATH``. ``/stats`` must not stall the chat: it opens its own read-only
connection in a worker thread, so the event loop goes on serving everyone while SQLite
counts (an in-memory database, which only tests use, is read inline on the bot's
connection).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

import sqlite_utils
import trio

from bot.ops.report import (
    DEFAULT_SINCE,
    NO_PERSONA,
    PERCENTS,
    WINDOW_FORMS,
    StatsSummary,
    format_json,
    format_text,
    parse_since,
    summarize_stats,
)
from bot.settings import SettingsError, load_settings
from bot.texts import t
from store.clock import utc_now
from store.errors import StoreError
from store.stats import database_file, image_stats, open_readonly

if TYPE_CHECKING:
    from bot.deps import Deps
    from bot.routing import AdminCmd

__all__ = ["add_stats_arguments", "handle_stats", "read_summary", "read_summary_sync", "stats_main"]

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
    try:
        since = parse_since(args.since, now=until)
        path = args.database or load_settings(require_token=False).database_path
        summary = _read_file(path, since=since, until=until)
    except (ValueError, StoreError, SettingsError) as exc:
        print(f"stats: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(format_json(summary) if args.json else format_text(summary))
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
    summary = await read_summary(deps.store.db, since=since, until=until)
    await deps.api.send_message(cmd.ctx.chat_id, format_text(summary, lang))


def read_summary_sync(
    db: sqlite_utils.Database, *, since: datetime, until: datetime
) -> StatsSummary:
    """The report of the window, counted by SQLite on *db*.

    Raises:
        StoreError: *db* is not a database of this bot.
    """
    stats = image_stats(db, since=since, until=until, percents=PERCENTS, unnamed=NO_PERSONA)
    return summarize_stats(stats, since=since, until=until)


async def read_summary(
    db: sqlite_utils.Database, *, since: datetime, until: datetime
) -> StatsSummary:
    """The report of the window, read without blocking the event loop.

    A file database is read on a read-only connection of its own in a worker thread
    (sqlite3 connections stay on the thread that opened them). A cancel waits for the
    thread, which is bounded: the queries walk indexes and take well under a second
    over a million events (benchmarks/stats_report.py).
    """
    path = database_file(db)
    if path is None:
        return read_summary_sync(db, since=since, until=until)
    return await trio.to_thread.run_sync(partial(_read_file, path, since=since, until=until))


def _read_file(path: Path, *, since: datetime, until: datetime) -> StatsSummary:
    db = open_readonly(path)
    try:
        return read_summary_sync(db, since=since, until=until)
    finally:
        db.close()
