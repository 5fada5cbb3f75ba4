"""``python -m bot`` as a command line: help, version, subcommands, usage errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot import __version__
from bot.__main__ import main
from store import open_store


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m bot")
    assert "doctor" in out
    assert "stats" in out
    assert "backup" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"python -m bot {__version__}\n"


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("doctor", "with what to change when it fails"),
        ("stats", "--since"),
        ("backup", "online backup API"),
    ],
)
def test_each_command_has_its_help(
    command: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m bot {command}")
    assert says in out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["doctor", "--now"], "unrecognized arguments: --now"),
    ],
)
def test_unknown_arguments_print_the_usage_and_exit_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("usage: python -m bot")
    assert says in captured.err


def test_the_installed_command_names_itself(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["/opt/persona-bot/bin/persona-bot", "--version"])
    assert main() == 0
    assert capsys.readouterr().out == f"persona-bot {__version__}\n"
    assert main(["stats", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: persona-bot stats")


def test_a_report_into_a_pipe_closed_early_ends_quietly(tmp_path: Path) -> None:
    """``persona-bot stats | head -1``: the reader leaves, no traceback, exit 0."""
    database = tmp_path / "bot.db"
    with open_store(database):
        pass
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bot", "stats", "--database", str(database)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr.decode() == ""
    assert done.returncode == 0


def test_example_env_prints_the_commented_settings_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``persona-bot example-env > .env``: pip users get the example without a clone."""
    assert main(["example-env"]) == 0
    printed = capsys.readouterr().out
    in_clone = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    assert printed == in_clone
    assert "TELEGRAM_BOT_TOKEN=" in printed
