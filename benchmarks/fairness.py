"""Fairness: checkouts and an innocent user's /help while a group is refused or a user floods.

One real bot process per scenario, on loopback. In each, a buyer checks out and one of
``ASKERS`` innocent users asks ``/help``, a round every ``EVERY_S``; what changes is what
happens beside them:

* **idle** (the baseline, in the same run): nothing else;
* **group 429 storm**: ``GROUP_MEMBERS`` members of a group write nonstop and Telegram
  answers every send to that group with 429 (``retry_after`` ``GROUP_RETRY_AFTER_S``);
* **press flood**: one user presses the button under a reply ``FLOOD_PRESSES`` times in
  one burst, then again every few seconds.

A checkout's latency is from the ``getUpdates`` answer that hands the query out to
``answerPreCheckoutQuery`` reaching the Bot API; a /help's, to its reply reaching it.
Targets: checkout p99 ≤ 1 s in both (Telegram allows 10 s), /help p99 ≤ 1.5× idle.

    .venv/bin/python -m benchmarks.fairness
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import httpx
import trio

from benchmarks.fakes import Stack, TimedTelegram, open_stack
from benchmarks.load import prepare_replies, press, user_ids
from benchmarks.process import bot_environment, running_bot
from benchmarks.report import Report, machine_line, percentile, print_report
from bot.payments.offers import PackPayload, encode_payload
from tests.fakes.telegram import too_many_requests

__all__ = ["measure"]

ROUNDS: Final = 40
WARMUP: Final = 3  # first rounds, not counted: the process's first calls are slower
# A round a second: three askers take turns, so each writes every 3 s, inside both their
# chat's send budget and USER_MESSAGES_PER_MINUTE (an asker must not wait for himself).
EVERY_S: Final = 1.0
ASKERS: Final = 3
GROUP: Final = -1_009_000_001
GROUP_MEMBERS: Final = 30
GROUP_RETRY_AFTER_S: Final = 5
FLOOD_PRESSES: Final = 300
PACK: Final = (10, 50)
TARGET_CHECKOUT_P99_MS: Final = 1000.0
TARGET_HELP_RATIO: Final = 1.5


def _refuse_the_group(method: str, request: httpx.Request) -> httpx.Response | None:
    if not method.startswith("send"):
        return None
    content = request.content or b"{}"
    try:
        chat = json.loads(content).get("chat_id")
    except ValueError:  # multipart (a photo): not the group's
        return None
    if chat != GROUP:
        return None
    return too_many_requests(GROUP_RETRY_AFTER_S)


async def _group_talks(telegram: TimedTelegram, stop: trio.Event) -> None:
    members = user_ids(GROUP_MEMBERS, offset=10_000)
    telegram.fake.interpose = _refuse_the_group
    while not stop.is_set():
        for member in members:
            telegram.fake.user_says("всем привет", user_id=member, chat_id=GROUP, chat_type="group")
        await trio.sleep(0.5)


async def _flood_presses(telegram: TimedTelegram, stop: trio.Event) -> None:
    flooder = user_ids(1, offset=20_000)[0]
    [[key]] = await prepare_replies(telegram, [flooder], per_user=1)
    while not stop.is_set():
        for _ in range(FLOOD_PRESSES):
            press(telegram, key)
        await trio.sleep(3.0)


async def _rounds(
    telegram: TimedTelegram, buyer: int, askers: list[int]
) -> tuple[list[float], list[float]]:
    """Checkouts and /help side by side, one round every ``EVERY_S``; latencies in ms."""
    payload = encode_payload(PackPayload(*PACK, buyer))
    checkouts: list[tuple[str, int]] = []
    helps: list[tuple[int, int, int]] = []  # asker, update id, their replies before it
    start = trio.current_time()
    for index in range(ROUNDS):
        await trio.sleep_until(start + index * EVERY_S)
        query = telegram.fake.user_checks_out(payload, PACK[1], user_id=buyer)
        checkouts.append((query, telegram.fake.pending_updates[-1]["update_id"]))
        asker = askers[index % len(askers)]
        count = len([r for r in telegram.sent_by_chat[asker] if r.kind == "message"])
        helps.append((asker, telegram.fake.user_says("/help", user_id=asker), count))
        await telegram.fake.wait_for(lambda q=query: q in telegram.fake.checkout_answers)
        await telegram.wait_sent(asker, count + 1)
    handed_out, _ = telegram.update_times()
    answers = telegram.fake.checkout_answers
    if not all(answers[q].ok for q, _ in checkouts):
        raise RuntimeError("a valid checkout was refused")
    checkout_ms = [(answers[q].at - handed_out[u]) * 1000 for q, u in checkouts]
    help_ms = [
        ([r for r in telegram.sent_by_chat[a] if r.kind == "message"][n].at - handed_out[u]) * 1000
        for a, u, n in helps
    ]
    return checkout_ms[WARMUP:], help_ms[WARMUP:]


Beside = Callable[[TimedTelegram, trio.Event], Awaitable[None]] | None


async def _run(beside: Beside) -> tuple[list[float], list[float], int]:
    buyer, *askers = user_ids(1 + ASKERS, offset=30_000)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        stack: Stack
        async with open_stack(run_s=0.2) as stack:
            env = bot_environment(stack, Path(tmp), STARS_PACKS=f"{PACK[0]}:{PACK[1]}")
            async with running_bot(stack, env) as bot:
                stop = trio.Event()
                async with trio.open_nursery() as nursery:
                    if beside is not None:
                        nursery.start_soon(beside, stack.telegram, stop)
                        await trio.sleep(3.0)  # in full swing first
                    checkout_ms, help_ms = await _rounds(stack.telegram, buyer, askers)
                    stop.set()
                    nursery.cancel_scope.cancel()
    return checkout_ms, help_ms, bot.problems()


async def measure() -> Report:
    """Checkout and /help p50/p99: idle, in a group's 429 storm, beside a press flood."""
    report = Report("fairness: checkouts and /help beside a group's 429s and a press flood")
    idle_checkouts, idle_helps, _ = await _run(None)
    report.add("p99 checkout answer, idle", percentile(idle_checkouts, 99), "ms")
    idle_help = report.add("p99 /help reply, idle", percentile(idle_helps, 99), "ms").value
    for name, beside in (("group 429 storm", _group_talks), ("press flood", _flood_presses)):
        checkouts, helps, problems = await _run(beside)
        report.add(f"p50 checkout answer, {name}", percentile(checkouts, 50), "ms")
        p99 = report.add(f"p99 checkout answer, {name}", percentile(checkouts, 99), "ms")
        report.check(
            p99, f"≤ {TARGET_CHECKOUT_P99_MS:g} ms", passed=p99.value <= TARGET_CHECKOUT_P99_MS
        )
        report.add(f"p99 /help reply, {name}", percentile(helps, 99), "ms")
        ratio = report.add(f"  /help p99 over idle, {name}", percentile(helps, 99) / idle_help, "×")
        report.check(ratio, f"≤ {TARGET_HELP_RATIO:g}×", passed=ratio.value <= TARGET_HELP_RATIO)
        if problems:
            report.notes.append(f"{name}: {problems} WARNING/ERROR lines in the log")
    return report


def main() -> None:
    print(machine_line())
    print_report(trio.run(measure))


if __name__ == "__main__":
    main()
