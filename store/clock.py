"""How the store writes and reads wall-clock times: ISO 8601 strings in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["from_iso", "to_iso", "utc_now"]


def utc_now() -> datetime:
    """The current wall-clock time in UTC (the production ``now`` callable)."""
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """Store form of *moment*; naive datetimes are refused so no local time sneaks in."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}; pass an aware UTC datetime")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def from_iso(text: str) -> datetime:
    """Inverse of :func:`to_iso`."""
    return datetime.fromisoformat(text).astimezone(UTC)
