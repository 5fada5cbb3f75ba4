"""SIGINT/SIGTERM → a clean stop: polling ends, the update in hand finishes, then the rest.

The first signal asks for a graceful stop (``on_stop``); a second one, for a person who
does not want to wait, cancels everything at once (``on_force``).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

import trio

from common.logfields import fields

__all__ = ["run_signal_watcher"]

log = logging.getLogger(__name__)


async def run_signal_watcher(
    on_stop: Callable[[], None],
    on_force: Callable[[], None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call *on_stop* at the first SIGINT/SIGTERM and *on_force* at the second."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        stopping = False
        async for signum in signals:
            name = signal.Signals(signum).name
            if not stopping:
                log.info(
                    "bot_stop_requested",
                    extra=fields(signal=name, hint="finishing the updates in hand"),
                )
                stopping = True
                on_stop()
            else:
                log.warning("bot_stop_forced", extra=fields(signal=name))
                on_force()
