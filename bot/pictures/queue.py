"""The bounded queue between presses and the generation workers.

A press puts a :class:`Ticket` with :meth:`JobQueue.submit_nowait`; a full queue raises
:class:`QueueFull`, which the press answers as ``busy`` instead of growing the queue.
Workers take tickets in order. While a worker draws a job, the job's cancel scope is
registered here, so the user's «✖ Отмена» cancels exactly that job; once delivery begins
the scope is unregistered and the job runs to its end. :meth:`JobQueue.phase` tells a
cancel which of those moments it met (:class:`~bot.pictures.lifecycle.Phase`).

Every change of the waiting line calls the ``on_change`` hook with the new places, so the
status messages can follow them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from bot.pictures.lifecycle import Phase
from common.metrics import QUEUE_WAIT_SECONDS

__all__ = ["JobQueue", "Place", "QueueFull", "Ticket"]


class QueueFull(Exception):
    """The generation queue has no room; the press is answered ``busy``."""


@dataclass(frozen=True, slots=True)
class Ticket:
    job_id: str
    resumed: bool = False  # from an earlier run of the bot: ComfyUI may already know it


@dataclass(frozen=True, slots=True)
class Place:
    job_id: str
    place: int  # 1-based, among the jobs waiting for a worker


def _ignore(_: Sequence[Place]) -> None:
    pass


class JobQueue:
    """Tickets waiting for a worker, and the cancel scopes of the jobs being drawn."""

    def __init__(
        self, *, size: int, on_change: Callable[[Sequence[Place]], None] = _ignore
    ) -> None:
        self._send, self._receive = trio.open_memory_channel[Ticket](size)
        self._waiting: list[str] = []
        self._queued_at: dict[str, float] = {}  # for the queue-wait metric
        self._drawing: dict[str, trio.CancelScope] = {}
        self._taken: set[str] = set()
        self._on_change = on_change
        self._changed = trio.Event()

    async def wait_changed(self, *, timeout_s: float) -> None:
        """Until a job enters or leaves the waiting line, or *timeout_s* passes."""
        with trio.move_on_after(timeout_s):
            await self._changed.wait()

    def submit_nowait(self, ticket: Ticket) -> int:
        """Queue *ticket*; its 1-based place among the waiting ones.

        Raises:
            QueueFull: the queue is at its size.
        """
        try:
            self._send.send_nowait(ticket)
        except trio.WouldBlock:
            raise QueueFull(f"generation queue is full ({len(self._waiting)} waiting)") from None
        return self._enqueued(ticket.job_id)

    async def submit(self, ticket: Ticket) -> None:
        """Queue *ticket*, waiting for room (used when resuming jobs at start)."""
        await self._send.send(ticket)
        self._enqueued(ticket.job_id)

    def _enqueued(self, job_id: str) -> int:
        self._waiting.append(job_id)
        self._queued_at[job_id] = trio.current_time()
        self._changed_now()
        return len(self._waiting)

    def discard(self, job_id: str) -> None:
        """A waiting job was cancelled: the jobs behind it move up now; its ticket is
        skipped by the worker that takes it."""
        self._queued_at.pop(job_id, None)
        self._left(job_id)

    def position(self, job_id: str) -> int | None:
        try:
            return self._waiting.index(job_id) + 1
        except ValueError:
            return None

    @property
    def waiting(self) -> int:
        """How many jobs wait for a worker."""
        return len(self._waiting)

    def places(self) -> list[Place]:
        """Every waiting job with its place, in order."""
        return [Place(job_id, index + 1) for index, job_id in enumerate(self._waiting)]

    def phase(self, job_id: str) -> Phase:
        """Where *job_id* is, for a cancel press (an unknown id has ended)."""
        if job_id in self._waiting:
            return Phase.WAITING
        if job_id in self._drawing:
            return Phase.DRAWING
        if job_id in self._taken:
            return Phase.DELIVERING
        return Phase.ENDED

    async def tickets(self) -> AsyncIterator[Ticket]:
        """Tickets in queue order, for one worker; ends when the queue is closed."""
        async for ticket in self._receive:
            queued_at = self._queued_at.pop(ticket.job_id, None)
            if queued_at is not None:
                QUEUE_WAIT_SECONDS.observe(trio.current_time() - queued_at)
            self._left(ticket.job_id)
            yield ticket

    def _left(self, job_id: str) -> None:
        if job_id in self._waiting:
            self._waiting.remove(job_id)
        self._changed_now()

    def _changed_now(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        self._on_change(self.places())

    @contextmanager
    def drawing(self, job_id: str) -> Iterator[trio.CancelScope]:
        """Run a job inside a cancel scope that :meth:`cancel` can reach."""
        with trio.CancelScope() as scope:
            self._drawing[job_id] = scope
            self._taken.add(job_id)
            try:
                yield scope
            finally:
                self._drawing.pop(job_id, None)
                self._taken.discard(job_id)

    def delivering(self, job_id: str) -> None:
        """From here on the job runs to its end; a cancel press finds nothing to cancel."""
        self._drawing.pop(job_id, None)

    def cancel(self, job_id: str) -> bool:
        """Cancel the job *job_id* a worker is drawing; False if none is."""
        scope = self._drawing.get(job_id)
        if scope is None:
            return False
        scope.cancel()
        return True

    def close(self) -> None:
        self._send.close()
