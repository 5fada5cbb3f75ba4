"""The store: migrations, the update inbox, conversations, events, locks."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from store import DatabaseLocked, EventRecord, StoreError, open_store

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_open_creates_the_folder_and_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "data" / "bot.db"
    open_store(path).close()
    store = open_store(path)  # second start: nothing to do, nothing fails
    applied = list(store.db.query("SELECT name FROM _sqlite_migrations"))
    assert [row["name"] for row in applied] == ["0001_initial", "0003_retention"]
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_the_inbox_keeps_unhandled_updates_and_the_offset_across_reopening(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "bot.db")
    assert store.updates.next_offset() is None
    store.updates.save_batch([(10, '{"update_id": 10}'), (11, '{"update_id": 11}')], next_offset=12)
    store.updates.save_batch([(11, '{"update_id": 11}')], next_offset=12)  # a repeat
    store.updates.mark_done(10)
    store.close()
    reopened = open_store(tmp_path / "bot.db")
    assert reopened.updates.next_offset() == 12
    assert reopened.updates.pending() == [(11, '{"update_id": 11}')]
    reopened.updates.save_batch([], next_offset=5)  # the offset never goes back
    assert reopened.updates.next_offset() == 12
    reopened.close()


def test_conversation_returns_the_last_turns_oldest_first(tmp_path: Path) -> None:
    store = open_store(tmp_path / "bot.db")
    for n in range(5):
        store.conversation.add(user_id=1, persona_key="a", role="user", text=f"u{n}", now=NOW)
    store.conversation.add(user_id=1, persona_key="b", role="user", text="other persona", now=NOW)
    turns = store.conversation.last(user_id=1, persona_key="a", limit=3)
    assert [turn.text for turn in turns] == ["u2", "u3", "u4"]
    store.close()


def test_events_are_rows_with_every_field(tmp_path: Path) -> None:
    store = open_store(tmp_path / "bot.db")
    store.events.add(
        EventRecord(
            ts=NOW,
            event="image_failed",
            user_id=1,
            chat_id=1,
            persona="a",
            job_id="j",
            reason="busy",
            detail="queue full",
            duration_ms=3,
        )
    )
    [row] = store.events.since()
    assert row["event"] == "image_failed"
    assert row["reason"] == "busy"
    assert row["ts"] == "2026-11-28T12:00:00.000+00:00"
    assert store.events.count("image_failed") == 1
    store.close()


def test_a_database_locked_by_another_process_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    open_store(path).close()
    holder = sqlite3.connect(path)
    holder.execute("PRAGMA journal_mode=DELETE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DatabaseLocked) as caught:
            open_store(path)
        assert "locked by another process" in str(caught.value)
        assert "\n" not in str(caught.value)
    finally:
        holder.rollback()
        holder.close()


def test_an_unusable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot create the database folder"):
        open_store(blocker / "bot.db")


def test_the_one_active_job_index_covers_exactly_the_active_states() -> None:
    from store.jobs import ACTIVE_SQL

    with open_store(":memory:") as store:
        [index] = store.db.query(
            "SELECT sql FROM sqlite_master WHERE name = 'jobs_one_active_per_message'"
        )
    assert index["sql"].endswith(f"WHERE state IN {ACTIVE_SQL}")
