"""The schema, as numbered migrations: the single source of truth for every table.

Migrations run at every start (``apply`` is idempotent: sqlite-utils records each one in
``_sqlite_migrations`` inside the same transaction as its changes). Add new ones at the
end; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite_utils

from store.clock import to_iso, utc_now

__all__ = ["MIGRATIONS", "migrate", "migration_names"]

MIGRATIONS = sqlite_utils.Migrations("persona_bot")

# The unique partial index on jobs keeps at most one job in flight per illustrated
# message (docs/product.md, P10), whatever races the handlers run into.
_INITIAL = """
CREATE TABLE users (
    user_id INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL DEFAULT '',
    language TEXT NOT NULL DEFAULT 'ru',
    persona_key TEXT,
    blocked INTEGER NOT NULL DEFAULT 0,
    image_balance INTEGER NOT NULL DEFAULT 0 CHECK (image_balance >= 0),
    subscription_until TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE sent_messages (
    chat_id INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    persona_key TEXT NOT NULL,
    text TEXT NOT NULL,
    photo_file_id TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (chat_id, message_id)
);
CREATE TABLE turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    persona_key TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    text TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX turns_by_conversation ON turns (user_id, persona_key, id);
CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE update_inbox (
    update_id INTEGER PRIMARY KEY,
    raw TEXT NOT NULL
);
CREATE TABLE events_analytics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    event TEXT NOT NULL,
    user_id INTEGER,
    chat_id INTEGER,
    persona TEXT,
    job_id TEXT,
    reason TEXT,
    detail TEXT,
    duration_ms INTEGER
);
CREATE INDEX events_by_name_time ON events_analytics (event, ts);
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,
    prompt_id TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL,
    chat_id INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    persona_key TEXT NOT NULL,
    language TEXT NOT NULL DEFAULT 'ru',
    state TEXT NOT NULL,
    quota_source TEXT NOT NULL,
    quota_day TEXT NOT NULL,
    graph TEXT,
    status_message_id INTEGER,
    spool_path TEXT,
    file_id TEXT,
    reason TEXT,
    detail TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE UNIQUE INDEX jobs_one_active_per_message ON jobs (chat_id, message_id)
    WHERE state IN ('queued', 'running', 'downloaded');
CREATE INDEX jobs_by_state ON jobs (state);
CREATE INDEX jobs_by_user_day ON jobs (user_id, quota_source, quota_day);
"""


@MIGRATIONS(name="0001_initial")
def _initial(db: sqlite_utils.Database) -> None:
    # One execute per statement: sqlite3's executescript() would COMMIT first and break
    # the migration's transaction.
    for statement in _INITIAL.split(";"):
        if statement.strip():
            db.execute(statement)


@MIGRATIONS(name="0002_parked_updates")
def _parked_updates(db: sqlite_utils.Database) -> None:
    # Updates whose handler kept failing: kept for the operator, never handled again.
    db.execute(
        "CREATE TABLE parked_updates (update_id INTEGER PRIMARY KEY, raw TEXT NOT NULL,"
        " reason TEXT NOT NULL, parked_at TEXT NOT NULL)"
    )


# Indexes for the report (docs/decisions.md, D27) and for retention (docs/product.md, P20).
# The report: in events_image_counts each (event, persona, reason) group's rows of a
# window are one range, counted without a table lookup (it replaces events_by_name_time,
# its prefix); the two partial indexes hold the generated durations in order, so a
# percentile is an index walk instead of a sort; events_by_time finds a window's rows.
# Retention: each table's age column, and the user's rows for /forget (an active job
# has no finished_at, so the jobs' index range holds only final ones).
_RETENTION = """
CREATE INDEX events_image_counts ON events_analytics (event, persona, reason, ts, duration_ms);
DROP INDEX events_by_name_time;
CREATE INDEX events_durations ON events_analytics (duration_ms, ts)
    WHERE event = 'image_generated' AND duration_ms IS NOT NULL;
CREATE INDEX events_durations_by_persona ON events_analytics (persona, duration_ms, ts)
    WHERE event = 'image_generated' AND duration_ms IS NOT NULL;
