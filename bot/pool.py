"""The bounded queue between presses and the generation workers (SPEC §7, STYLE 11).

A press puts a :class:`Ticket` with ``submit_nowait``; a full queue raises
:class:`QueueFull`, which the press answers as ``busy`` instead of growing the queue.
Workers take tickets in order. While a worker runs a job, the job's cancel scope is
registered here so that the user's «✖ Отмена» can cancel exactly that job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

__all__ = ["GenerationPool", "QueueFull", "Ticket"]


class QueueFull(Exception):
    """The generation queue has no room; the press is answered ``busy``."""


@dataclass(frozen=True, slots=True)
class Ticket:
    job_id: str
    resumed: bool = False  # from an earlier run of the bot: ComfyUI may already know it


class GenerationPool:
    """Tickets waiting for a worker, and the cancel scopes of the jobs being run."""

    def __init__(self, *, queue_size: int) -> None:
        self._send, self._receive = trio.open_memory_channel[Ticket](queue_size)
        self._waiting: list[str] = []
        self._first_position: dict[str, int] = {}
        self._running: dict[str, trio.CancelScope] = {}
        self._changed = trio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self, *, timeout_s: float) -> None:
        """Until a job enters or leaves the queue, or *timeout_s* passes."""
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
        self._first_position[job_id] = len(self._waiting)
        self._notify()
        return len(self._waiting)

    def discard(self, job_id: str) -> None:
        """A waiting job was cancelled: the jobs behind it move up now; its ticket is
        skipped by the worker that takes it."""
        self._left(job_id)

    def position(self, job_id: str) -> int | None:
        try:
            return self._waiting.index(job_id) + 1
        except ValueError:
            return None

    def positions(self) -> list[tuple[str, int, int]]:
        """``(job_id, place now, place when queued)`` of every waiting job, in order."""
        return [
            (job_id, index + 1, self._first_position.get(job_id, index + 1))
            for index, job_id in enumerate(self._waiting)
        ]

    async def tickets(self) -> AsyncIterator[Ticket]:
        """Tickets in queue order, for one worker; ends when the pool is closed."""
        async for ticket in self._receive:
            self._left(ticket.job_id)
            yield ticket

    def _left(self, job_id: str) -> None:
        if job_id in self._waiting:
            self._waiting.remove(job_id)
        self._first_position.pop(job_id, None)
        self._notify()

    @contextmanager
    def running(self, job_id: str) -> Iterator[trio.CancelScope]:
        """Run a job inside a cancel scope that :meth:`cancel` can reach."""
        with trio.CancelScope() as scope:
            self._running[job_id] = scope
            try:
                yield scope
            finally:
                self._running.pop(job_id, None)

    def stop_cancelling(self, job_id: str) -> None:
        """From here on (delivery) the job runs to its end; a cancel press finds nothing."""
        self._running.pop(job_id, None)

    def cancel(self, job_id: str) -> bool:
        """Cancel the running job *job_id*; False if it is not running here."""
        scope = self._running.get(job_id)
        if scope is None:
            return False
        scope.cancel()
        return True

    def close(self) -> None:
        self._send.close()
