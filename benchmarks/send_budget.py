"""Telegram's send budget: Bot API calls per picture and the peak calls a second, by GPUs.

Several GPUs are emulated by one fake ComfyUI drawing N prompts at once with
``COMFYUI_CONCURRENCY=N``, N = 1, 4 and 10. Each picture takes ``RUN_S`` in ``STEPS``
progress steps; presses come from different users (one chat each), ``PRESS_RATE``
times faster than the GPUs draw (one every ``RUN_S / (PRESS_RATE × N)``), so a queue
builds up as it does when a bot is busy, ``PICTURES_PER_GPU × N`` of them. Counted:
every Bot API call the bot makes from the first press until ``LINGER_S`` after the last
photo, except ``getUpdates`` (toasts, status posts, edits and deletes, chat actions,
pictures in place or as photos). Figures: calls per picture, split by method, and the
most calls in any one second (a sliding window). The baseline is the same run at 10 GPUs
with the budget opened wide (``TELEGRAM_MESSAGES_PER_SECOND=1000``): what the bot would
send if nothing thinned it.

    .venv/bin/python -m benchmarks.send_budget
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Final

import trio

from benchmarks.press_load import LoadShape, PressLoadResult, run_press_load
from benchmarks.report import Report, machine_line, print_report

__all__ = ["GPUS", "measure", "peak_per_second"]

RUN_S: Final = 5.0
STEPS: Final = 8
PICTURES_PER_GPU: Final = 6
PRESS_RATE: Final = 1.5  # presses a second over pictures a second
LINGER_S: Final = 2.0
GPUS: Final = (1, 4, 10)
TARGET_PEAK: Final = 30
# The toast, the status post, the picture in place, and about two progress edits (a
# picture cost 6.7-8.1 calls when it came as a new photo after a deleted status message).
MAX_CALLS_PER_PICTURE: Final = 5.0
UNTHROTTLED: Final = (("TELEGRAM_MESSAGES_PER_SECOND", "1000"),)
_SHORT: Final = {
    "answerCallbackQuery": "toasts",
    "sendMessage": "posts",
    "editMessageText": "edits",
    "sendChatAction": "chat actions",
    "sendPhoto": "photos",
    "editMessageMedia": "pictures in place",
    "deleteMessage": "deletes",
}


def shape_for(gpus: int, *, extra_env: tuple[tuple[str, str], ...] = ()) -> LoadShape:
    return LoadShape(
        users=PICTURES_PER_GPU * gpus,
        presses_per_user=1,
        interval_s=RUN_S / (PRESS_RATE * gpus),
        run_s=RUN_S,
        concurrency=gpus,
        parallel=gpus,
        steps=STEPS,
        extra_env=extra_env,
        linger_s=LINGER_S,
    )


def peak_per_second(times: list[float], *, window_s: float = 1.0) -> int:
    """The most of *times* in any half-open window ``[t, t + window_s)``."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, start + window_s) - i for i, start in enumerate(ordered)),
        default=0,
    )


def _calls_after(result: PressLoadResult) -> list[tuple[float, str]]:
    return [(at, method) for at, method in result.calls if at >= result.first_press_at]


def _add_run(
    report: Report, name: str, result: PressLoadResult, pictures: int
) -> tuple[float, int]:
    calls = _calls_after(result)
    per_picture = len(calls) / pictures
    peak = peak_per_second([at for at, _ in calls])
    report.add(f"calls per picture, {name}", per_picture, "")
    report.add(f"peak calls in one second, {name}", peak, "/s")
    by_method = Counter(_SHORT.get(method, method) for _, method in calls)
    split = ", ".join(f"{kind} {count / pictures:.2f}" for kind, count in sorted(by_method.items()))
    report.notes.append(f"{name}: per picture: {split}")
    length_s = result.last_photo_at - result.first_press_at
    report.add(f"  first press → last photo, {name}", length_s, "s")
    if result.log_problems:
        report.notes.append(f"{name}: {result.log_problems} WARNING/ERROR lines in the log")
    return per_picture, peak


async def measure() -> Report:
    """Calls per picture and peak calls a second at 1, 4 and 10 GPUs, and unthrottled at 10."""
    report = Report(
        f"send budget: {RUN_S:g} s pictures ({STEPS} steps), presses {PRESS_RATE:g}× the GPUs' rate"
    )
    per_picture: dict[int, float] = {}
    peak_at_10 = 0
    for gpus in GPUS:
        shape = shape_for(gpus)
        result = await run_press_load(shape)
        per_picture[gpus], peak = _add_run(report, f"{gpus} GPU", result, shape.presses)
        if gpus == GPUS[-1]:
            peak_at_10 = peak
            peak_figure = report.figures[-2]
    shape = shape_for(GPUS[-1], extra_env=UNTHROTTLED)
    unthrottled, _ = _add_run(
        report, f"{GPUS[-1]} GPU, budget opened wide", await run_press_load(shape), shape.presses
    )
    report.add(
        f"calls per picture, unthrottled / ours at {GPUS[-1]} GPU",
        unthrottled / per_picture[GPUS[-1]],
        "×",
    )
    report.check(peak_figure, f"< {TARGET_PEAK} /s", passed=peak_at_10 < TARGET_PEAK)
    falling = report.add(
        f"calls per picture at {GPUS[-1]} GPU over at 1 GPU",
        per_picture[GPUS[-1]] / per_picture[GPUS[0]],
        "×",
    )
    # With the picture landing in its status message and no chat action for a wait, a
    # picture costs about four calls at any rate, so there is little left to thin: the
    # rule is that a busy bot never spends more per picture than an idle one.
    report.check(
        falling, "≤ 1.05× (no more calls per picture as the rate rises)",
        passed=falling.value <= 1.05,
    )  # fmt: skip
    for gpus, calls in per_picture.items():
        figure = report.figures[
            [f.name for f in report.figures].index(f"calls per picture, {gpus} GPU")
        ]
        report.check(figure, f"≤ {MAX_CALLS_PER_PICTURE}", passed=calls <= MAX_CALLS_PER_PICTURE)
    return report


def main() -> None:
    print(machine_line())
    print_report(trio.run(measure))


if __name__ == "__main__":
    main()
