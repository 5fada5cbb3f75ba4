"""``python -m bot backup FILE``: a consistent copy of the database, safe while the bot runs.

The copy is :func:`store.maintenance.backup`'s: SQLite's online backup API, checked, then
renamed into place. With ``--keep N``, FILE is a folder: the copy is named after the
database and the time (``bot-20261201-030000.db``, UTC), and only the newest N such copies
of this database stay; anything else in the folder is left alone. Restoring is stopping
the bot and putting a copy back as ``DATABASE_PATH`` (docs/operating.md, "Backups and
restore").
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Final

from bot.core.settings import SettingsError, load_settings
from store.clock import utc_now
from store.errors import StoreError
from store.maintenance import backup

__all__ = ["add_backup_arguments", "backup_main", "rotated_out"]

EXIT_BAD_INPUT: Final = 2  # as ``python -m bot`` for an operator's mistake


def add_backup_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``python -m bot backup``."""
    parser.add_argument(
        "file", type=Path, metavar="FILE", help="where to write the copy (a folder with --keep)"
    )
    parser.add_argument("--database", type=Path, help="database file (default: DATABASE_PATH)")
    parser.add_argument(
        "--keep",
        type=_positive,
        metavar="N",
        help="FILE is a folder: write a dated copy there and keep only the newest N",
    )


def _positive(text: str) -> int:
    """``--keep``'s value: a whole number of copies, at least one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of copies") from None
    if value < 1:
        raise argparse.ArgumentTypeError("keep at least 1 copy")
    return value


def rotated_out(names: Iterable[str], *, stem: str, keep: int) -> list[str]:
    """PURE: the dated copies of database *stem* beyond the newest *keep*, oldest first.

    Only names this command writes count (``<stem>-YYYYMMDD-HHMMSS.db``); the timestamp
    sorts as text, so name order is time order.
    """
    dated = re.compile(re.escape(stem) + r"-\d{8}-\d{6}\.db")
    copies = sorted(name for name in names if dated.fullmatch(name))
    return copies[: max(0, len(copies) - keep)]


def backup_main(args: argparse.Namespace, *, now: Callable[[], datetime] = utc_now) -> int:
    """Write the copy and print one line about it (and one per copy rotated out); an
    error is one line on stderr, exit 2."""
    keep: int | None = args.keep
    try:
        source: Path = args.database or load_settings(require_token=False).database_path
        target: Path = args.file
        if keep is not None:
            if not target.is_dir():
                raise StoreError(f"{str(target)!r} is not a folder; with --keep, FILE is one")
            target = target / f"{source.stem}-{now():%Y%m%d-%H%M%S}.db"
        result = backup(source, target)
    except (StoreError, SettingsError) as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"backup: {str(source)!r} → {str(result.path)!r}, {result.size_bytes} bytes, "
        f"schema {result.schema.version}, integrity ok"
    )
    if keep is not None:
        folder = args.file
        for name in rotated_out((p.name for p in folder.iterdir()), stem=source.stem, keep=keep):
            (folder / name).unlink(missing_ok=True)
            print(f"backup: removed {name!r} (keeping the newest {keep})")
    return 0
