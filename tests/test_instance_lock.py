"""Start-up refusals, in-process: a second bot on one database, a damaged database file.

Both end ``python -m bot`` with one line on stderr and exit code 2, before any network
call; ``doctor`` beside a running bot says a bot holds the database instead of failing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.core.settings import load_settings
from bot.ops.doctor import run_checks
from store import InstanceRunning, StoreError, open_store
from store.instance_lock import hold_instance_lock, lock_holder, lock_path
from tests.fakes.telegram import TEST_TOKEN

GARBAGE = b"this is not an sqlite database, just bytes a broken disk left\n" * 100


def test_a_second_holder_is_refused_with_one_line_naming_the_database(tmp_path: Path) -> None:
    database = tmp_path / "data" / "bot.db"
    with hold_instance_lock(database):
        assert lock_holder(database) == os.getpid()
        with pytest.raises(InstanceRunning) as refused, hold_instance_lock(database):
            pytest.fail("two holders of one database")
        assert str(refused.value) == (
            f"database {str(database)!r} is in use by another running bot "
            f"(pid {os.getpid()} holds {str(lock_path(database))!r}); "
            "stop it first, or give this one its own DATABASE_PATH"
        )
    assert lock_holder(database) is None  # released with the block
    with hold_instance_lock(database):  # the file left behind is no obstacle
        assert lock_holder(database) == os.getpid()


def test_asking_who_holds_the_lock_creates_nothing(tmp_path: Path) -> None:
    assert lock_holder(tmp_path / "bot.db") is None
    assert list(tmp_path.iterdir()) == []


def test_an_in_memory_database_needs_no_lock_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with hold_instance_lock(":memory:"), hold_instance_lock(":memory:"):
        assert list(tmp_path.iterdir()) == []  # and two holders are no conflict


def test_a_lock_file_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    with (
        pytest.raises(StoreError, match="cannot create the lock file"),
        hold_instance_lock(blocker / "bot.db"),
    ):
        pytest.fail("a lock without a lock file")


@pytest.fixture
def bot_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``python -m bot`` settings pointing at tmp_path/data/bot.db, and a Telegram
    nobody can reach: a refusal must come before any network call."""
    monkeypatch.chdir(tmp_path)  # no .env here
    database = tmp_path / "data" / "bot.db"
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("DATABASE_PATH", str(database))
    monkeypatch.setenv("TELEGRAM_API_BASE", "http://127.0.0.1:9")
    monkeypatch.delenv("COMFYUI_BASE_URL", raising=False)
    return database


def test_main_refuses_a_second_bot_on_the_same_database_with_exit_2(
    bot_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with hold_instance_lock(bot_env):
        assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"cannot start: database {str(bot_env)!r} is in use by another running bot "
        f"(pid {os.getpid()} holds {str(lock_path(bot_env))!r}); "
        "stop it first, or give this one its own DATABASE_PATH"
    ]
    assert "Traceback" not in captured.out
    assert not bot_env.exists()  # the refusal came before the database was touched


def test_main_refuses_a_damaged_database_file_with_one_line_and_exit_2(
    bot_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bot_env.parent.mkdir(parents=True)
    bot_env.write_bytes(GARBAGE)
    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"cannot start: database {str(bot_env)!r} is damaged or not an SQLite file "
        "(file is not a database); restore it from a backup, or move it away to start "
        "with an empty one"
    ]
    assert "Traceback" not in captured.out
    assert bot_env.read_bytes() == GARBAGE  # left as it was, for the operator


def test_open_store_names_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    path.write_bytes(GARBAGE)
    with pytest.raises(StoreError, match="is damaged or not an SQLite file"):
        open_store(path)


async def test_doctor_beside_a_running_bot_reports_the_holder_and_passes_the_database(
    tmp_path: Path, autojump_clock: object
) -> None:
    database = tmp_path / "data" / "bot.db"
    settings = load_settings(
        env_file=None,
        telegram_bot_token=TEST_TOKEN,
        telegram_api_base="http://127.0.0.1:9",
        database_path=database,
    )
    with hold_instance_lock(database):
        checks = {check.name: check for check in await run_checks(settings)}
    assert checks["database"].ok
    assert checks["instance"].line() == f"✓ instance: a bot is running on it (pid {os.getpid()})"
