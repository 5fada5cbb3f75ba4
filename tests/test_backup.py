"""``python -m bot backup``: a consistent copy while another process writes, and its errors."""

from __future__ import annotations

import argparse
import os
import sqlite3
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pytest

from bot.__main__ import main
from bot.ops.backup import backup_main, rotated_out
from bot.ops.doctor import database_checks
from store import open_store
from store.maintenance import backup, schema_status
from store.schema import migration_names

pytestmark = pytest.mark.slow

START_BALANCE: Final = 1_000_000
COPIES: Final = 5
LATEST: Final = migration_names()[-1]

# Another process, as the bot would: each transaction takes one picture from user 1's
# balance and writes one event for it. A copy taken at any moment keeps
# balance + events == START_BALANCE; a torn copy would not.
WRITER: Final = """
import sys
from datetime import UTC, datetime
from store import open_store

store = open_store(sys.argv[1])
now = datetime.now(UTC)
store.users.ensure(user_id=1, first_name="w", language="ru", free_images=int(sys.argv[2]), now=now)
print("ready", flush=True)
n = 0
while True:
    with store.db.atomic():
        store.db.execute("UPDATE users SET image_balance = image_balance - 1 WHERE user_id = 1")
        store.db.execute(
            "INSERT INTO events_analytics (ts, event, user_id) VALUES (?, 'moved', 1)", [str(n)]
        )
    n += 1
"""


def _moves_and_balance(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        (check,) = conn.execute("PRAGMA integrity_check").fetchone()
        assert check == "ok"
        (balance,) = conn.execute("SELECT image_balance FROM users WHERE user_id = 1").fetchone()
        (moves,) = conn.execute("SELECT count(*) FROM events_analytics").fetchone()
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        assert mode == "delete"  # one self-contained file
    finally:
        conn.close()
    return moves, balance


def test_copies_taken_while_another_process_writes_are_each_consistent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "data" / "bot.db"
    open_store(database).close()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(database), str(START_BALANCE)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "ready\n"
        seen: list[int] = []
        for number in range(COPIES):
            copy = tmp_path / "backups" / f"bot-{number}.db"
            copy.parent.mkdir(exist_ok=True)
            assert main(["backup", str(copy), "--database", str(database)]) == 0
            moves, balance = _moves_and_balance(copy)
            assert moves + balance == START_BALANCE
            seen.append(moves)
        assert writer.poll() is None  # still writing all along
    finally:
        writer.kill()
        writer.wait()
    assert seen == sorted(seen)
    assert seen[-1] > seen[0]  # the writes went on between the copies
    out = capsys.readouterr().out.splitlines()
    assert len(out) == COPIES
    assert f"schema {LATEST}, integrity ok" in out[0]


def test_backup_replaces_the_target_and_leaves_no_partial_file(tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    open_store(database).close()
    target = tmp_path / "copy.db"
    target.write_bytes(b"yesterday's copy")
    result = backup(database, target)
    assert result.size_bytes == target.stat().st_size
    assert result.schema.pending == ()
    assert result.schema.version == LATEST
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("copy")) == ["copy.db"]
    with open_store(target) as restored:  # a copy is a database the bot opens as it is
        assert schema_status(restored.db).pending == ()


def test_the_database_and_its_copy_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """They hold users' words and payments: 0600 whatever the umask."""
    old = os.umask(0o022)
    try:
        database = tmp_path / "bot.db"
        with open_store(database) as store:
            store.db.execute("CREATE TABLE probe (x)")  # the WAL file exists now too
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("bot.db*")}
        assert sorted(modes) == ["bot.db", "bot.db-shm", "bot.db-wal"]
        assert set(modes.values()) == {0o600}, modes
        copy = backup(database, tmp_path / "copy.db").path
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        ("missing", "does not exist; check DATABASE_PATH"),
        ("itself", "is the database itself; name a new file"),
        ("no folder", "cannot write the backup"),
    ],
)
def test_operator_mistakes_are_one_line_and_exit_2(
    setup: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "bot.db"
    target = tmp_path / "copy.db"
    if setup != "missing":
        open_store(database).close()
    if setup == "itself":
        target = database
    if setup == "no folder":
        target = tmp_path / "absent" / "copy.db"
    assert main(["backup", str(target), "--database", str(database)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("backup: ")
    assert says in err
    assert err.count("\n") == 1
    assert not (tmp_path / "bot.db").exists() or setup != "missing"  # never created


def test_rotation_removes_only_the_oldest_dated_copies_of_this_database() -> None:
    names = [
        "bot-20261201-030000.db",
        "bot-20261203-030000.db",
        "bot-20261202-030000.db",
        "bot-20261204-030000.db",
        "bot-notes.txt",  # not a copy
        "other-20261201-030000.db",  # another database's copy
        "bot-20261205-030000.db.partial",  # a copy being written
    ]
    assert rotated_out(names, stem="bot", keep=2) == [
        "bot-20261201-030000.db",
        "bot-20261202-030000.db",
    ]
    assert rotated_out(names, stem="bot", keep=10) == []


def test_kept_copies_rotate_and_the_newest_restores_and_passes_doctor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``backup --keep 2 DIR`` each day: two dated copies stay; one put back as the
    database opens as it is, with nothing pending, and doctor's database checks pass."""
    database = tmp_path / "bot.db"
    with open_store(database) as store, store.db.atomic():
        store.users.ensure_row(7, now=datetime(2026, 12, 1, tzinfo=UTC), free_images=3)
    folder = tmp_path / "backups"
    folder.mkdir()
    for day in (1, 2, 3):
        args = argparse.Namespace(file=folder, database=database, keep=2)
        at = datetime(2026, 12, day, 3, 0, 0, tzinfo=UTC)
        assert backup_main(args, now=lambda at=at: at) == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "bot-20261202-030000.db",
        "bot-20261203-030000.db",
    ]
    out = capsys.readouterr().out
    assert "removed 'bot-20261201-030000.db' (keeping the newest 2)" in out
    restored = tmp_path / "restored" / "bot.db"
    restored.parent.mkdir()
    restored.write_bytes((folder / "bot-20261203-030000.db").read_bytes())
    checks = {c.name: c for c in database_checks(restored)}
    assert checks["database"].ok, checks["database"].line()
    assert checks["ledger"].ok, checks["ledger"].line()
    with open_store(restored) as store:
        assert store.users.get(7) is not None


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--keep", "0", "backups"], "keep at least 1 copy"),
        (["--keep", "many", "backups"], "'many' is not a number of copies"),
        (["--keep", "2", "not-a-folder.db"], "is not a folder; with --keep, FILE is one"),
    ],
)
def test_keep_mistakes_are_one_line_and_exit_2(
    argv: list[str],
    says: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database = tmp_path / "bot.db"
    open_store(database).close()
    (tmp_path / "backups").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["backup", "--database", str(database), *argv]) == 2
    err = capsys.readouterr().err
    assert says in err
    assert not list((tmp_path / "backups").iterdir())  # nothing written, nothing removed
