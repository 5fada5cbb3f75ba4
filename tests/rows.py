"""Rows in tests: a user that must exist, their balance, a job delivered as a worker would."""

from __future__ import annotations

from datetime import datetime

from store import EventRecord, JobState, Store, User

__all__ = ["balance", "deliver", "user_row"]


def user_row(store: Store, user_id: int) -> User:
    """The user's row; the test fails here if there is none."""
    user = store.users.get(user_id)
    assert user is not None, f"no user {user_id} in the store"
    return user


def balance(store: Store, user_id: int) -> int:
    """Pictures left on *user_id*'s balance."""
    return user_row(store, user_id).image_balance


def deliver(
    store: Store,
    job_id: str,
    *,
    now: datetime,
    file_id: str = "f",
    event: EventRecord | None = None,
) -> bool:
    """Walk a reserved job through its steps and charge it, as a worker would."""
    store.jobs.advance(job_id, to=JobState.DOWNLOADED, now=now)
    store.quota.start_delivering(job_id, now=now)
    return store.quota.consume(job_id, file_id=file_id, now=now, event=event)
