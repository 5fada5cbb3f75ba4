"""``python -m bot backup FILE``: a consistent copy of the database, safe while the bot runs.

The copy is :func:`store.maintenance.backup`'s: SQLite's online backup API, checked, then
renamed into place. Restoring is stopping the bot and putting the file back as
``DATABASE_PATH`` (README, "Backups and upgrades").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from bot.core.settings import SettingsError, load_settings
from store.errors import StoreError
from store.maintenance import backup

__all__ = ["add_backup_arguments", "backup_main"]

EXIT_BAD_INPUT: Final = 2  # as ``python -m bot`` for an operator's mistake


def add_backup_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``python -m bot backup``."""
    parser.add_argument("file", type=Path, metavar="FILE", help="where to write the copy")
    parser.add_argument("--database", type=Path, help="database file (default: DATABASE_PATH)")


def backup_main(args: argparse.Namespace) -> int:
    """Write the copy and print one line about it; an error is one line on stderr, exit 2."""
    try:
        source = args.database or load_settings(require_token=False).database_path
        result = backup(source, args.file)
    except (StoreError, SettingsError) as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"backup: {str(source)!r} → {str(result.path)!r}, {result.size_bytes} bytes, "
        f"schema {result.schema.version}, integrity ok"
    )
    return 0
