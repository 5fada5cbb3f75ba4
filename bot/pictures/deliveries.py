"""Uploads in flight, shielded from a graceful stop for a bounded grace.

A photo cut off mid-upload by a stop leaves its job active, and the next start sends it
again; if Telegram had in fact taken it, the user sees it twice. So each delivery runs in
a shielded cancel scope: a stop does not reach it. The stop bounds it instead: from the
stop on, every delivery in flight (and any that starts after) has
:data:`DELIVERY_GRACE_S` to finish, then its scope is cancelled. A delivery that finishes
is charged as usual; one that outlasts the grace keeps its job for the next start
(docs/decisions.md, D8). A forced stop (a second signal) cuts them all at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import trio

__all__ = ["DELIVERY_GRACE_S", "Deliveries"]

# Longer than the stop's own grace for the updates in hand (app.STOP_GRACE_S, 5 s): a
# photo of a few MB to Telegram takes seconds, but a slow uplink or a 429 stretches it.
# Keep a supervisor's stop timeout above it (docker stop -t 20; systemd's default is 90 s).
DELIVERY_GRACE_S: Final = 15.0


class Deliveries:
    """The shielded scopes of the deliveries in flight, and the stop's bound on them."""

    def __init__(self) -> None:
        self._scopes: set[trio.CancelScope] = set()
        self._deadline = math.inf  # none until a stop

    @contextmanager
    def shielded(self) -> Iterator[trio.CancelScope]:
        """A delivery's scope: a stop does not cancel it, its grace does
        (``cancelled_caught`` then says the delivery was cut short)."""
        with trio.CancelScope(shield=True, deadline=self._deadline) as scope:
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)

    def bound(self, grace_s: float = DELIVERY_GRACE_S) -> None:
        """A stop: every delivery, in flight or to come, ends within *grace_s* from now."""
        self._deadline = min(self._deadline, trio.current_time() + grace_s)
        for scope in self._scopes:
            scope.deadline = min(scope.deadline, self._deadline)

    def cut(self) -> None:
        """A forced stop: every delivery ends now."""
        self._deadline = -math.inf
        for scope in self._scopes:
            scope.cancel()