CREATE INDEX events_by_time ON events_analytics (ts);
CREATE INDEX turns_by_time ON turns (created_at);
CREATE INDEX sent_messages_by_time ON sent_messages (created_at);
CREATE INDEX sent_messages_by_user ON sent_messages (user_id);
CREATE INDEX jobs_by_finish ON jobs (finished_at);
"""


@MIGRATIONS(name="0003_retention")
def _retention(db: sqlite_utils.Database) -> None:
    for statement in _RETENTION.split(";"):
        if statement.strip():
            db.execute(statement)


# Telegram Stars. The unique index on telegram_payment_charge_id is what makes a credit
# happen once however often Telegram delivers the payment (docs/product.md, P18); the
# credit is written in the same transaction as the row. ``users.paid_images`` is the
# bought part of ``image_balance`` (spent after the free part), and ``jobs.paid`` says a
# job was drawn from it, so the report can tell paid pictures from free ones.
_PAYMENTS = """
CREATE TABLE payments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    telegram_payment_charge_id TEXT NOT NULL,
    provider_payment_charge_id TEXT NOT NULL DEFAULT '',
    user_id INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('pack', 'subscription')),
    invoice_payload TEXT NOT NULL,
    currency TEXT NOT NULL,
    total_amount INTEGER NOT NULL,
    images INTEGER NOT NULL DEFAULT 0,
    subscription_until TEXT,
    is_recurring INTEGER NOT NULL DEFAULT 0,
    is_first_recurring INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    refunded_at TEXT,
    refund_taken INTEGER,
    refund_missing INTEGER
);
CREATE UNIQUE INDEX payments_by_charge ON payments (telegram_payment_charge_id);
CREATE INDEX payments_by_time ON payments (created_at);
CREATE INDEX payments_by_user ON payments (user_id, kind, id);
ALTER TABLE users ADD COLUMN paid_images INTEGER NOT NULL DEFAULT 0 CHECK (paid_images >= 0);
ALTER TABLE jobs ADD COLUMN paid INTEGER NOT NULL DEFAULT 0
"""


@MIGRATIONS(name="0004_payments")
def _payments(db: sqlite_utils.Database) -> None:
    for statement in _PAYMENTS.split(";"):
        if statement.strip():
            db.execute(statement)


@MIGRATIONS(name="0005_job_server")
def _job_server(db: sqlite_utils.Database) -> None:
    # The ComfyUI server (its host:port) a job was last handed to: recovery looks the
    # prompt up there first, and the report breaks pictures down by it. NULL: not yet
    # handed to any, or handed over before the bot drove several servers.
    db.execute("ALTER TABLE jobs ADD COLUMN server TEXT")


@MIGRATIONS(name="0006_parked_updates_by_age")
def _parked_updates_by_age(db: sqlite_utils.Database) -> None:
    # Retention prunes parked updates (they hold users' words) oldest first.
    db.execute("CREATE INDEX parked_updates_by_age ON parked_updates (parked_at)")


# The per-server report (store/server_stats.py) counts and ranks a server's finished
# pictures on these indexes, as the totals are counted on events_image_counts; the server
# of events written before is taken from their jobs.
_EVENTS_SERVER = """
ALTER TABLE events_analytics ADD COLUMN server TEXT;
UPDATE events_analytics SET server = (SELECT server FROM jobs WHERE jobs.job_id =
    events_analytics.job_id) WHERE event IN ('image_generated', 'image_failed')
    AND job_id IS NOT NULL;
CREATE INDEX events_finished_by_server ON events_analytics (event, server, ts);
CREATE INDEX events_durations_by_server ON events_analytics (server, duration_ms, ts)
    WHERE event = 'image_generated' AND duration_ms IS NOT NULL
