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

Which of the jobs waiting for a place takes a free slot is :func:`assign`'s choice
(docs/decisions.md, D41). In arrival order, each job takes a free server where its
models are warm (ComfyUI need not load them: bot/pictures/warmth.py). A job cold
everywhere that is free may wait, but only for as long as one switch costs on that
server: while a busy server has its models warm (it may free up first), or while a job
behind it has its models warm on the free server (that one goes first). After that it
takes the least loaded free server like any job. The switch cost is counted from the
first moment the job held back (a job deep in a backlog has waited long, but not because
of this rule), so no job waits more than about one switch cost longer than strict arrival
order would make it wait; with one persona (or nothing warm yet) the choice is exactly
arrival order and least load.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Assignment", "Placement", "ServerView", "Verdict", "Waiter", "assign", "place"]


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
    warm: frozenset[tuple[str, ...]] = frozenset()  # model sets it need not load
    switch_s: float = 0.0  # what loading a cold model set costs there
    free_in_s: float = 0.0  # when full: about how long until one of its jobs ends
    last_run_at: float = -math.inf  # when its last job ended: its warm models' age


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


@dataclass(frozen=True, slots=True)
class Waiter:
    """A job waiting for a place, as :func:`assign` sees it."""

    ticket: int  # unique; with *since*, the arrival order
    needs: tuple[str, ...]  # its model files: also the set that is warm or not
    since: float  # when it began to wait for a place
    own: str | None = None  # only this server may take it (its copy may be there)
    held_since: float | None = None  # when it first held back for a warm server


@dataclass(frozen=True, slots=True)
class Assignment:
    chosen: dict[int, str] = field(default_factory=dict)  # ticket → server, this moment
    recheck_at: float = math.inf  # when a job holding back has waited long enough
    held: frozenset[int] = frozenset()  # tickets holding back now (free slots they let go)


def assign(waiters: Sequence[Waiter], servers: Sequence[ServerView], *, now: float) -> Assignment:
    """Which waiting jobs take which free slots now (see the module docstring).

    *waiters* in any order; they are served by (since, ticket).
    """
    free = {view.name: view.slots - view.busy for view in servers if view.healthy}
    taken = dict.fromkeys(free, 0)
    queue = sorted(waiters, key=lambda w: (w.since, w.ticket))
    chosen: dict[int, str] = {}
    held: set[int] = set()
    recheck_at = math.inf

    def load(view: ServerView) -> tuple[int, float]:
        busy = view.busy + taken[view.name]
        return (max(busy, view.queue_remaining + taken[view.name]), busy / view.slots)

    for index, waiter in enumerate(queue):
        allowed = [
            view
            for view in servers
            if view.name in free
            and not _lacks(view, waiter.needs)
            and (waiter.own is None or view.name == waiter.own)
        ]
        open_ = [view for view in allowed if free[view.name] > 0]
        if not open_:
            continue
        warm = [view for view in open_ if waiter.needs in view.warm]
        if warm:
            choice = min(warm, key=load)
        else:
            behind = queue[index + 1 :]
            claimed = {
                view.name
                for view in open_
                if any(w.needs in view.warm and w.own in (None, view.name) for w in behind)
            }
            unclaimed = [view for view in open_ if view.name not in claimed]
            # Of equally loaded servers, evict the fewest and the stalest warm models.
            choice = min(
                unclaimed or open_,
                key=lambda view: (load(view), len(view.warm), view.last_run_at),
            )
            # Hold back (bounded by one switch there) for a busy server where the models
            # are warm and which should free up sooner than a switch takes, or to leave
            # a free one to a job behind for which it is warm.
            full = [view for view in allowed if free[view.name] <= 0]
            soon = any(
                waiter.needs in view.warm and view.free_in_s <= choice.switch_s for view in full
            )
            if soon or choice.name in claimed:
                held_since = now if waiter.held_since is None else waiter.held_since
                until = held_since + choice.switch_s
                if now < until:
                    recheck_at = min(recheck_at, until)
                    held.add(waiter.ticket)
                    continue
        chosen[waiter.ticket] = choice.name
        free[choice.name] -= 1
        taken[choice.name] += 1
    return Assignment(chosen, recheck_at, frozenset(held))
