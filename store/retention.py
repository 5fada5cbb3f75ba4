"""How long users' data is kept: pruning by age, and ``/forget`` (docs/product.md, P20).

Five tables grow with use. What each keeps and for how long is decided here, as data:
:func:`prune_rules` turns a :class:`RetentionPolicy` and the time into one
:class:`PruneRule` per table (pure), and :func:`prune_batch` deletes at most a batch of
the rows one rule selects, in one transaction, so the caller can yield between batches.

- ``turns`` (the conversation, users' own words) and ``sent_messages`` (the bot's
  replies; a press on a pruned reply is answered as stale) by ``created_at``;
- ``jobs`` by ``finished_at``, final jobs only (an active job is a reservation), and
  never one of the current UTC quota day (today's subscription pictures are counted
  from those rows);
- ``parked_updates`` (updates the bot could not handle, kept raw for the operator; they
  hold users' words) by ``parked_at``, as long as ``turns``;
- ``events_analytics`` by ``ts``: no texts, only names, ids and numbers, kept longest so
  the picture report stays meaningful;
- ``applied_updates`` (which updates' effects were applied) by ``applied_at``, as long as
  ``turns``: long after Telegram or the inbox could hand an update over again.

The ledger and the payments are never pruned: they are the record of the money.

:func:`forget_user` is ``/forget``: the user's turns, the texts the bot sent them, the
scenes in their finished jobs' graphs and any update of theirs parked for the operator
go; their balance, subscription, job rows (what was charged) and events stay. A reply
whose picture is being drawn keeps its text (the worker reads it) until its job ends:
``forgotten_at`` tells the job's end to delete it then (``store.quota``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import sqlite_utils

from store.clock import to_iso
from store.jobs import ACTIVE_SQL, JobState
from store.quota import quota_day

__all__ = [
    "FINAL_SQL",
    "Forgotten",
    "PruneRule",
    "RetentionPolicy",
    "Table",
    "forget_user",
    "prune_batch",
    "prune_rules",
]

KEEP_FOREVER: Final = 0  # a retention of 0 days turns pruning of that table off

FINAL_SQL: Final = f"('{JobState.DELIVERED.value}', '{JobState.FAILED.value}')"


class Table(enum.StrEnum):
    """The tables retention prunes."""

    TURNS = "turns"
    SENT_MESSAGES = "sent_messages"
    JOBS = "jobs"
    EVENTS = "events_analytics"
    PARKED = "parked_updates"
    APPLIED = "applied_updates"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days each table keeps a row; :data:`KEEP_FOREVER` (0) keeps it forever."""

    turns_days: int
    sent_messages_days: int
    jobs_days: int
    events_days: int

    def days(self, table: Table) -> int:
        return {
            Table.TURNS: self.turns_days,
            Table.SENT_MESSAGES: self.sent_messages_days,
            Table.JOBS: self.jobs_days,
            Table.EVENTS: self.events_days,
            Table.PARKED: self.turns_days,  # raw updates hold the user's words, as turns do
            Table.APPLIED: self.turns_days,
        }[table]


@dataclass(frozen=True, slots=True)
class PruneRule:
    """Rows of *table* whose *age_column* is before *cutoff*, and which match *where*."""

    table: Table
    age_column: str
    cutoff: str  # store form (store.clock.to_iso); ISO strings in UTC sort as times do
    where: str  # extra SQL condition with positional parameters *params*
    params: tuple[str, ...] = ()

    def select_sql(self) -> str:
        """The rowids of the oldest rows to prune, at most ``?`` of them (the last parameter)."""
        extra = f" AND {self.where}" if self.where else ""
        return (
            f"SELECT rowid FROM {self.table.value} WHERE {self.age_column} < ?{extra}"
            f" ORDER BY {self.age_column} LIMIT ?"
        )


_AGE_COLUMN: Final = {
    Table.TURNS: "created_at",
    Table.SENT_MESSAGES: "created_at",
    Table.JOBS: "finished_at",
    Table.EVENTS: "ts",
    Table.PARKED: "parked_at",
    Table.APPLIED: "applied_at",
}


def prune_rules(policy: RetentionPolicy, now: datetime) -> tuple[PruneRule, ...]:
    """What to prune at *now*: one rule per table whose retention is not forever."""
    rules = []
    for table in Table:
        days = policy.days(table)
        if days == KEEP_FOREVER:
            continue
        cutoff = to_iso(now - timedelta(days=days))
        if table is Table.JOBS:
            # ``+state``: the range on jobs_by_finish is the narrow one, not the state index.
            where = f"+state IN {FINAL_SQL} AND quota_day < ?"
            rules.append(PruneRule(table, _AGE_COLUMN[table], cutoff, where, (quota_day(now),)))
        else:
            rules.append(PruneRule(table, _AGE_COLUMN[table], cutoff, ""))
    return tuple(rules)


def prune_batch(db: sqlite_utils.Database, rule: PruneRule, limit: int) -> int:
    """Delete at most *limit* rows *rule* selects, oldest first, in one transaction.

    Returns how many went; fewer than *limit* means the table is done for now.
    """
    sql = f"DELETE FROM {rule.table.value} WHERE rowid IN ({rule.select_sql()})"
    with db.atomic():
        cursor = db.execute(sql, [rule.cutoff, *rule.params, limit])
    return int(cursor.rowcount)


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What :func:`forget_user` removed."""

    turns: int
    texts: int
    scenes: int
    parked: int = 0


def forget_user(db: sqlite_utils.Database, user_id: int, *, now: datetime) -> Forgotten:
    """Delete *user_id*'s conversation and texts, in one transaction.

    A reply whose picture is being drawn right now keeps its text and its job its graph
    until the job ends (the worker reads them; the job's end deletes them, as
    ``forgotten_at`` says); everything else of theirs goes.
    """
    with db.atomic():
        db.execute("UPDATE users SET forgotten_at = ? WHERE user_id = ?", [to_iso(now), user_id])
        turns = db.execute("DELETE FROM turns WHERE user_id = ?", [user_id]).rowcount
        texts = db.execute(
            "DELETE FROM sent_messages WHERE user_id = ? AND NOT EXISTS (SELECT 1 FROM jobs"
            " WHERE jobs.chat_id = sent_messages.chat_id"
            f" AND jobs.message_id = sent_messages.message_id AND jobs.state IN {ACTIVE_SQL})",
            [user_id],
        ).rowcount
        scenes = db.execute(
            "UPDATE jobs SET graph = NULL"
            f" WHERE user_id = ? AND state IN {FINAL_SQL} AND graph IS NOT NULL",
            [user_id],
        ).rowcount
        parked = db.execute(
            f"DELETE FROM parked_updates WHERE {_SENDER_SQL} = ?", [user_id]
        ).rowcount
    return Forgotten(turns=int(turns), texts=int(texts), scenes=int(scenes), parked=int(parked))


# Who sent a raw update, for every kind the bot takes in (docs/telegram.md).
_SENDER_SQL: Final = "COALESCE({})".format(
    ", ".join(
        f"json_extract(raw, '$.{kind}.from.id')"
        for kind in (
            "message",
            "edited_message",
            "callback_query",
            "my_chat_member",
            "pre_checkout_query",
        )
    )
)
