"""Chat under load: do queued pictures slow down the persona's text replies?

The bot talks to an instant OpenAI-compatible LLM on 127.0.0.1 (``LLM_BASE_URL``), so
a reply's latency is the bot's own work: from the user's message reaching the bot (the
``getUpdates`` answer that hands it out) to the reply reaching the Bot API
(``sendMessage``). 50 users chat for ``WINDOW_S``, each starting at a random moment
of the first ``THINK_S[1]`` and writing again ``THINK_S`` (uniform) after their previous
reply arrived (about 50 messages a second in all). Loaded run: first 20 other
users press 100 replies in one burst (``IMAGE_QUEUE_SIZE`` 110, a 0.2 s GPU: 20 s of
drawing), and the window starts once every press was answered, so pictures are being
made, delivered and queued during the whole window. Baseline in the same run: the same
chat with no pictures. Figures: p50/p99 of both, and loaded p99 over idle p99.

    .venv/bin/python -m benchmarks.chat_load
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from benchmarks.fakes import Stack, TimedTelegram, open_stack
from benchmarks.load import prepare_replies, press_all, user_ids
from benchmarks.process import WIDE_SEND_BUDGET, bot_environment, running_bot
from benchmarks.report import Report, machine_line, percentile, print_report

__all__ = ["measure"]

CHAT_USERS: Final = 50
IMAGE_USERS: Final = 20
PRESSES_PER_IMAGE_USER: Final = 5
RUN_S: Final = 0.2
WINDOW_S: Final = 12.0
THINK_S: Final = (0.5, 1.5)
SEED: Final = 20240611
ANSWER_TIMEOUT_S: Final = 30.0
REPLY_TIMEOUT_S: Final = 30.0
TARGET_RATIO: Final = 1.5


@dataclass(frozen=True, slots=True)
class ChatRun:
    latencies_ms: list[float]
    photos_in_window: int
    photos_queued: int
    log_problems: int


async def _chatter(
    telegram: TimedTelegram,
    user: int,
    deadline: float,
    rng: random.Random,
    out: list[tuple[int, float]],
) -> None:
    """Write, wait for the reply, think, until *deadline*; ``(update_id, reply at)`` pairs."""
    count = len([r for r in telegram.sent_by_chat[user] if r.kind == "message"])
    await trio.sleep(rng.uniform(0, THINK_S[1]))  # users do not all start at the same instant
    while trio.current_time() < deadline:
        update_id = telegram.fake.user_says("а что было дальше?", user_id=user)
        count += 1
        with trio.fail_after(REPLY_TIMEOUT_S):
            reply = await telegram.wait_sent(user, count)
        out.append((update_id, reply.at))
        await trio.sleep(rng.uniform(*THINK_S))


async def _chat_window(telegram: TimedTelegram, users: list[int]) -> list[float]:
    rng = random.Random(SEED)
    pairs: list[tuple[int, float]] = []
    deadline = trio.current_time() + WINDOW_S
    async with trio.open_nursery() as nursery:
        for user in users:
            nursery.start_soon(
                _chatter, telegram, user, deadline, random.Random(rng.random()), pairs
            )
    handed_out, _ = telegram.update_times()
    return [(at - handed_out[update_id]) * 1000 for update_id, at in pairs]


async def _queue_pictures(stack: Stack, image_users: list[int]) -> int:
    """Press every reply of *image_users* at once; return when all presses are answered."""
    replies = await prepare_replies(stack.telegram, image_users, per_user=PRESSES_PER_IMAGE_USER)
    keys = [key for user_keys in replies for key in user_keys]
    press_all(stack.telegram, keys)
    answers = stack.telegram.fake.callback_answers
    await stack.telegram.fake.wait_for(
        lambda: len(answers) >= len(keys), timeout_s=ANSWER_TIMEOUT_S
    )
    return len(keys)


async def _run(*, with_pictures: bool) -> ChatRun:
    chat_users = user_ids(CHAT_USERS)
    image_users = user_ids(IMAGE_USERS, offset=CHAT_USERS)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        async with open_stack(run_s=RUN_S) as stack:
            env = bot_environment(
                stack,
                Path(tmp),
                llm=True,
                COMFYUI_CONCURRENCY="2",
                FREE_IMAGES=str(PRESSES_PER_IMAGE_USER),
                IMAGE_QUEUE_SIZE=str(IMAGE_USERS * PRESSES_PER_IMAGE_USER + 10),
                TELEGRAM_MESSAGES_PER_SECOND=WIDE_SEND_BUDGET,
            )
            async with running_bot(stack, env) as bot:
                await prepare_replies(stack.telegram, chat_users, per_user=1)  # warm-up
                queued = await _queue_pictures(stack, image_users) if with_pictures else 0
                photos_before = len(stack.telegram.photos())
                latencies = await _chat_window(stack.telegram, chat_users)
                photos = len(stack.telegram.photos()) - photos_before
    return ChatRun(latencies, photos, queued, bot.problems())


async def measure() -> Report:
    """Reply p50/p99 idle and with 100 pictures queued; the p99 ratio."""
    report = Report(f"chat under load: {CHAT_USERS} users for {WINDOW_S:g} s, instant LLM")
    idle = await _run(with_pictures=False)
    loaded = await _run(with_pictures=True)
    report.add("replies measured, no pictures", len(idle.latencies_ms), "")
    report.add("p50 reply, no pictures", percentile(idle.latencies_ms, 50), "ms")
    idle_p99 = report.add("p99 reply, no pictures", percentile(idle.latencies_ms, 99), "ms")
    report.add(
        f"replies measured, {loaded.photos_queued} pictures queued", len(loaded.latencies_ms), ""
    )
    report.add("p50 reply, pictures queued", percentile(loaded.latencies_ms, 50), "ms")
    loaded_p99 = report.add("p99 reply, pictures queued", percentile(loaded.latencies_ms, 99), "ms")
    report.add("photos delivered during the window", loaded.photos_in_window, "")
    ratio = report.add("p99 ratio loaded / idle", loaded_p99.value / idle_p99.value, "×")
    report.check(ratio, f"≤ {TARGET_RATIO:g}×", passed=ratio.value <= TARGET_RATIO)
    for name, run in (("no pictures", idle), ("pictures queued", loaded)):
        if run.log_problems:
            report.notes.append(f"{name}: {run.log_problems} WARNING/ERROR lines in the log")
    if loaded.photos_in_window >= loaded.photos_queued:
        report.notes.append("the picture queue ran dry before the window ended")
    return report


def main() -> None:
    print(machine_line())
    print_report(trio.run(measure))


if __name__ == "__main__":
    main()
