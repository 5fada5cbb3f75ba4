"""One bot process under a load of presses, from start to the last photo.

Shared by ``overhead``, ``gpu_busy`` and ``memory``: fresh fakes and a fresh database,
the bot started, users given their replies, the presses made (spread or in one burst),
then every photo awaited. What comes back is the per-job timelines, the GPU runs, and
the bot's resident memory high-water mark before the first press and after the last
photo.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from benchmarks.fakes import GpuRun, PressKey, TimedTelegram, is_preview, open_stack
from benchmarks.load import interleave, prepare_replies, press_all, press_spread, user_ids
from benchmarks.process import (
    BOT_COMMAND,
    BotProcess,
    bot_environment,
    read_status_kb,
    running_bot,
)
from benchmarks.timeline import JobTimeline, build_timelines, read_prompt_ids

__all__ = ["LoadShape", "PressLoadResult", "run_press_load"]

LOAD_TIMEOUT_S: Final = 180.0  # the slowest variant (1 s polling, 100 jobs) takes about 60 s
SETTLE_S: Final = 0.5  # after the replies, before the first press or memory reading


@dataclass(frozen=True, slots=True)
class LoadShape:
    """Who presses how often: *users* × *presses_per_user*, one every *interval_s*
    (0: all in one burst), on a GPU that takes *run_s* per picture of *image_bytes*."""

    users: int
    presses_per_user: int
    interval_s: float
    run_s: float
    concurrency: int = 2
    image_bytes: int = 0
    parallel: int = 1  # prompts the fake ComfyUI draws at once (GPUs)
    steps: int = 4  # progress steps per picture
    extra_env: tuple[tuple[str, str], ...] = ()  # more settings for the bot
    linger_s: float = 0.0  # after the last photo, before the stop (the status deletes)
    preview_method: str = "none"  # the fake ComfyUI's --preview-method

    @property
    def presses(self) -> int:
        return self.users * self.presses_per_user


@dataclass(frozen=True, slots=True)
class PressLoadResult:
    timelines: list[JobTimeline]
    runs: list[GpuRun]
    first_press_at: float
    last_photo_at: float
    idle_hwm_kb: int
    peak_hwm_kb: int
    smallest_photo_bytes: int  # as uploaded to the fake Bot API
    log_problems: int  # the bot's WARNING/ERROR log lines, +1 for a non-zero exit
    calls: list[tuple[float, str]]  # (when, method) of every Bot API call but getUpdates
    first_previews: dict[PressKey, float]  # press → the forming picture first shown, s
    presses_to_photos: dict[PressKey, float]  # press → its photo, s


async def run_press_load(
    shape: LoadShape, *, command: Sequence[str] = BOT_COMMAND
) -> PressLoadResult:
    """Run *shape* against one fresh bot process started with *command*.

    Raises:
        trio.TooSlowError: not every photo arrived within ``LOAD_TIMEOUT_S``.
        benchmarks.timeline.Mismatch: a press ended without a photo.
    """
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        async with open_stack(
            run_s=shape.run_s,
            image_bytes=shape.image_bytes,
            parallel=shape.parallel,
            steps=shape.steps,
        ) as stack:
            stack.comfy.preview_method = shape.preview_method
            env = bot_environment(
                stack,
                Path(tmp),
                COMFYUI_CONCURRENCY=str(shape.concurrency),
                FREE_IMAGES=str(shape.presses_per_user),
                IMAGE_QUEUE_SIZE=str(shape.presses + 10),
                **dict(shape.extra_env),
            )
            async with running_bot(stack, env, command=command) as bot:
                keys = interleave(
                    await prepare_replies(
                        stack.telegram, user_ids(shape.users), per_user=shape.presses_per_user
                    )
                )
                await trio.sleep(SETTLE_S)
                idle_hwm_kb = read_status_kb(bot.process.pid, "VmHWM")
                await _press_and_wait(bot, stack.telegram, keys, shape)
                await trio.sleep(shape.linger_s)
                peak_hwm_kb = read_status_kb(bot.process.pid, "VmHWM")
            _, presses = stack.telegram.update_times()
            photos = stack.telegram.photos()
            first_previews = stack.telegram.first_previews()
            timelines = build_timelines(
                presses, photos, stack.comfy.runs, read_prompt_ids(bot.database)
            )
    return PressLoadResult(
        timelines,
        list(stack.comfy.runs),
        first_press_at=min(presses.values()),
        last_photo_at=max(photos.values()),
        idle_hwm_kb=idle_hwm_kb,
        peak_hwm_kb=peak_hwm_kb,
        smallest_photo_bytes=min(
            len(r.content or b"")
            for r in stack.telegram.fake.sent
            if r.kind == "photo" and not is_preview(r)
        ),
        log_problems=bot.problems(),
        calls=[(r.at, r.method) for r in stack.telegram.fake.requests if r.method != "getUpdates"],
        first_previews={key: at - presses[key] for key, at in first_previews.items()},
        presses_to_photos={key: photos[key] - at for key, at in presses.items() if key in photos},
    )


async def _press_and_wait(
    bot: BotProcess, telegram: TimedTelegram, keys: list[PressKey], shape: LoadShape
) -> None:
    try:
        with trio.fail_after(LOAD_TIMEOUT_S):
            if shape.interval_s > 0:
                await press_spread(telegram, keys, interval_s=shape.interval_s)
            else:
                press_all(telegram, keys)
            await telegram.wait_total("photo", len(keys))
    except trio.TooSlowError:
        raise trio.TooSlowError(
            f"{len(keys)} photos not all sent within {LOAD_TIMEOUT_S:g} s; bot output:\n"
            + bot.tail()
        ) from None
