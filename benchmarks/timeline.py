"""Where the time of each picture went: press → GPU → photo, from the fakes' records.

Matching: a press is keyed by the reply it was made under (chat, message). The bot's
own ``jobs`` table (read after the process stopped) maps that key to the job's
``prompt_id``, which the bot chose and sent to ComfyUI; the fake recorded the GPU run
under that ``prompt_id``; the photo is keyed by the message it replies to.

For one job, with ``free`` the moment the GPU finished the job before it:

* dispatch = GPU start − max(press reached the bot, previous job's ``free``):
  how long the GPU could have been drawing this picture and was not;
* delivery = photo reached the Bot API − GPU finished the picture; its first part,
  *notify*, ends when the bot asks for the picture (GET /view reaches the fake);
* overhead = dispatch + delivery. GPU time and waiting behind other jobs are left out.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from benchmarks.fakes import GpuRun, PressKey

__all__ = ["JobTimeline", "Mismatch", "build_timelines", "idle_gaps", "read_prompt_ids"]


class Mismatch(Exception):
    """A press, job, GPU run or photo has no partner; the run cannot be trusted."""


@dataclass(frozen=True, slots=True)
class JobTimeline:
    key: PressKey
    press_at: float
    gpu_start: float
    gpu_done: float
    photo_at: float
    dispatch_s: float
    delivery_s: float
    notify_s: float  # part of delivery: picture saved → the bot asks for it (GET /view)

    @property
    def overhead_s(self) -> float:
        return self.dispatch_s + self.delivery_s


def read_prompt_ids(database: Path) -> dict[PressKey, str]:
    """``(chat_id, message_id) → prompt_id`` of every job in the bot's database."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT chat_id, message_id, prompt_id FROM jobs").fetchall()
    return {(int(chat), int(message)): str(prompt) for chat, message, prompt in rows}


def build_timelines(
    presses: dict[PressKey, float],
    photos: dict[PressKey, float],
    runs: list[GpuRun],
    prompt_ids: dict[PressKey, str],
) -> list[JobTimeline]:
    """One timeline per press, in GPU order.

    Raises:
        Mismatch: a press without a job, GPU run or photo (a failed picture).
    """
    free_before: dict[str, float] = {}
    previous_free = -math.inf
    for earlier in runs:
        free_before[earlier.prompt_id] = previous_free
        previous_free = earlier.free
    by_prompt = {earlier.prompt_id: earlier for earlier in runs}
    timelines: list[JobTimeline] = []
    for key, press_at in presses.items():
        prompt_id = prompt_ids.get(key, "")
        run = by_prompt.get(prompt_id)
        photo_at = photos.get(key)
        if run is None or photo_at is None:
            raise Mismatch(f"press {key!r}: job {prompt_id!r}, GPU run {run!r}, photo {photo_at!r}")
        ready = max(press_at, free_before[run.prompt_id])
        timelines.append(
            JobTimeline(
                key,
                press_at,
                run.start,
                run.done,
                photo_at,
                dispatch_s=run.start - ready,
                delivery_s=photo_at - run.done,
                notify_s=run.fetched - run.done,
            )
        )
    return sorted(timelines, key=lambda t: t.gpu_start)


def idle_gaps(runs: list[GpuRun]) -> list[float]:
    """Seconds the GPU sat free between consecutive runs (``start`` minus the previous ``free``)."""
    return [after.start - before.free for before, after in itertools.pairwise(runs)]
