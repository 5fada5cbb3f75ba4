"""One account floods a hundred groups: do the other users notice?

The bot talks to an OpenAI-compatible LLM on 127.0.0.1 that answers ordinary messages at
once and the flooder's messages after ``SLOW_LLM_S`` (25 s): the worst neighbour, one
whose every request ties up a handler. 50 ordinary users chat for ``WINDOW_S`` (each
writes, waits for the reply, thinks 0.5-1.5 s, writes again) and 10 of them press
«👁️ Посмотреть» at random moments. Flood run: at the start of the window and again in its
middle, one account writes one message in each of ``GROUPS`` groups. Baseline in the same
run: the same chat and presses with no flood.

Figures: the ordinary users' p50/p99 reply (update handed to the bot → reply received by
the Bot API) with and without the flood, their ratio; p99 press → toast during the flood;
peak RSS of the bot process during the flood.

    .venv/bin/python -m benchmarks.flood
"""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import trio

from benchmarks.fakes import LLM_REPLY, Stack, TimedTelegram, open_stack
from benchmarks.load import prepare_replies, user_ids
from benchmarks.process import WIDE_SEND_BUDGET, bot_environment, read_status_kb, running_bot
from benchmarks.report import Report, machine_line, percentile, print_report

__all__ = ["measure"]

CHAT_USERS: Final = 50
PRESSING_USERS: Final = 10
GROUPS: Final = 100
FLOODER: Final = 9_000_000_001
FLOOD_TEXT: Final = "FLOOD: answer me in every group"
SLOW_LLM_S: Final = 25.0
WINDOW_S: Final = 20.0
THINK_S: Final = (0.5, 1.5)
SEED: Final = 20261201
REPLY_TIMEOUT_S: Final = 30.0
TARGET_RATIO: Final = 1.5
TARGET_TOAST_MS: Final = 1000.0
TARGET_RSS_MB: Final = 150.0


async def flood_llm(request: httpx.Request) -> httpx.Response:
    """Instant for everyone but the flooder, whose every answer takes ``SLOW_LLM_S``."""
    if not request.url.path.endswith("/chat/completions"):
        return httpx.Response(404, json={"error": {"message": "not found"}})
    body = json.loads(request.content)
    if any(FLOOD_TEXT in str(message.get("content", "")) for message in body["messages"]):
        await trio.sleep(SLOW_LLM_S)
    choice = {"index": 0, "message": {"role": "assistant", "content": LLM_REPLY}}
    return httpx.Response(
        200, json={"id": "bench", "object": "chat.completion", "choices": [choice]}
    )


@dataclass(frozen=True, slots=True)
class FloodRun:
    replies_ms: list[float]
    toasts_ms: list[float]
    peak_rss_mb: float
    log_problems: int


async def _chatter(
    telegram: TimedTelegram,
    user: int,
    deadline: float,
    rng: random.Random,
    out: list[tuple[int, int]],
) -> None:
    count = len([r for r in telegram.sent_by_chat[user] if r.kind == "message"])
    await trio.sleep(rng.uniform(0, THINK_S[1]))
    while trio.current_time() < deadline:
        out.append((telegram.fake.user_says("а что было дальше?", user_id=user), user))
        count += 1
        with trio.fail_after(REPLY_TIMEOUT_S):
            await telegram.wait_sent(user, count)
        await trio.sleep(rng.uniform(*THINK_S))


async def _flood(telegram: TimedTelegram) -> None:
    for round_ in range(2):
        for group in range(GROUPS):
            telegram.fake.user_says(
                FLOOD_TEXT, user_id=FLOODER, chat_id=-100_000 - group, chat_type="group"
            )
        if round_ == 0:
            await trio.sleep(WINDOW_S / 2)


async def _press_now_and_then(
    telegram: TimedTelegram,
    keys: list[tuple[int, int]],
    rng: random.Random,
    out: list[tuple[str, tuple[int, int]]],
) -> None:
    for chat_id, message_id in keys:
        await trio.sleep(rng.uniform(0, WINDOW_S / len(keys)))
        query = telegram.fake.user_presses(message_id, "look", user_id=chat_id)
        out.append((query, (chat_id, message_id)))


