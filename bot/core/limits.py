"""Per-user rates: how many messages, LLM replies and button presses a user gets per minute.

A token bucket per user, pure: the caller passes the time (trio's clock), so the rules are
tested without an event loop. A bucket holds up to its per-minute rate and refills
continuously, so a user may send a short burst and then the steady rate. Buckets of users
who have been quiet long enough to be full again are forgotten, so memory follows the
number of active users, not of all users ever seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = ["SECONDS_PER_MINUTE", "RateLimit", "UserLimits"]

SECONDS_PER_MINUTE: Final = 60.0
TOAST_EVERY_S: Final = 1.0  # a throttled presser's toasts, at most
FORGET_EVERY: Final = 1024  # takes between two sweeps of full buckets


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at: float


@dataclass(slots=True)
class RateLimit:
    """At most *per_minute* per key, in bursts of up to *per_minute*; 0 turns it off."""

    per_minute: int
    _buckets: dict[int, _Bucket] = field(default_factory=dict)
    _takes: int = 0

    def take(self, key: int, now: float) -> bool:
        """One token for *key* at *now*; False when the key is over its rate."""
        if self.per_minute <= 0:
            return True
        self._takes += 1
        if self._takes % FORGET_EVERY == 0:
            self._forget_full(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.per_minute), now)
        bucket.tokens = min(float(self.per_minute), bucket.tokens + self._refill(bucket, now))
        bucket.updated_at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _refill(self, bucket: _Bucket, now: float) -> float:
        return max(0.0, now - bucket.updated_at) * self.per_minute / SECONDS_PER_MINUTE

    def _forget_full(self, now: float) -> None:
        full = [
            key
            for key, bucket in self._buckets.items()
            if bucket.tokens + self._refill(bucket, now) >= self.per_minute
        ]
        for key in full:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(slots=True)
class UserLimits:
    """The per-user rates of one process (``USER_MESSAGES_PER_MINUTE``,
    ``LLM_REPLIES_PER_USER_PER_MINUTE``, ``USER_PRESSES_PER_MINUTE``), and when each user
    was last told so."""

    messages: RateLimit
    llm: RateLimit
    presses: RateLimit = field(default_factory=lambda: RateLimit(0))
    _told_at: dict[int, float] = field(default_factory=dict)
    _toasted_at: dict[int, float] = field(default_factory=dict)

    @classmethod
    def per_minute(cls, *, messages: int, llm_replies: int, presses: int = 0) -> UserLimits:
        return cls(RateLimit(messages), RateLimit(llm_replies), RateLimit(presses))

    def should_tell(self, user_id: int, now: float) -> bool:
        """Tell a throttled user once a minute, not once per message."""
        return _once_per(self._told_at, user_id, now, SECONDS_PER_MINUTE)

    def should_toast(self, user_id: int, now: float) -> bool:
        """Toast a throttled presser once a second: each toast is a Bot API call, and a
        press left unanswered only spins until Telegram stops it by itself."""
        return _once_per(self._toasted_at, user_id, now, TOAST_EVERY_S)


def _once_per(last: dict[int, float], user_id: int, now: float, period_s: float) -> bool:
    """True at most once per *period_s* for *user_id*; *last* is trimmed as it grows."""
    at = last.get(user_id)
    if at is not None and now - at < period_s:
        return False
    if len(last) >= FORGET_EVERY:
        for user in [user for user, at in last.items() if now - at >= period_s]:
            del last[user]
    last[user_id] = now
    return True
