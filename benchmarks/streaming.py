"""Streaming replies: how soon a user sees the persona's words, with drafts and without.

The whole bot runs in process (``tests.harness.start_bot``) against the fake Bot API and
a fake OpenAI-compatible LLM that writes ``TOKENS`` pieces at ``TOKENS_PER_S`` after
``FIRST_TOKEN_S`` (a typical hosted model: a few hundred milliseconds to the first token,
then some tens of tokens a second). ``USERS`` users write at once in private chats. The
same run is made against an LLM that answers only when done (no stream), the baseline.
Figures, in trio's virtual time (properties of the flow, the same on any machine): the
p50 and p99 time from the message to the first visible reply text (the first draft, or
the reply itself), and to the complete reply; Bot API drafts per reply.

    .venv/bin/python -m benchmarks.streaming
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import httpx
import trio
from trio.testing import MockClock

from benchmarks.report import Report, machine_line, percentile, print_report
from tests.fakes.telegram import FakeTelegram
from tests.harness import start_bot

USERS: Final = 20
TOKENS: Final = 120
TOKENS_PER_S: Final = 30.0
FIRST_TOKEN_S: Final = 0.4


async def _pieces() -> AsyncIterator[bytes]:
    await trio.sleep(FIRST_TOKEN_S)
    for n in range(TOKENS):
        if n:
            await trio.sleep(1 / TOKENS_PER_S)
        chunk = {"choices": [{"delta": {"content": f"word{n} "}}]}
        yield f"data: {json.dumps(chunk)}\n\n".encode()
    yield b"data: [DONE]\n\n"


async def _llm(request: httpx.Request, *, streams: bool) -> httpx.Response:
    if streams and json.loads(request.content).get("stream"):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=_pieces())
    await trio.sleep(FIRST_TOKEN_S + (TOKENS - 1) / TOKENS_PER_S)  # the same work, at once
    text = " ".join(f"word{n}" for n in range(TOKENS))
    choice = {"index": 0, "message": {"role": "assistant", "content": text}}
    return httpx.Response(200, json={"choices": [choice]})


async def _run(streams: bool) -> tuple[list[float], list[float], float]:
    telegram = FakeTelegram()
    users = [5000 + n for n in range(USERS)]

    async def llm(request: httpx.Request) -> httpx.Response:
        return await _llm(request, streams=streams)

    with tempfile.TemporaryDirectory() as folder:
        async with trio.open_nursery() as nursery:
            bot = await start_bot(
                nursery, Path(folder), telegram, llm=llm, user_messages_per_minute=0,
                llm_replies_per_user_per_minute=0,
            )  # fmt: skip
            asked = trio.current_time()
            for user in users:
                telegram.user_says("привет", user_id=user)
            await telegram.wait_for(
                lambda: len({s.chat_id for s in telegram.sent}) == USERS, timeout_s=600
            )
            await bot.stop()
            nursery.cancel_scope.cancel()
    first, full = [], []
    for user in users:
        reply = next(s for s in telegram.sent if s.chat_id == user)
        drafts = [d.at for d in telegram.drafts if d.chat_id == user]
        first.append(min([reply.at, *drafts]) - asked)
        full.append(reply.at - asked)
    return first, full, len(telegram.drafts) / USERS


def measure_in_virtual_time() -> Report:
    report = Report("streaming replies: first visible words, drafts against a reply at once")
    clock = MockClock(autojump_threshold=0)
    first, full, drafts = trio.run(_run, True, clock=clock)
    base_first, base_full, _ = trio.run(_run, False, clock=MockClock(autojump_threshold=0))
    p50 = report.add("p50 message → first visible words, streamed", percentile(first, 50), "s")
    report.add("p99 message → first visible words, streamed", percentile(first, 99), "s")
    report.add("p50 message → first visible words, at once", percentile(base_first, 50), "s")
    report.add("p50 message → complete reply, streamed", percentile(full, 50), "s")
    report.add("p50 message → complete reply, at once", percentile(base_full, 50), "s")
    report.add("drafts per reply", drafts, "")
    ratio = p50.value / percentile(base_first, 50)
    report.add("first words, streamed / at once", ratio, "×")
    report.check(p50, "≤ 1 s (the first token's time and a draft)", passed=p50.value <= 1.0)
    report.notes.append(
        f"{USERS} users at once; the LLM: first token after {FIRST_TOKEN_S:g} s, then"
        f" {TOKENS_PER_S:g} a second, {TOKENS} in all; in trio's virtual time"
    )
    report.notes.append(machine_line())
    return report


async def measure() -> Report:
    """For run_all: the virtual-time runs need trio loops of their own, so a thread."""
    return await trio.to_thread.run_sync(measure_in_virtual_time)


def main() -> None:
    print_report(measure_in_virtual_time())


if __name__ == "__main__":
    main()
