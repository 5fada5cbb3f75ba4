"""Live previews: what the forming picture costs the chat, and when the user first sees it.

One load, run against the real ``python -m bot`` process, ``ROUNDS`` times over three
variants in turn: a fake ComfyUI started without previews (the baseline, text progress
only); the same fake started with ``--preview-method latent2rgb``, sending a ~25-31 KB
JPEG frame on ``/ws`` at every step (transcript sizes), to a bot with
``COMFYUI_PREVIEWS=off`` (frames read and dropped); and to a bot showing them. ``USERS``
users press once each, one press every ``INTERVAL_S``, on one GPU drawing ``RUN_S`` per
picture in ``STEPS`` steps (a queue builds up slowly).
Figures: p50 press→photo overhead (``benchmarks.timeline``: the bot's own time, without
the GPU and the queue), press→first preview and press→photo, and the Bot API calls per
picture by method (start-up calls left out).

    .venv/bin/python -m benchmarks.previews
"""

from __future__ import annotations

from collections import Counter
from typing import Final

import trio

from benchmarks.press_load import LoadShape, PressLoadResult, run_press_load
from benchmarks.report import Report, machine_line, percentile, print_report

__all__ = ["measure"]

RUN_S: Final = 4.0
STEPS: Final = 8
USERS: Final = 12
INTERVAL_S: Final = 3.0
ROUNDS: Final = 2
START_UP: Final = frozenset(
    {"getMe", "getWebhookInfo", "setMyCommands", "setMyDescription", "setMyShortDescription"}
)
# Previews must not slow the picture itself: frames are read one at a time and only the
# latest is kept, uploads go last in the send budget.
TARGET_OVERHEAD_MS: Final = 1.0
# A 4 s picture, a preview at most every 2 s: two uploads at most.
MAX_PREVIEWS_PER_PICTURE: Final = 2.0


def shape(preview_method: str, *, shown: bool = True) -> LoadShape:
    return LoadShape(
        users=USERS,
        presses_per_user=1,
        interval_s=INTERVAL_S,
        run_s=RUN_S,
        steps=STEPS,
        linger_s=2.0,
        preview_method=preview_method,
        extra_env=() if shown else (("COMFYUI_PREVIEWS", "off"),),
    )


def _calls(results: list[PressLoadResult], presses: int) -> dict[str, float]:
    counts = Counter(
        method for result in results for _, method in result.calls if method not in START_UP
    )
    return {method: n / presses for method, n in sorted(counts.items())}


async def measure() -> Report:
    report = Report(
        f"previews: {USERS} presses × {ROUNDS} rounds, one GPU,"
        f" {RUN_S:g} s pictures in {STEPS} steps"
    )
    variants = (
        ("no previews", shape("none")),
        ("frames, not shown", shape("latent2rgb", shown=False)),
        ("previews", shape("latent2rgb")),
    )
    results: dict[str, list[PressLoadResult]] = {name: [] for name, _ in variants}
    for _ in range(ROUNDS):  # alternated, so that a noisy minute hurts all alike
        for name, load in variants:
            results[name].append(await run_press_load(load))
    p50: dict[str, float] = {}
    calls: dict[str, float] = {}
    for name, _ in variants:
        runs = results[name]
        timelines = [t for result in runs for t in result.timelines]
        overheads = [t.overhead_s * 1000 for t in timelines]
        p50[name] = report.add(f"p50 overhead, {name}", percentile(overheads, 50), "ms").value
        report.add(f"p99 overhead, {name}", percentile(overheads, 99), "ms")
        parts = {
            "dispatch": [t.dispatch_s for t in timelines],
            "delivery until GET /view": [t.notify_s for t in timelines],
            "delivery": [t.delivery_s for t in timelines],
        }
        for part, values in parts.items():
            report.add(f"  p50 {part}, {name}", percentile(values, 50) * 1000, "ms")
        to_photo = [s for result in runs for s in result.presses_to_photos.values()]
        report.add(f"  p50 press → photo, {name}", percentile(to_photo, 50), "s")
        to_preview = [s for result in runs for s in result.first_previews.values()]
        if to_preview:
            report.add(f"  p50 press → first preview, {name}", percentile(to_preview, 50), "s")
            shown = 100 * len(to_preview) / len(to_photo)
            report.add(f"  presses that saw a preview, {name}", shown, "%")
        by_method = _calls(runs, USERS * ROUNDS)
        calls[name] = report.add(
            f"Bot API calls per picture, {name}", sum(by_method.values()), ""
        ).value
        for method, per_picture in by_method.items():
            report.add(f"  {method}, {name}", per_picture, "")
        problems = sum(result.log_problems for result in runs)
        if problems:
            report.notes.append(f"{name}: {problems} WARNING/ERROR lines in the log")
    frames = report.add(
        "p50 overhead added by the frames alone",
        p50["frames, not shown"] - p50["no previews"],
        "ms",
    )
    report.check(frames, f"≤ {TARGET_OVERHEAD_MS:g} ms", passed=frames.value <= TARGET_OVERHEAD_MS)
    added = report.add("p50 overhead added by previews", p50["previews"] - p50["no previews"], "ms")
    report.check(added, f"≤ {TARGET_OVERHEAD_MS:g} ms", passed=added.value <= TARGET_OVERHEAD_MS)
    extra = report.add(
        "calls per picture added by previews", calls["previews"] - calls["no previews"], ""
    )
    report.check(
        extra, f"≤ {MAX_PREVIEWS_PER_PICTURE:g}", passed=extra.value <= MAX_PREVIEWS_PER_PICTURE
    )
    return report


def main() -> None:
    print(machine_line())
    print_report(trio.run(measure))


if __name__ == "__main__":
    main()
