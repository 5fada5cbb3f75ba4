"""Is the bot alive? The answer of ``/healthz`` and of ``persona-bot health``.

Two signs make "alive": the event loop answers (the heartbeat task below beats once a
second) and polling is live (polling began, or a ``getUpdates`` succeeded, within
``POLL_STALE_S``; a long poll returns at least every 50 s even when nobody writes). The
listener reads them from its own thread, which is why they are stamped with
``time.monotonic`` rather than the trio clock: a stuck loop cannot stamp anything, and
the thread still sees the stamp age.
Each stamp is one attribute assignment, which another thread reads whole.

:func:`judge` turns the stamps into a verdict and is a plain function (table tests);
:func:`health_main` is the command for containers and timers: it asks ``/healthz`` when
``METRICS_ADDRESS`` is set, and otherwise checks only that a bot holds the database.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import trio

from bot.core.settings import ListenAddress, SettingsError, load_settings
from store.instance_lock import NO_PID, lock_holder

__all__ = [
    "BEAT_INTERVAL_S",
    "LOOP_STALL_S",
    "POLL_STALE_S",
    "Health",
    "Heartbeat",
    "health_main",
    "judge",
    "run_heartbeat",
]

BEAT_INTERVAL_S: Final = 1.0
# A loop that has not beaten for this long is stuck (a blocking call, a busy loop).
LOOP_STALL_S: Final = 10.0
# Two long polls (50 s each) and the client's retries of a failed one: longer means
# Telegram has not been reached, or the updates are not being taken.
POLL_STALE_S: Final = 120.0
ASK_TIMEOUT_S: Final = 5.0
EXIT_HEALTHY: Final = 0
EXIT_UNHEALTHY: Final = 1


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    reason: str  # one line, for a person and for Docker's health log


def judge(
    *,
    now: float,
    started_at: float,
    beat_at: float | None,
    polled_at: float | None,
    stopping: bool,
) -> Health:
    """The verdict at *now* (seconds on one monotonic clock) from the stamps."""
    if stopping:
        return Health(ok=False, reason="stopping")
    if beat_at is None:
        return Health(ok=False, reason=f"starting for {now - started_at:.0f} s")
    if now - beat_at > LOOP_STALL_S:
        return Health(ok=False, reason=f"event loop has not answered for {now - beat_at:.0f} s")
    if polled_at is None:
        return Health(ok=False, reason=f"not polling yet ({now - started_at:.0f} s after start)")
    if now - polled_at > POLL_STALE_S:
        return Health(
            ok=False, reason=f"Telegram has not answered getUpdates for {now - polled_at:.0f} s"
        )
    return Health(ok=True, reason=f"ok: polling; Telegram answered {now - polled_at:.0f} s ago")


@dataclass(slots=True)
class Heartbeat:
    """The stamps: written by trio tasks, read by the listener's thread."""

    clock: Callable[[], float] = time.monotonic
    started_at: float = field(init=False)
    beat_at: float | None = None
    polled_at: float | None = None
    stopping: bool = False

    def __post_init__(self) -> None:
        self.started_at = self.clock()

    def beat(self) -> None:
        self.beat_at = self.clock()

    def polled(self) -> None:
        """Polling began or a ``getUpdates`` succeeded (polling calls this)."""
        self.polled_at = self.clock()

    def health(self) -> Health:
        return judge(
            now=self.clock(),
            started_at=self.started_at,
            beat_at=self.beat_at,
            polled_at=self.polled_at,
            stopping=self.stopping,
        )


async def run_heartbeat(
    heartbeat: Heartbeat,
    *,
    samplers: Sequence[Callable[[], None]] = (),
    stopping: Callable[[], bool] = lambda: False,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Beat once a second until cancelled, and set the gauges of state (*samplers*) on
    each beat, here in the loop that owns that state."""
    task_status.started()
    while True:
        heartbeat.stopping = stopping()
        heartbeat.beat()
        for sample in samplers:
            sample()
        await trio.sleep(BEAT_INTERVAL_S)


def health_url(address: ListenAddress) -> str:
    """Where this host reaches the listener: a wildcard bind is asked on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address.host, address.host)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{address.port}/healthz"


def health_main() -> int:
    """``persona-bot health``: one line, exit 0 when healthy, 1 otherwise."""
    try:
        settings = load_settings(require_token=False)
    except SettingsError as exc:
        print(f"unhealthy: {exc}")
        return EXIT_UNHEALTHY
    if settings.metrics_address is not None:
        ok, line = ask(health_url(settings.metrics_address))
    else:
        ok, line = _holder_line(str(settings.database_path))
    print(line)
    return EXIT_HEALTHY if ok else EXIT_UNHEALTHY


def ask(url: str, *, timeout_s: float = ASK_TIMEOUT_S) -> tuple[bool, str]:
    """GET *url*: healthy on 200; the listener's one-line reason either way."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return True, _first_line(response.read())
    except urllib.error.HTTPError as exc:
        return False, f"unhealthy: {_first_line(exc.read())}"
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return False, f"unhealthy: no answer from {url} ({reason})"


def _holder_line(database: str) -> tuple[bool, str]:
    holder = lock_holder(database)
    if holder is None:
        return False, f"unhealthy: no bot holds {database} (is it running?)"
    pid = f"pid {holder}" if holder != NO_PID else "a process"
    return True, (
        f"running: {pid} holds {database}; set METRICS_ADDRESS to check polling and the loop"
    )


def _first_line(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else "(empty answer)"
