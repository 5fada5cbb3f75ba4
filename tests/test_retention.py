"""Retention: the pruning rules, the background task, and /forget end to end."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from bot.core.commands import ForgetCmd, route
from bot.core.logs import plain_fields
from bot.core.settings import SettingsError, load_settings
from bot.core.texts import t
from bot.ops.retention import BATCH_PAUSE_S, BATCH_ROWS, PRUNE_EVERY_S, prune_once, run_retention
from bot.telegram.types import Update
from store import EventRecord, JobState, NewJob, Store, open_store, to_iso
from store.retention import (
    FINAL_SQL,
    RetentionPolicy,
    Table,
    forget_user,
    prune_batch,
    prune_rules,
)
from tests.fakes.comfy import FakeComfy
from tests.fakes.telegram import DEFAULT_USER_ID, TEST_TOKEN, FakeTelegram
from tests.harness import Clock, start_bot
from tests.rows import balance, deliver

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
POLICY = RetentionPolicy(turns_days=30, sent_messages_days=60, jobs_days=90, events_days=400)
USER = DEFAULT_USER_ID
OTHER = 5_000_000_002


@pytest.fixture
def store() -> Iterator[Store]:
    store = open_store(":memory:")
    yield store
    store.close()


# prune_rules: pure


def test_each_table_gets_its_own_cutoff() -> None:
    rules = {rule.table: rule for rule in prune_rules(POLICY, NOW)}
    assert list(rules) == list(Table)
    assert rules[Table.TURNS].cutoff == to_iso(NOW - timedelta(days=30))
    assert rules[Table.SENT_MESSAGES].cutoff == to_iso(NOW - timedelta(days=60))
    assert rules[Table.JOBS].cutoff == to_iso(NOW - timedelta(days=90))
    assert rules[Table.EVENTS].cutoff == to_iso(NOW - timedelta(days=400))
    assert rules[Table.PARKED].cutoff == rules[Table.TURNS].cutoff  # both hold users' words
    assert rules[Table.PARKED].age_column == "parked_at"
    assert rules[Table.EVENTS].age_column == "ts"
    assert rules[Table.JOBS].age_column == "finished_at"


def test_only_final_jobs_of_an_earlier_quota_day_are_pruned() -> None:
    (jobs,) = [rule for rule in prune_rules(POLICY, NOW) if rule.table is Table.JOBS]
    assert jobs.where == f"+state IN {FINAL_SQL} AND quota_day < ?"
    assert FINAL_SQL == "('delivered', 'failed')"
    assert jobs.params == ("2026-11-28",)


def test_zero_days_keeps_a_table_forever() -> None:
    policy = RetentionPolicy(turns_days=0, sent_messages_days=0, jobs_days=7, events_days=0)
    assert [rule.table for rule in prune_rules(policy, NOW)] == [Table.JOBS]


def test_the_default_settings_keep_events_longer_than_texts() -> None:
    policy = load_settings(env_file=None, require_token=False).retention
    assert policy == RetentionPolicy(
        turns_days=90, sent_messages_days=90, jobs_days=90, events_days=400
    )
    assert policy.events_days > max(policy.turns_days, policy.sent_messages_days)


def test_a_negative_retention_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="TURNS_RETENTION_DAYS") as info:
        load_settings(env_file=None, require_token=False, turns_retention_days=-1)
    assert "\n" not in str(info.value)


# prune_batch against SQLite


def add_turn(store: Store, user_id: int, when: datetime, text: str = "hi") -> None:
    store.conversation.add(user_id=user_id, persona_key="alice", role="user", text=text, now=when)


def add_sent(store: Store, user_id: int, message_id: int, when: datetime) -> None:
    store.sent.add(
        chat_id=user_id,
        message_id=message_id,
        user_id=user_id,
        persona_key="alice",
        text=f"reply {message_id}",
        now=when,
    )


def add_job(store: Store, user_id: int, message_id: int, when: datetime) -> str:
    """A job reserved at *when* (the user gets a picture to pay with)."""
    job_id = f"job-{user_id}-{message_id}"
    store.quota.grant(user_id, 1, now=when, free_images=0, ref=f"grant-{job_id}")
    new = NewJob(
        job_id=job_id,
        prompt_id=f"prompt-{job_id}",
        user_id=user_id,
        chat_id=user_id,
        message_id=message_id,
        persona_key="alice",
        language="ru",
    )
    store.quota.reserve(new, now=when, daily_limit=0)
    store.jobs.advance(job_id, to=JobState.RUNNING, now=when, graph='{"scene": "secret"}')
    return job_id


def count(store: Store, table: str) -> int:
    return int(next(iter(store.db.query(f"SELECT count(*) AS n FROM {table}")))["n"])


def test_old_turns_go_in_batches_oldest_first_and_new_ones_stay(store: Store) -> None:
    for i in range(7):
        add_turn(store, USER, NOW - timedelta(days=40, minutes=i))
    add_turn(store, USER, NOW - timedelta(days=29), text="recent")
    (rule,) = [r for r in prune_rules(POLICY, NOW) if r.table is Table.TURNS]
    assert prune_batch(store.db, rule, 5) == 5
    assert prune_batch(store.db, rule, 5) == 2
    assert prune_batch(store.db, rule, 5) == 0
    assert [
        turn.text for turn in store.conversation.last(user_id=USER, persona_key="alice", limit=9)
    ] == ["recent"]


def park(store: Store, update_id: int, sender: int, when: datetime, kind: str = "message") -> None:
    raw = json.dumps({"update_id": update_id, kind: {"from": {"id": sender}, "text": "words"}})
    store.updates.save_batch([(update_id, raw)], next_offset=update_id + 1)
    store.updates.park(update_id, "handler_error", now=when)


def test_old_parked_updates_go_and_new_ones_stay(store: Store) -> None:
    park(store, 1, USER, NOW - timedelta(days=31))
    park(store, 2, USER, NOW - timedelta(days=29))
    (rule,) = [r for r in prune_rules(POLICY, NOW) if r.table is Table.PARKED]
    assert prune_batch(store.db, rule, 100) == 1
    assert store.updates.parked() == [(2, "handler_error")]


def test_jobs_prune_only_final_rows_and_never_today(store: Store) -> None:
    old = NOW - timedelta(days=100)
    delivered = add_job(store, USER, 1, old)
    deliver(store, delivered, now=old)
    failed = add_job(store, USER, 2, old)
    store.quota.release(failed, reason="generation_error", detail="x", now=old)
    active = add_job(store, USER, 3, old)  # a job still active: a reservation, kept
    rules = prune_rules(POLICY, NOW)
    (rule,) = [r for r in rules if r.table is Table.JOBS]
    assert prune_batch(store.db, rule, 100) == 2
    assert [row["job_id"] for row in store.db.query("SELECT job_id FROM jobs")] == [active]
    # A retention shorter than a day still leaves today's finished jobs to the quota.
    today = add_job(store, OTHER, 4, NOW - timedelta(hours=1))
    deliver(store, today, now=NOW - timedelta(minutes=30), file_id="g")
    tiny = RetentionPolicy(turns_days=0, sent_messages_days=0, jobs_days=1, events_days=0)
    (rule,) = prune_rules(tiny, NOW + timedelta(hours=11))
    assert prune_batch(store.db, rule, 100) == 0
    (rule,) = prune_rules(tiny, NOW + timedelta(days=2))
    assert prune_batch(store.db, rule, 100) == 1


def test_every_prune_uses_an_index(store: Store) -> None:
    for rule in prune_rules(POLICY, NOW):
        plan = " ".join(
            row["detail"]
            for row in store.db.query(
                f"EXPLAIN QUERY PLAN {rule.select_sql()}", [rule.cutoff, *rule.params, 10]
            )
        )
        assert "INDEX" in plan, (rule.table, plan)
        assert "TEMP B-TREE" not in plan, (rule.table, plan)


# prune_once and run_retention under the autojump clock


def fill_old(store: Store, rows: int, when: datetime) -> None:
    for i in range(rows):
        store.events.add(EventRecord(ts=when + timedelta(seconds=i), event="image_requested"))


async def test_prune_once_yields_between_batches_and_counts(
    store: Store, autojump_clock: object
) -> None:
    fill_old(store, 2 * BATCH_ROWS + 3, NOW - timedelta(days=500))
    store.events.add(EventRecord(ts=NOW - timedelta(days=1), event="image_requested"))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.001)
            ticks += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        pruned = await prune_once(store, POLICY, NOW)
        nursery.cancel_scope.cancel()
    assert pruned[Table.EVENTS] == 2 * BATCH_ROWS + 3
    assert count(store, "events_analytics") == 1
    assert ticks >= 3  # the other task ran between the three batches


async def test_a_cancel_between_batches_keeps_what_was_committed(
    store: Store, autojump_clock: object
) -> None:
    fill_old(store, 3 * BATCH_ROWS, NOW - timedelta(days=500))
    # One pause after each of the three tables before, then two batches of events: the
    # cancel lands in the pause after the second.
    with trio.move_on_after(5 * BATCH_PAUSE_S - BATCH_PAUSE_S / 2):
        await prune_once(store, POLICY, NOW)
    assert count(store, "events_analytics") == BATCH_ROWS
    assert not store.db.conn.in_transaction
    await prune_once(store, POLICY, NOW)
    assert count(store, "events_analytics") == 0


async def test_a_locked_database_ends_the_cycle_with_one_warning(
    tmp_path: Path, autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bot.db"
    with open_store(path) as store:
        fill_old(store, 10, NOW - timedelta(days=500))
        store.db.execute("PRAGMA busy_timeout = 0")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with caplog.at_level(logging.WARNING, logger="bot.ops.retention"):
            assert await prune_once(store, POLICY, NOW) == {}
        other.execute("ROLLBACK")
        other.close()
        (record,) = caplog.records
        assert record.getMessage() == "retention_stopped_until_next_cycle"
        assert plain_fields(record).startswith(" table=turns error=")
        assert "locked" in plain_fields(record)
        assert (await prune_once(store, POLICY, NOW))[Table.EVENTS] == 10


async def test_the_task_prunes_at_start_and_every_hour(
    store: Store, autojump_clock: object
) -> None:
    clock = Clock(NOW)
    add_turn(store, USER, NOW - timedelta(days=31))
    add_turn(store, USER, NOW - timedelta(days=29, minutes=30))
    async with trio.open_nursery() as nursery:
        await nursery.start(run_retention, store, POLICY, clock)
        await trio.sleep(1)
        assert count(store, "turns") == 1
        clock.advance(days=1)
        await trio.sleep(PRUNE_EVERY_S - 2)
        assert count(store, "turns") == 1  # not yet: the next cycle is an hour after
        await trio.sleep(2)
        assert count(store, "turns") == 0
        nursery.cancel_scope.cancel()


# forget_user and /forget


def test_forget_deletes_texts_but_not_money_or_other_users(store: Store) -> None:
    add_turn(store, USER, NOW)
    add_turn(store, OTHER, NOW)
    add_sent(store, USER, 10, NOW)
    add_sent(store, USER, 11, NOW)
    add_sent(store, OTHER, 12, NOW)
    done = add_job(store, USER, 10, NOW)
    deliver(store, done, now=NOW)
    drawing = add_job(store, USER, 11, NOW)  # being drawn: the worker still needs its text
    store.quota.grant(USER, 5, now=NOW, free_images=0, ref="grant-5")
    park(store, 1, USER, NOW)
    park(store, 2, USER, NOW, kind="callback_query")
    park(store, 3, OTHER, NOW)
    before = balance(store, USER)
    gone = forget_user(store.db, USER, now=NOW)
    assert (gone.turns, gone.texts, gone.scenes, gone.parked) == (1, 1, 1, 2)
    assert store.updates.parked() == [(3, "handler_error")]
    assert store.conversation.last(user_id=USER, persona_key="alice", limit=5) == []
    assert len(store.conversation.last(user_id=OTHER, persona_key="alice", limit=5)) == 1
    assert store.sent.get(chat_id=USER, message_id=10) is None
    assert store.sent.get(chat_id=USER, message_id=11) is not None
    assert store.sent.get(chat_id=OTHER, message_id=12) is not None
    finished, active = store.jobs.get(done), store.jobs.get(drawing)
    assert finished is not None
    assert (finished.state, finished.graph) == ("delivered", None)
    assert active is not None
    assert active.graph is not None
    assert balance(store, USER) == before


def test_forget_routes_from_the_command() -> None:
    raw = {
        "update_id": 1,
        "message": {
            "message_id": 5,
            "date": 0,
            "chat": {"id": USER, "type": "private"},
            "from": {"id": USER, "is_bot": False, "first_name": "A"},
            "text": "/forget",
        },
    }
    command = route(Update.model_validate(raw))
    assert isinstance(command, ForgetCmd)
    assert command.ctx.user_id == USER


async def test_forget_end_to_end_erases_and_confirms_and_old_buttons_go_stale(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    bot = await start_bot(nursery, tmp_path, fake_telegram, comfy=fake_comfy, free_images=2)
    fake_telegram.user_says("привет")
    await fake_telegram.wait_for(lambda: len(fake_telegram.texts_to(USER)) == 1)
    reply = fake_telegram.sent[-1]
    fake_telegram.user_says("/help", language_code="en")
    fake_telegram.user_says("/forget", language_code="en")
    await fake_telegram.wait_for(lambda: len(fake_telegram.texts_to(USER)) == 3)
    help_text, confirmation = fake_telegram.texts_to(USER)[1:]
    assert "/forget" in help_text
    assert confirmation == t("forget_done", "en")
    with bot.store() as store:
        assert count(store, "turns") == 0
        assert store.sent.get(chat_id=USER, message_id=reply.message_id) is None
        assert balance(store, USER) == 2
    query = fake_telegram.user_presses(reply.message_id, "look")
    await fake_telegram.wait_for(lambda: query in fake_telegram.callback_answers)
    assert fake_telegram.callback_answers[query].text == t("toast_stale", "ru")
    assert fake_comfy.submitted == []
    await bot.stop()


def test_help_lists_forget_in_both_languages() -> None:
    assert "/forget" in t("help", "ru")
    assert "/forget" in t("help", "en")
    assert t("forget_done", "ru") != t("forget_done", "en")


def test_each_setting_reaches_its_table_in_the_policy() -> None:
    settings = load_settings(
        env_file=None,
        telegram_bot_token=TEST_TOKEN,
        turns_retention_days=1,
        sent_messages_retention_days=2,
        jobs_retention_days=3,
        events_retention_days=0,
    )
    assert settings.retention == RetentionPolicy(
        turns_days=1, sent_messages_days=2, jobs_days=3, events_days=0
    )


async def test_the_running_bot_prunes_at_start_under_its_own_settings(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    path = tmp_path / "data" / "bot.db"
    with open_store(path) as store:
        add_turn(store, USER, NOW - timedelta(days=8), text="old")
        add_turn(store, USER, NOW - timedelta(days=6), text="kept")
        store.events.add(EventRecord(ts=NOW - timedelta(days=8), event="image_requested"))
    bot = await start_bot(
        nursery, tmp_path, fake_telegram, clock=Clock(NOW), turns_retention_days=7
    )
    await trio.sleep(1)
    with bot.store() as store:
        texts = [row["text"] for row in store.db.query("SELECT text FROM turns")]
        assert texts == ["kept"]
        assert count(store, "events_analytics") == 1  # 400 days for events
    await bot.stop()