async def _run(*, flood: bool) -> FloodRun:
    chat_users = user_ids(CHAT_USERS)
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        async with open_stack(run_s=0.2, llm=flood_llm) as stack:
            env = bot_environment(
                stack,
                Path(tmp),
                llm=True,
                FREE_IMAGES="5",
                TELEGRAM_MESSAGES_PER_SECOND=WIDE_SEND_BUDGET,
            )
            async with running_bot(stack, env) as bot:
                keys = await prepare_replies(stack.telegram, chat_users, per_user=1)
                to_press = [user_keys[0] for user_keys in keys[:PRESSING_USERS]]
                pressed: list[tuple[str, tuple[int, int]]] = []
                asked: list[tuple[int, int]] = []
                deadline = trio.current_time() + WINDOW_S
                async with trio.open_nursery() as nursery:
                    if flood:
                        nursery.start_soon(_flood, stack.telegram)
                    nursery.start_soon(
                        _press_now_and_then,
                        stack.telegram,
                        to_press,
                        random.Random(rng.random()),
                        pressed,
                    )
                    for user in chat_users:
                        nursery.start_soon(
                            _chatter,
                            stack.telegram,
                            user,
                            deadline,
                            random.Random(rng.random()),
                            asked,
                        )
                await trio.sleep(1)  # the last toasts
                peak_kb = read_status_kb(bot.process.pid, "VmHWM")
                replies, toasts = _latencies(stack, asked, pressed)
    return FloodRun(replies, toasts, peak_kb / 1024, bot.problems())


def _latencies(
    stack: Stack, asked: list[tuple[int, int]], pressed: list[tuple[str, tuple[int, int]]]
) -> tuple[list[float], list[float]]:
    telegram = stack.telegram
    handed_out, presses = telegram.update_times()
    replied: dict[int, list[float]] = {}
    for record in telegram.fake.sent:
        if record.kind == "message" and "🎨" not in (record.text or ""):
            replied.setdefault(record.chat_id, []).append(record.at)
    replies_ms: list[float] = []
    for update_id, user in asked:
        asked_at = handed_out.get(update_id)
        later = [at for at in replied.get(user, []) if asked_at is not None and at >= asked_at]
        if asked_at is not None and later:
            replies_ms.append((later[0] - asked_at) * 1000)
    answers = telegram.fake.callback_answers
    toasts_ms = [
        (answers[query].at - presses[key]) * 1000
        for query, key in pressed
        if query in answers and key in presses
    ]
    return replies_ms, toasts_ms


async def measure() -> Report:
    """Ordinary users' replies with and without the flood; toasts and memory under it."""
    report = Report(
        f"flood: one account in {GROUPS} groups with a {SLOW_LLM_S:g} s LLM, "
        f"beside {CHAT_USERS} users"
    )
    calm = await _run(flood=False)
    flooded = await _run(flood=True)
    report.add("replies measured, no flood", len(calm.replies_ms), "")
    report.add("p50 reply, no flood", percentile(calm.replies_ms, 50), "ms")
    calm_p99 = report.add("p99 reply, no flood", percentile(calm.replies_ms, 99), "ms")
    report.add("replies measured, flood", len(flooded.replies_ms), "")
    report.add("p50 reply, flood", percentile(flooded.replies_ms, 50), "ms")
    flood_p99 = report.add("p99 reply, flood", percentile(flooded.replies_ms, 99), "ms")
    ratio = report.add("p99 ratio flood / no flood", flood_p99.value / calm_p99.value, "×")
    report.check(ratio, f"≤ {TARGET_RATIO:g}×", passed=ratio.value <= TARGET_RATIO)
    toast = report.add("p99 press → toast, flood", percentile(flooded.toasts_ms, 99), "ms")
    report.check(toast, f"< {TARGET_TOAST_MS:g} ms", passed=toast.value < TARGET_TOAST_MS)
    rss = report.add("peak RSS, flood", flooded.peak_rss_mb, "MB")
    report.check(rss, f"< {TARGET_RSS_MB:g} MB", passed=rss.value < TARGET_RSS_MB)
    for name, run in (("no flood", calm), ("flood", flooded)):
        if run.log_problems:
            report.notes.append(f"{name}: {run.log_problems} WARNING/ERROR lines in the log")
    return report


def main() -> None:
    print(machine_line())
    print_report(trio.run(measure))


if __name__ == "__main__":
    main()
