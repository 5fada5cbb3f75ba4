"""Reading rows back in tests: a user that must exist, and their balance."""

from __future__ import annotations

from store import Store, User

__all__ = ["balance", "user_row"]


def user_row(store: Store, user_id: int) -> User:
    """The user's row; the test fails here if there is none."""
    user = store.users.get(user_id)
    assert user is not None, f"no user {user_id} in the store"
    return user


def balance(store: Store, user_id: int) -> int:
    """Pictures left on *user_id*'s balance."""
    return user_row(store, user_id).image_balance
