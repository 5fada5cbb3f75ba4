"""Several ComfyUI servers behind one bot, in-process, under the autojump clock.

Each fake server is built from the same transcripts as the single one; the bot names
them ``comfy1.test:8188``, ``comfy2.test:8188``, ... (``tests.harness.comfy_name``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS
from bot.pictures.servers import FAILOVER_AFTER_S, WAIT_FOR_SERVER_S
from tests.fakes.comfy import DEFAULT_LORAS, FakeComfy, Outcome, PromptScript
from tests.fakes.telegram import DEFAULT_USER_ID, FakeTelegram, SentRecord
from tests.harness import Bot, comfy_name, start_bot, threads_run_in_real_time
from tests.rows import balance

USER = DEFAULT_USER_ID
PERSONA_LORA = "alice_v1.safetensors"  # the default persona's
ALL_LORAS = tuple(dict.fromkeys([*DEFAULT_LORAS, *load_personas(SHIPPED_PERSONAS).lora_files()]))
CONNECTED_S = 3.0  # every follower connected and every model list read


@asynccontextmanager
async def fake_servers(*loras: tuple[str, ...], run_s: float = 3.0) -> AsyncIterator[list[Any]]:
    """One started fake per argument, each with those LoRA files."""
    async with trio.open_nursery() as nursery:
        fakes: list[FakeComfy] = []
        for files in loras:
            fake = FakeComfy(loras=files)
            fake.default_script = PromptScript(run_s=run_s, steps=5)
            await nursery.start(fake.run)
            fakes.append(fake)
        yield fakes
        nursery.cancel_scope.cancel()


def photos(tg: FakeTelegram, chat_id: int | None = None) -> list[SentRecord]:
    return [
        s
        for s in tg.sent
        if s.kind in ("photo", "document") and (chat_id is None or s.chat_id == chat_id)
    ]


async def press(tg: FakeTelegram, user_id: int = USER) -> SentRecord:
    count = len([s for s in tg.sent if s.chat_id == user_id])
    tg.user_says("привет", user_id=user_id)
    await tg.wait_for(lambda: len([s for s in tg.sent if s.chat_id == user_id]) > count)
    reply = [s for s in tg.sent if s.chat_id == user_id][-1]
    query = tg.user_presses(reply.message_id, "look", user_id=user_id)
    await tg.wait_for(lambda: query in tg.callback_answers)
    return reply


def job_rows(bot: Bot) -> list[dict[str, Any]]:
    with bot.store() as store:
        return list(store.db.query("SELECT * FROM jobs ORDER BY rowid"))


async def settled(bot: Bot, *, jobs: int = 1) -> list[dict[str, Any]]:
    with trio.fail_after(600):
        while True:
            rows = job_rows(bot)
            if len(rows) >= jobs and all(r["state"] in ("delivered", "failed") for r in rows):
                return rows
            await trio.sleep(0.5)


def prompt_ids(fake: FakeComfy) -> list[str]:
    return [item.prompt_id for item in fake.submitted]


async def test_a_job_goes_to_the_server_that_has_the_persona_s_lora(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    lacking = tuple(f for f in ALL_LORAS if f != PERSONA_LORA)
    async with fake_servers(lacking, ALL_LORAS) as (first, second):
        bot = await start_bot(nursery, tmp_path, fake_telegram, comfies=[first, second])
        await trio.sleep(CONNECTED_S)
        await press(fake_telegram)
        [row] = await settled(bot)
        assert row["state"] == "delivered"
        assert row["server"] == comfy_name(2)
        assert first.submitted == []
        assert prompt_ids(second) == [row["prompt_id"]]
        await bot.stop()


async def test_a_persona_no_server_can_draw_fails_at_once_naming_the_file(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    lacking = tuple(f for f in ALL_LORAS if f != PERSONA_LORA)
    async with fake_servers(lacking, lacking) as (first, second):
        bot = await start_bot(
            nursery, tmp_path, fake_telegram, comfies=[first, second], free_images=1
        )
        await trio.sleep(CONNECTED_S)
        pressed = trio.current_time()
        await press(fake_telegram)
        [row] = await settled(bot)
        assert trio.current_time() - pressed < 2  # not at the timeout
        assert (row["state"], row["reason"]) == ("failed", "generation_error")
        assert PERSONA_LORA in row["detail"]
        assert first.submitted == second.submitted == []
        with bot.store() as store:
            assert balance(store, USER) == 1
        await bot.stop()


async def test_jobs_spread_by_load_and_wait_in_the_bot_while_every_server_is_full(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async with fake_servers(ALL_LORAS, ALL_LORAS) as (slow, fast):
        slow.default_script = PromptScript(run_s=30, steps=5)
        fast.default_script = PromptScript(run_s=5, steps=5)
        bot = await start_bot(
            nursery, tmp_path, fake_telegram, comfies=[slow, fast], comfyui_concurrency=1
        )
        await trio.sleep(CONNECTED_S)
        for user_id in (1001, 1002, 1003):
            await press(fake_telegram, user_id)
        rows = await settled(bot, jobs=3)
        assert [r["state"] for r in rows] == ["delivered"] * 3
        # one each at first; the third waited in the bot and went to the one free first
        assert [r["server"] for r in rows] == [comfy_name(1), comfy_name(2), comfy_name(2)]
        assert slow.peak_on_server == fast.peak_on_server == 1
        assert len(photos(fake_telegram)) == 3
        await bot.stop()


@pytest.mark.parametrize("jobs_api", [False, True], ids=["0.3.64", "newer"])
async def test_a_server_dying_mid_job_moves_the_job_which_is_drawn_and_charged_once(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    autojump_clock: object,
    jobs_api: bool,
) -> None:
    async with fake_servers(ALL_LORAS, ALL_LORAS, run_s=30) as (dying, other):
        # cut off from the bot, its GPU goes on drawing until told to stop
        dying.default_script = PromptScript(outcome=Outcome.HANG)
        dying.jobs_api = other.jobs_api = jobs_api
        bot = await start_bot(
            nursery, tmp_path, fake_telegram, comfies=[dying, other], free_images=2
        )
        await trio.sleep(CONNECTED_S)
        await press(fake_telegram)
        await fake_telegram.wait_for(lambda: dying.started != [])
        died = trio.current_time()
        dying.unreachable = True
        dying.drop_websockets()
        [row] = await settled(bot)
        assert row["state"] == "delivered"
        assert row["server"] == comfy_name(2)
        assert prompt_ids(other) == prompt_ids(dying) == [row["prompt_id"]]  # the same id
        # left after the grace, drawn in full on the other within the one budget
        assert trio.current_time() - died < FAILOVER_AFTER_S + 30 + 5
        assert len(photos(fake_telegram)) == 1
        with bot.store() as store:
            assert balance(store, USER) == 1
            assert store.events.count("image_generated") == 1
        # back again: the copy left there is stopped, never drawn to the end
        dying.unreachable = False
        await trio.sleep(60)
        assert dying.interrupted == [row["prompt_id"]]
        if jobs_api:  # one atomic cancel by its id
            assert dying.job_cancels == [row["prompt_id"]]
            assert dying.interrupt_requests == []
        else:
            assert dying.interrupt_requests == [row["prompt_id"]]  # by its id, never bare
        await bot.stop()


async def test_a_server_restarting_mid_job_keeps_it_and_draws_it_once(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async with fake_servers(ALL_LORAS, ALL_LORAS, run_s=20) as (restarting, other):
        bot = await start_bot(nursery, tmp_path, fake_telegram, comfies=[restarting, other])
        await trio.sleep(CONNECTED_S)
        await press(fake_telegram)
        await fake_telegram.wait_for(lambda: restarting.started != [])
        restarting.restart()
        [row] = await settled(bot)
        assert row["state"] == "delivered"
        assert row["server"] == comfy_name(1)
        assert prompt_ids(restarting) == [row["prompt_id"]] * 2  # resubmitted there
        assert other.submitted == []
        assert len(photos(fake_telegram)) == 1
        await bot.stop()


async def test_all_servers_down_fails_clearly_and_charges_nothing(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async with fake_servers(ALL_LORAS, ALL_LORAS) as (first, second):
        first.unreachable = second.unreachable = True
        bot = await start_bot(
            nursery, tmp_path, fake_telegram, comfies=[first, second], free_images=1
        )
        pressed = trio.current_time()
        await press(fake_telegram)
        [row] = await settled(bot)
        assert trio.current_time() - pressed <= WAIT_FOR_SERVER_S + 2
        assert (row["state"], row["reason"]) == ("failed", "generation_error")
        assert comfy_name(1) in row["detail"]
        assert comfy_name(2) in row["detail"]
        with bot.store() as store:
            assert balance(store, USER) == 1
            assert store.events.count("image_generated") == 0
        assert photos(fake_telegram) == []
        await bot.stop()


async def test_cancel_cleans_up_on_the_server_the_job_is_on(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async with fake_servers(ALL_LORAS, ALL_LORAS) as (first, second):
        for fake in (first, second):
            fake.default_script = PromptScript(outcome=Outcome.HANG)
        bot = await start_bot(
            nursery,
            tmp_path,
            fake_telegram,
            comfies=[first, second],
            comfyui_timeout_seconds=600,
        )
        await trio.sleep(CONNECTED_S)
        await press(fake_telegram, 1001)  # to the first server
        await fake_telegram.wait_for(lambda: first.started != [])
        await press(fake_telegram)  # the first is busier: to the second
        await fake_telegram.wait_for(lambda: second.started != [])
        status = next(
            s for s in fake_telegram.sent if s.chat_id == USER and (s.text or "").startswith("🎨")
        )
        [(_, cancel_data)] = status.buttons()
        assert cancel_data is not None
        fake_telegram.user_presses(status.message_id, cancel_data)
        await fake_telegram.wait_for(lambda: second.interrupted != [])
        mine = next(r for r in job_rows(bot) if r["chat_id"] == USER)
        assert mine["server"] == comfy_name(2)
        assert second.interrupted == [mine["prompt_id"]]
        assert first.interrupted == []
        assert first.interrupt_requests == []
        await bot.stop()


async def test_recovery_after_a_kill_looks_each_job_up_on_its_own_server(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async with fake_servers(ALL_LORAS, ALL_LORAS, run_s=30) as (first, second):
        bot = await start_bot(nursery, tmp_path, fake_telegram, comfies=[first, second])
        await trio.sleep(CONNECTED_S)
        await press(fake_telegram, 1001)
        await press(fake_telegram, 1002)
        await fake_telegram.wait_for(lambda: first.started != [] and second.started != [])
        await bot.kill()
        before = {r["job_id"]: r["server"] for r in job_rows(bot)}
        assert sorted(before.values()) == [comfy_name(1), comfy_name(2)]

        bot = await start_bot(nursery, tmp_path, fake_telegram, comfies=[first, second])
        rows = await settled(bot, jobs=2)
        assert [r["state"] for r in rows] == ["delivered", "delivered"]
        assert {r["job_id"]: r["server"] for r in rows} == before
        # found where they were: neither was submitted again, anywhere
        assert len(first.submitted) == len(second.submitted) == 1
        assert len(photos(fake_telegram)) == 2
        await bot.stop()


async def test_a_value_not_in_list_rejection_rereads_the_models_and_moves_the_job(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async with fake_servers(ALL_LORAS, ALL_LORAS) as (first, second):
        bot = await start_bot(nursery, tmp_path, fake_telegram, comfies=[first, second])
        await trio.sleep(CONNECTED_S)
        first.loras.remove(PERSONA_LORA)  # deleted on the host after the bot read the list
        await press(fake_telegram)
        [row] = await settled(bot)
        assert row["state"] == "delivered"
        assert row["server"] == comfy_name(2)
        assert first.submitted == []
        assert ("POST", "/prompt") in [(m, p) for m, p, _ in first.requests]
        assert len(photos(fake_telegram)) == 1
        await bot.stop()


async def test_a_server_failing_a_call_is_left_for_another_and_backed_off(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async with fake_servers(ALL_LORAS, ALL_LORAS) as (failing, other):
        bot = await start_bot(nursery, tmp_path, fake_telegram, comfies=[failing, other])
        await trio.sleep(CONNECTED_S)
        failing.reject_next_with(500, "Internal Server Error")
        await press(fake_telegram, 1001)
        await press(fake_telegram, 1002)  # while the first server is in its backoff
        rows = await settled(bot, jobs=2)
        assert [r["state"] for r in rows] == ["delivered", "delivered"]
        assert [r["server"] for r in rows] == [comfy_name(2), comfy_name(2)]
        assert failing.submitted == []
        assert len(other.submitted) == 2
        await bot.stop()


async def test_one_server_failing_a_call_fails_the_job_then_takes_the_next_after_backoff(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async with fake_servers(ALL_LORAS) as (only,):
        bot = await start_bot(nursery, tmp_path, fake_telegram, comfies=[only], free_images=2)
        await trio.sleep(CONNECTED_S)
        only.reject_next_with(500, "Internal Server Error")
        await press(fake_telegram, 1001)
        [first] = await settled(bot)
        assert (first["state"], first["reason"]) == ("failed", "generation_error")
        assert "ComfyUnavailable" in first["detail"]
        pressed = trio.current_time()
        await press(fake_telegram, 1002)  # the server is still in its backoff
        rows = await settled(bot, jobs=2)
        assert rows[1]["state"] == "delivered"
        # taken when the backoff ended (1-2 s), not after the 10 s wait for a server
        assert trio.current_time() - pressed < 3.0 + 3.0 + 2.0  # backoff + drawing + slack
        await bot.stop()


async def test_a_job_whose_own_server_is_gone_at_restart_moves_and_is_tidied_there_later(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async with fake_servers(ALL_LORAS, ALL_LORAS) as (gone, other):
        gone.default_script = PromptScript(outcome=Outcome.HANG)
        bot = await start_bot(nursery, tmp_path, fake_telegram, comfies=[gone, other])
        await trio.sleep(CONNECTED_S)
        await press(fake_telegram)
        await fake_telegram.wait_for(lambda: gone.started != [])
        await bot.kill()
        gone.unreachable = True
        gone.drop_websockets()

        bot = await start_bot(nursery, tmp_path, fake_telegram, comfies=[gone, other])
        [row] = await settled(bot)
        assert (row["state"], row["server"]) == ("delivered", comfy_name(2))
        assert prompt_ids(other) == [row["prompt_id"]]
        assert len(photos(fake_telegram)) == 1
        gone.unreachable = False  # back: the copy it still draws is stopped by its id
        await trio.sleep(60)
        assert gone.interrupted == [row["prompt_id"]]
        await bot.stop()


async def test_a_moved_job_waiting_for_a_slot_still_ends_at_its_one_budget(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async with fake_servers(ALL_LORAS, ALL_LORAS, run_s=100) as (dying, full):
        dying.default_script = PromptScript(outcome=Outcome.HANG)
        bot = await start_bot(
            nursery,
            tmp_path,
            fake_telegram,
            comfies=[dying, full],
            comfyui_concurrency=1,
            comfyui_timeout_seconds=60,
            free_images=1,
        )
        await trio.sleep(CONNECTED_S)
        pressed = trio.current_time()
        await press(fake_telegram)  # to the first server
        await fake_telegram.wait_for(lambda: dying.started != [])
        await press(fake_telegram, 1001)  # to the second, which it keeps for 60 s
        await fake_telegram.wait_for(lambda: full.started != [])
        dying.unreachable = True
        dying.drop_websockets()
        rows = await settled(bot, jobs=2)
        mine = next(r for r in rows if r["chat_id"] == USER)
        assert (mine["state"], mine["reason"]) == ("failed", "generation_error")
        assert "no other ComfyUI server was free in time" in mine["detail"]
        assert 60 <= trio.current_time() - pressed < 60 + CONNECTED_S + 5
        assert prompt_ids(full) == [r["prompt_id"] for r in rows if r["chat_id"] == 1001]
        with bot.store() as store:
            assert balance(store, USER) == 1
        await bot.stop()


async def test_admin_stats_break_pictures_down_by_server(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    admin = 4242
    async with fake_servers(ALL_LORAS, ALL_LORAS) as (first, second):
        bot = await start_bot(
            nursery, tmp_path, fake_telegram, comfies=[first, second], admin_user_ids=str(admin)
        )
        await trio.sleep(CONNECTED_S)
        await press(fake_telegram, 1001)
        await press(fake_telegram, 1002)
        await settled(bot, jobs=2)
        fake_telegram.user_says("/stats", user_id=admin)
        with threads_run_in_real_time(autojump_clock):  # the report is read in a thread
            await fake_telegram.wait_for(lambda: fake_telegram.texts_to(admin) != [])
        [report] = fake_telegram.texts_to(admin)
        lines = report.splitlines()
        header = next(i for i, line in enumerate(lines) if line.startswith("сервер"))
        assert [line.split()[:3] for line in lines[header + 1 :]] == [
            [comfy_name(1), "1", "0"],
            [comfy_name(2), "1", "0"],
        ]
        await bot.stop()


async def test_one_server_down_longer_than_the_grace_keeps_its_job_as_before(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async with fake_servers(ALL_LORAS, run_s=5) as (only,):
        bot = await start_bot(nursery, tmp_path, fake_telegram, comfies=[only], free_images=2)
        await trio.sleep(CONNECTED_S)
        await press(fake_telegram)
        await fake_telegram.wait_for(lambda: only.started != [])
        only.restart()  # the host reboots: down for longer than the failover grace
        only.unreachable = True
        await trio.sleep(FAILOVER_AFTER_S * 2)
        only.unreachable = False
        [row] = await settled(bot)
        assert (row["state"], row["server"]) == ("delivered", comfy_name(1))
        assert prompt_ids(only) == [row["prompt_id"]] * 2  # resubmitted under its own id
        assert len(photos(fake_telegram)) == 1
        await bot.stop()


async def test_a_server_busy_with_someone_else_s_prompts_is_passed_over(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    async with fake_servers(ALL_LORAS, ALL_LORAS) as (shared, idle):
        for index in range(3):  # another client's work, queued on the first server
            prompt_id = f"someone-else-{index}"
            shared.script(prompt_id, PromptScript(outcome=Outcome.HANG))
            await shared.enqueue({"prompt": {}, "prompt_id": prompt_id})
        bot = await start_bot(nursery, tmp_path, fake_telegram, comfies=[shared, idle])
        await trio.sleep(CONNECTED_S)
        await press(fake_telegram)
        [row] = await settled(bot)
        assert (row["state"], row["server"]) == ("delivered", comfy_name(2))
        assert [p.prompt_id for p in shared.submitted] == [f"someone-else-{i}" for i in range(3)]
        await bot.stop()
