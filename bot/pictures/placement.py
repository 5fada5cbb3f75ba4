"""PURE: which ComfyUI server draws a job, or why none does yet (docs/architecture.md, §7).

A job goes to a *healthy* server that has every model file the job needs and a free
slot; among those, the least loaded, counting this bot's jobs there plus the prompts
ComfyUI itself reports queued (``queue_remaining``, which includes ours). A server whose
model list is not known yet (``/object_info`` not read, or failed) counts as capable:
ComfyUI's own check (``value_not_in_list``) remains the backstop, and one server with no
model list behaves exactly as the bot did before it drove several.

Nothing to choose yields one of two waits or a refusal:

* ``WAIT_FOR_SLOT``: a capable server is healthy but full: the job waits in the bot's
  queue, not in ComfyUI's, so whichever frees up first takes it;
* ``WAIT_FOR_SERVER``: no server is healthy: the job waits, within its time budget, for
  one to come back;
* ``MISSING``: every healthy server lacks a file the job needs: fail at once, naming it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Placement", "ServerView", "Verdict", "place"]


class Verdict(enum.Enum):
    CHOSEN = "chosen"
    WAIT_FOR_SLOT = "wait_for_slot"
    WAIT_FOR_SERVER = "wait_for_server"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class ServerView:
    """What the rule needs to know of one server, at one moment."""

    name: str
    healthy: bool
    slots: int
    busy: int  # this bot's jobs on it now
    queue_remaining: int = 0  # ComfyUI's last word on its queue (ours included)
    models: frozenset[str] | None = None  # None: not known yet


@dataclass(frozen=True, slots=True)
class Placement:
    verdict: Verdict
    server: str = ""  # CHOSEN
    missing: tuple[str, ...] = ()  # MISSING: the files, in the order the job needs them


def _lacks(view: ServerView, needs: Sequence[str]) -> tuple[str, ...]:
    if view.models is None:
        return ()
    return tuple(name for name in needs if name not in view.models)


def _load(view: ServerView) -> tuple[int, float]:
    # ComfyUI's queue includes our own prompts; the larger of the two counts them once.
    return (max(view.busy, view.queue_remaining), view.busy / view.slots)


def place(servers: Sequence[ServerView], needs: Sequence[str]) -> Placement:
    """Where a job that needs the model files *needs* goes now."""
    healthy = [view for view in servers if view.healthy]
    if not healthy:
        return Placement(Verdict.WAIT_FOR_SERVER)
    capable = [view for view in healthy if not _lacks(view, needs)]
    if not capable:
        fewest = min((_lacks(view, needs) for view in healthy), key=len)
        return Placement(Verdict.MISSING, missing=fewest)
    free = [view for view in capable if view.busy < view.slots]
    if not free:
        return Placement(Verdict.WAIT_FOR_SLOT)
    # min() keeps the first of equals: ties go to the server listed first.
    return Placement(Verdict.CHOSEN, server=min(free, key=_load).name)