"""


@MIGRATIONS(name="0007_events_server")
def _events_server(db: sqlite_utils.Database) -> None:
    for statement in _EVENTS_SERVER.split(";"):
        if statement.strip():
            db.execute(statement)


# Money by design (store/ledger.py): every change to a balance or a subscription is a
# ledger entry, once per (cause, ref); a pack's pictures not yet reserved are its
# ``remaining``, and a job names the pack its picture came from (``lot``). An update whose
# effects were applied is claimed in ``applied_updates`` in the same transaction, so
# handling it again changes nothing. A job's upload begins with the ``delivering`` state,
# which a cancel cannot release (one active job per message counts it too). A user's
# /forget while a picture was drawn is finished when that job ends (``forgotten_at``).
# Prompts left on a ComfyUI server a job moved away from wait for their clean-up in
# ``abandoned_prompts``, across restarts.
_LEDGER = """
CREATE TABLE ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    cause TEXT NOT NULL,
    ref TEXT NOT NULL,
    pictures INTEGER NOT NULL DEFAULT 0,
    paid INTEGER NOT NULL DEFAULT 0,
    lot TEXT,
    seconds INTEGER NOT NULL DEFAULT 0,
    until TEXT
);
CREATE UNIQUE INDEX ledger_once ON ledger (cause, ref);
CREATE INDEX ledger_by_user ON ledger (user_id, id);
CREATE INDEX ledger_by_lot ON ledger (lot) WHERE lot IS NOT NULL;
ALTER TABLE payments ADD COLUMN remaining INTEGER NOT NULL DEFAULT 0 CHECK (remaining >= 0);
CREATE INDEX payments_open_packs ON payments (user_id, id) WHERE kind = 'pack' AND remaining > 0;
ALTER TABLE jobs ADD COLUMN lot TEXT;
DROP INDEX jobs_one_active_per_message;
CREATE UNIQUE INDEX jobs_one_active_per_message ON jobs (chat_id, message_id)
    WHERE state IN ('queued', 'running', 'downloaded', 'delivering');
CREATE TABLE applied_updates (update_id INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
CREATE INDEX applied_updates_by_age ON applied_updates (applied_at);
ALTER TABLE users ADD COLUMN forgotten_at TEXT;
CREATE TABLE abandoned_prompts (
    server TEXT NOT NULL,
    prompt_id TEXT NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (server, prompt_id)
)
"""


@MIGRATIONS(name="0008_ledger")
def _ledger(db: sqlite_utils.Database) -> None:
    for statement in _LEDGER.split(";"):
        if statement.strip():
            db.execute(statement)
    _open_ledger(db)


def _open_ledger(db: sqlite_utils.Database) -> None:
    """What every user held before the ledger, as its first entries.

    The bought part of a balance is given to the user's packs not refunded, newest first
    (the oldest were spent first); a job drawn from a bought picture names the newest.
    """
    stamp = to_iso(utc_now())
    users = list(
        db.query("SELECT user_id, image_balance, paid_images, subscription_until FROM users")
    )
    for user in users:
        user_id, bought = int(user["user_id"]), int(user["paid_images"])
        packs = list(
            db.query(
                "SELECT telegram_payment_charge_id AS charge, images FROM payments"
                " WHERE user_id = ? AND kind = 'pack' AND refunded_at IS NULL ORDER BY id DESC",
                [user_id],
            )
        )
        left = bought
        for pack in packs:
            remaining = min(int(pack["images"]), left)
            left -= remaining
            if remaining:
                db.execute(
                    "UPDATE payments SET remaining = ? WHERE telegram_payment_charge_id = ?",
                    [remaining, pack["charge"]],
                )
                _opening(db, stamp, user_id, f"pack:{pack['charge']}", remaining, pack["charge"])
        if left:  # bought pictures no pack explains: counted as free from now on
            db.execute(
                "UPDATE users SET paid_images = paid_images - ? WHERE user_id = ?", [left, user_id]
            )
        free = int(user["image_balance"]) - (bought - left)
        db.execute(
            "INSERT INTO ledger (ts, user_id, cause, ref, pictures, until)"
            " VALUES (?, ?, 'opening', ?, ?, ?)",
            [stamp, user_id, f"user:{user_id}", free, user["subscription_until"]],
        )
        if packs:
            db.execute(
                "UPDATE jobs SET lot = ? WHERE user_id = ? AND paid = 1 AND state IN"
                " ('queued', 'running', 'downloaded')",
                [packs[0]["charge"], user_id],
            )


def _opening(
    db: sqlite_utils.Database, stamp: str, user_id: int, ref: str, pictures: int, lot: str
) -> None:
    db.execute(
        "INSERT INTO ledger (ts, user_id, cause, ref, pictures, paid, lot)"
        " VALUES (?, ?, 'opening', ?, ?, ?, ?)",
        [stamp, user_id, ref, pictures, pictures, lot],
    )


def migration_names() -> tuple[str, ...]:
    """Every migration this version ships, in the order they apply."""
    return tuple(
        migration.name for migration in MIGRATIONS.pending(sqlite_utils.Database(memory=True))
    )


def migrate(db: sqlite_utils.Database) -> None:
    """Bring *db* to the latest schema; a no-op when it is already there."""
    MIGRATIONS.apply(db)
