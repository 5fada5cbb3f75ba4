"""Running a schedule: the whole bot in-process, its fakes, and whatever the steps do.

:func:`run_schedule` starts the bot (``tests.harness.start_bot``) against a fake
Telegram, two fake ComfyUI servers and a fake LLM, under the test's clock, with a
supervisor that starts it again on the same database whenever a step kills it. Each
step of the :class:`~tests.simulation.schedule.Schedule` is played at its virtual time;
then every fault is lifted and the world waits until the bot is quiet (no job active,
no update waiting, nothing of ours on ComfyUI), stops it, and hands back a
:class:`Record` of what the users did, for :mod:`tests.simulation.invariants`.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final

import httpx
import sqlite_utils
import trio

from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS
from bot.payments.offers import PackPayload, SubscriptionPayload, encode_payload
from store.jobs import ACTIVE_SQL
from store.ledger import check
from tests.fakes.comfy import DEFAULT_LORAS, FakeComfy, PromptScript
from tests.fakes.telegram import FakeTelegram, SentRecord, too_many_requests
from tests.harness import Bot, Clock, start_bot
from tests.simulation.schedule import Act, Schedule, Step

__all__ = ["ADMIN", "GROUP", "PACKS", "PROBE", "Record", "run_schedule"]

ADMIN: Final = 900_042
PROBE: Final = 900_099  # a user who only asks /help during a group's 429s or a flood
GROUP: Final = -100_900_777
GROUP_MEMBERS: Final = (900_201, 900_202, 900_203)
GROUP_RETRY_AFTER_S: Final = 4  # the group's 429s
PROBE_LIMIT_S: Final = 2.0  # /help in another chat while the group is refused
PACKS: Final = ((3, 30), (10, 80))  # pictures, stars
MONTH_STARS: Final = 100
TIMEOUT_S: Final = 60.0  # COMFYUI_TIMEOUT_SECONDS
DRAW_S: Final = 6.0  # a fake GPU's time per picture: long enough to cancel one
QUIET_LIMIT_S: Final = 900.0  # how long the end may take to become quiet
LOOK: Final = "look"
SETTINGS: Final[dict[str, object]] = {
    "free_images": 2,
    "stars_packs": ",".join(f"{p}:{s}" for p, s in PACKS),
    "stars_subscription_price": MONTH_STARS,
    "subscription_daily_images": 2,
    "admin_user_ids": str(ADMIN),
    "comfyui_timeout_seconds": TIMEOUT_S,
    "image_queue_size": 8,
}


class VirtualWallClock(Clock):
    """The bot's wall clock, moving with trio's virtual time (subscriptions expire)."""

    def __call__(self) -> datetime:
        return self.moment + timedelta(seconds=trio.current_time())


@dataclass
class Record:
    """What the world did, for the invariants."""

    grants: list[tuple[int, int, int]] = field(default_factory=list)  # update, user, n
    subscribes: list[tuple[int, int, int]] = field(default_factory=list)  # update, user, days
    checkouts: list[tuple[str, float]] = field(default_factory=list)  # query, sent at
    charges: list[tuple[str, int, str]] = field(default_factory=list)  # charge, user, kind
    presses: int = 0  # press updates sent (each makes at most one job)
    probes: list[float] = field(default_factory=list)  # /help answer times in a group storm
    unfair: list[str] = field(default_factory=list)  # probes another chat's 429 held
    kills: int = 0
    at_kills: list[str] = field(default_factory=list)  # ledger mismatches seen at a kill
    disturbed: list[tuple[float, float]] = field(default_factory=list)  # fault windows
    quiet: bool = False  # the end became quiet within QUIET_LIMIT_S
    database: Path = Path()
    telegram: FakeTelegram = field(default_factory=FakeTelegram)
    comfies: list[FakeComfy] = field(default_factory=list)


class World:
    """The fakes, the bot and its supervisor, and the faults now in force."""

    def __init__(self, schedule: Schedule, tmp_path: Path, nursery: trio.Nursery) -> None:
        self.schedule = schedule
        self.tmp_path = tmp_path
        self.nursery = nursery
        self.rng = random.Random(schedule.seed)  # the faults' own draws
        self.telegram = FakeTelegram()
        self.telegram.interpose = self._telegram_fault
        loras = tuple(
            dict.fromkeys([*DEFAULT_LORAS, *load_personas(SHIPPED_PERSONAS).lora_files()])
        )
        self.comfies = [FakeComfy(loras=loras, tag="gpu1:"), FakeComfy(loras=loras, tag="gpu2:")]
        for fake in self.comfies:
            fake.default_script = PromptScript(run_s=DRAW_S)
        # The first is a 0.3.64 drawing live previews; the second a newer server (the jobs
        # API for lookups and cancels) asked for previews per prompt. Previews turn status
        # messages into photos that a cancel deletes and a picture replaces.
        self.comfies[0].preview_method = "latent2rgb"
        self.comfies[1].jobs_api = True
        self.clock = VirtualWallClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
        self.record = Record(
            database=tmp_path / "data" / "bot.db", telegram=self.telegram, comfies=self.comfies
        )
        self.bot: Bot | None = None
        self.stopping = False
        self.storm_until = -1.0
        self.group_refused_until = -1.0
        self.llm_slow_until = -1.0
        self.unlocked = trio.Event()
        self.unlocked.set()
        self._restarts = 0
        self.starting = False  # a start opens the store, which a lock would hold in real time
        self._tasks = 0  # the world's own tasks still running (a checkout, a server away)

    # -- the bot and its supervisor -------------------------------------------------------

    async def supervise(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Start the bot; start it again on the same database whenever a step kills it."""
        started = False
        while True:
            await self.unlocked.wait()  # a start waits on a lock in real time, not virtual
            self.starting = True
            self.bot = await start_bot(
                self.nursery,
                self.tmp_path,
                self.telegram,
                comfies=self.comfies,
                llm=self._llm,
                clock=self.clock,
                seed=self.schedule.seed * 100 + self._restarts,
                **SETTINGS,
            )
            self.starting = False
            if not started:
                task_status.started()
                started = True
            await self.bot.done.wait()
            if self.stopping:
                return
            self._restarts += 1
            self.record.kills += 1
            self._disturbed(trio.current_time(), 5.0)
            with closing(sqlite3.connect(self.record.database)) as db:  # reads: never locked
                self.record.at_kills += [m.line() for m in check(sqlite_utils.Database(db))]

    async def _llm(self, request: httpx.Request) -> httpx.Response:
        if trio.current_time() < self.llm_slow_until:
            await trio.sleep(25.0)
        asked = json.loads(request.content)["messages"][-1]["content"]
        answer = f"Смотри: {asked[:40]}, и за окном закат."
        return httpx.Response(200, json={"choices": [{"message": {"content": answer}}]})

    def _telegram_fault(self, method: str, request: httpx.Request) -> httpx.Response | None:
        now = trio.current_time()
        if (
            now < self.group_refused_until
            and method.startswith("send")
            and _chat_of(request) == GROUP
        ):
            return too_many_requests(GROUP_RETRY_AFTER_S)
        if now >= self.storm_until:
            return None
        draw = self.rng.random()
        if draw < 0.15:
            return too_many_requests(self.rng.choice((1, 2)))
        if draw < 0.20:
            return httpx.Response(502, text="<html>Bad Gateway</html>")
        if draw < 0.23:
            raise httpx.ReadTimeout("no answer", request=request)
        return None

    def _spawn(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run *task* beside the steps; the end waits for it."""

        async def counted() -> None:
            try:
                await task()
            finally:
                self._tasks -= 1

        self._tasks += 1
        self.nursery.start_soon(counted)

    def _disturbed(self, start: float, seconds: float) -> None:
        self.record.disturbed.append((start, start + seconds))

    # -- the steps ------------------------------------------------------------------------

    async def play(self, step: Step) -> None:
        act = self.ACTS[step.act]
        await act(self, step)

    def _sent_to(self, chat: int, button: Callable[[str], bool]) -> list[SentRecord]:
        return [
            s
            for s in self.telegram.sent
            if s.chat_id == chat and any(data and button(data) for _, data in s.buttons())
        ]

    def _press(self, message_id: int, data: str, user: int) -> None:
        self.record.presses += 1
        self.telegram.user_presses(message_id, data, user_id=user)

    async def _say(self, step: Step) -> None:
        self.telegram.user_says(f"расскажи что-нибудь {step.pick % 97}", user_id=step.user)

    async def _look(self, step: Step) -> None:
        replies = self._sent_to(step.user, lambda data: data == LOOK)
        if replies:
            self._press(replies[step.pick % len(replies)].message_id, LOOK, step.user)

    async def _variant(self, step: Step) -> None:
        pictures = self._sent_to(step.user, lambda data: data.startswith("variant:"))
        if pictures:
            picture = pictures[step.pick % len(pictures)]
            data = next(d for _, d in picture.buttons() if d and d.startswith("variant:"))
            self._press(picture.message_id, data, step.user)

    async def _cancel(self, step: Step) -> None:
        statuses = self._sent_to(step.user, lambda data: data.startswith("cancel:"))
        if statuses:
            status = statuses[step.pick % len(statuses)]
            data = next(d for _, d in status.buttons() if d and d.startswith("cancel:"))
            self._press(status.message_id, data, step.user)

    async def _press_and_cancel(self, step: Step) -> None:
        replies = self._sent_to(step.user, lambda data: data == LOOK)
        if not replies:
            return
        reply = replies[step.pick % len(replies)]
        self._press(reply.message_id, LOOK, step.user)

        async def cancel() -> None:
            await trio.sleep(step.amount / 10)
            for status in self._sent_to(step.user, lambda data: data.startswith("cancel:")):
                if status.reply_to_message_id == reply.message_id:
                    data = next(d for _, d in status.buttons() if d and d.startswith("cancel:"))
                    self._press(status.message_id, data, step.user)

        self._spawn(cancel)

    async def _flood(self, step: Step) -> None:
        replies = self._sent_to(step.user, lambda data: data == LOOK)
        if replies:
            reply = replies[step.pick % len(replies)]
            for _ in range(step.amount):
                self._press(reply.message_id, LOOK, step.user)
            self._spawn(self._probe)  # another user must not wait for the flood

    async def _buy_pack(self, step: Step) -> None:
        pictures, stars = PACKS[step.pick % len(PACKS)]
        payload = encode_payload(PackPayload(pictures, stars, step.user))
        self._spawn(partial(self._checkout_then_pay, step.user, payload, stars, "pack"))

    async def _buy_month(self, step: Step) -> None:
        payload = encode_payload(SubscriptionPayload(MONTH_STARS, step.user))
        self._spawn(partial(self._checkout_then_pay, step.user, payload, MONTH_STARS, "month"))

    async def _checkout_then_pay(self, user: int, payload: str, stars: int, kind: str) -> None:
        query = self.telegram.user_checks_out(payload, stars, user_id=user)
        self.record.checkouts.append((query, trio.current_time()))
        with trio.move_on_after(30):
            await self.telegram.wait_for(lambda: query in self.telegram.checkout_answers)
        answer = self.telegram.checkout_answers.get(query)
        if answer is None or not answer.ok:
            return
        expires = int((self.clock() + timedelta(days=30)).timestamp())
        month = {"is_recurring": True, "is_first_recurring": True} if kind == "month" else {}
        charge = self.telegram.payment_succeeds(
            payload,
            stars,
            user_id=user,
            subscription_expiration_date=expires if kind == "month" else None,
            **month,
        )
        self.record.charges.append((charge, user, kind))

    async def _renew(self, step: Step) -> None:
        months = [
            c for c, user, kind in self.record.charges if user == step.user and kind == "month"
        ]
        if months:
            payload = encode_payload(SubscriptionPayload(MONTH_STARS, step.user))
            expires = int((self.clock() + timedelta(days=30)).timestamp())
            charge = self.telegram.payment_succeeds(
                payload,
                MONTH_STARS,
                user_id=step.user,
                subscription_expiration_date=expires,
                is_recurring=True,
            )
            self.record.charges.append((charge, step.user, "month"))

    def _a_charge(self, step: Step) -> str | None:
        charges = self.record.charges
        return charges[step.pick % len(charges)][0] if charges else None

    async def _admin_refund(self, step: Step) -> None:
        charge = self._a_charge(step)
        if charge is not None:
            self.telegram.user_says(f"/refund {charge}", user_id=ADMIN)

    async def _telegram_refund(self, step: Step) -> None:
        charge = self._a_charge(step)
        if charge is not None and not self.telegram.charges[charge].refunded:
            self.telegram.payment_refunded(charge)

    async def _grant(self, step: Step) -> None:
        update = self.telegram.user_says(f"/grant {step.user} {step.amount}", user_id=ADMIN)
        self.record.grants.append((update, step.user, step.amount))

    async def _subscribe(self, step: Step) -> None:
        update = self.telegram.user_says(f"/subscribe {step.user} {step.amount}", user_id=ADMIN)
        self.record.subscribes.append((update, step.user, step.amount))

    async def _forget(self, step: Step) -> None:
        self.telegram.user_says("/forget", user_id=step.user)

    async def _group_talk(self, step: Step) -> None:
        for n in range(step.amount):
            member = GROUP_MEMBERS[(step.pick + n) % len(GROUP_MEMBERS)]
            self.telegram.user_says(
                f"всем привет {n}", user_id=member, chat_id=GROUP, chat_type="group"
            )

    async def _storm(self, step: Step) -> None:
        self.storm_until = max(self.storm_until, trio.current_time() + step.amount)
        self._disturbed(trio.current_time(), step.amount + 10.0)

    async def _group_429(self, step: Step) -> None:
        self.group_refused_until = max(self.group_refused_until, trio.current_time() + step.amount)
        await self._group_talk(replace(step, amount=3))  # replies the 429s will refuse
        self._spawn(self._probe)

    async def _probe(self) -> None:
        """Another chat, during a group's 429s or a user's press flood: its /help must not
        wait for them."""
        await trio.sleep(1.0)
        asked = trio.current_time()
        count = len(self.telegram.texts_to(PROBE))
        self.telegram.user_says("/help", user_id=PROBE)
        with trio.move_on_after(30):
            await self.telegram.wait_for(lambda: len(self.telegram.texts_to(PROBE)) > count)
        answered = next(
            (s.at for s in self.telegram.sent if s.chat_id == PROBE and s.at >= asked), None
        )
        calm = not any(start <= asked <= end for start, end in self.record.disturbed)
        # /help needs no LLM: answered within PROBE_LIMIT_S unless held by the group's
        # 429 (retry_after GROUP_RETRY_AFTER_S, longer than the limit) or stuck behind
        # the flood's presses.
        if calm and (answered is None or answered - asked > PROBE_LIMIT_S):
            self.record.unfair.append(f"/help asked at {asked:.1f} s answered at {answered}")

    def _comfy(self, step: Step) -> FakeComfy:
        return self.comfies[step.pick % len(self.comfies)]

    async def _ws_drop(self, step: Step) -> None:
        self._comfy(step).drop_websockets()

    async def _http_500(self, step: Step) -> None:
        self._comfy(step).http_500_next += step.amount

    async def _answer_lost(self, step: Step) -> None:
        self._comfy(step).answer_lost_next += 1

    async def _prompt_error(self, step: Step) -> None:
        self._comfy(step).fail_next_prompts += 1

    async def _comfy_restart(self, step: Step) -> None:
        self._comfy(step).restart()

    async def _server_away(self, step: Step) -> None:
        fake = self._comfy(step)
        fake.unreachable = True
        fake.drop_websockets()

        async def back() -> None:
            await trio.sleep(step.amount)
            fake.unreachable = False

        self._spawn(back)

    async def _slow_llm(self, step: Step) -> None:
        self.llm_slow_until = max(self.llm_slow_until, trio.current_time() + step.amount)

    async def _lock_db(self, step: Step) -> None:
        if self.starting or not self.unlocked.is_set() or not self.record.database.exists():
            return
        self.unlocked = trio.Event()
        self._disturbed(trio.current_time(), step.amount + 5.0)
        other = sqlite3.connect(self.record.database, isolation_level=None, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            await trio.sleep(step.amount)
            other.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass  # the bot held it at that very moment: no lock this time
        finally:
            other.close()
            self.unlocked.set()

    async def _kill(self, step: Step) -> None:
        if self.bot is not None and not self.bot.done.is_set():
            self.bot.process.kill()

    async def _kill_at(self, step: Step) -> None:
        method, after = KILL_POINTS[step.pick % len(KILL_POINTS)]
        if self.bot is not None:
            self.bot.crash_at(lambda r, m=method: r.url.path.endswith("/" + m), after=after)

    ACTS: Final[dict[Act, Callable[[World, Step], Any]]] = {
        Act.SAY: _say,
        Act.PRESS: _look,
        Act.VARIANT: _variant,
        Act.CANCEL: _cancel,
        Act.PRESS_AND_CANCEL: _press_and_cancel,
        Act.FLOOD_PRESSES: _flood,
        Act.BUY_PACK: _buy_pack,
        Act.BUY_MONTH: _buy_month,
        Act.RENEW: _renew,
        Act.ADMIN_REFUND: _admin_refund,
        Act.TELEGRAM_REFUND: _telegram_refund,
        Act.GRANT: _grant,
        Act.SUBSCRIBE: _subscribe,
        Act.FORGET: _forget,
        Act.GROUP_TALK: _group_talk,
        Act.TELEGRAM_STORM: _storm,
        Act.GROUP_429: _group_429,
        Act.WS_DROP: _ws_drop,
        Act.HTTP_500: _http_500,
        Act.ANSWER_LOST: _answer_lost,
        Act.PROMPT_ERROR: _prompt_error,
        Act.COMFY_RESTART: _comfy_restart,
        Act.SERVER_AWAY: _server_away,
        Act.SLOW_LLM: _slow_llm,
        Act.LOCK_DB: _lock_db,
        Act.KILL: _kill,
        Act.KILL_AT: _kill_at,
    }

    # -- the end --------------------------------------------------------------------------

    async def quiet_down(self) -> None:
        """Lift every fault, then wait until nothing is left to do; stop the bot."""
        self.storm_until = self.group_refused_until = self.llm_slow_until = -1.0
        for fake in self.comfies:
            fake.unreachable = False
        if self.bot is not None:
            self.bot.process.crash_points.clear()  # a kill still armed would never come
        await self.unlocked.wait()
        with trio.move_on_after(QUIET_LIMIT_S):
            while not self._quiet():  # noqa: ASYNC110 (the database has no event to wait on)
                await trio.sleep(5.0)
            self.record.quiet = True
        self.stopping = True
        if self.bot is not None and not self.bot.done.is_set():
            await self.bot.stop()

    def _quiet(self) -> bool:
        if self._tasks or self.bot is None or self.bot.done.is_set():
            return False
        if any(fake.pending or fake.running for fake in self.comfies):
            return False
        if self.telegram.pending_updates:
            return False
        with closing(sqlite3.connect(self.record.database)) as db:
            active = db.execute(f"SELECT count(*) FROM jobs WHERE state IN {ACTIVE_SQL}")
            pending = db.execute("SELECT count(*) FROM update_inbox")
            return active.fetchone() == (0,) and pending.fetchone() == (0,)


def _chat_of(request: httpx.Request) -> object:
    """The chat a JSON call is about; None for an upload (multipart: a private chat's
    picture, never the group's)."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        return None
    return json.loads(request.content or b"{}").get("chat_id")


KILL_POINTS: Final = (
    ("editMessageMedia", False),  # the picture into its status message: before, after
    ("editMessageMedia", True),
    ("sendPhoto", False),  # the fallback, a new photo
    ("sendPhoto", True),
    ("sendMessage", True),
    ("answerPreCheckoutQuery", True),
    ("refundStarPayment", True),
    ("prompt", True),
    ("view", True),
)


async def run_schedule(schedule: Schedule, tmp_path: Path) -> Record:
    """Play *schedule* against a fresh bot and its fakes; what happened, once quiet."""
    async with trio.open_nursery() as nursery:
        world = World(schedule, tmp_path, nursery)
        for fake in world.comfies:
            await nursery.start(fake.run)
        await nursery.start(world.supervise)
        start = trio.current_time()
        for step in schedule.steps:
            await trio.sleep_until(start + step.at)
            await world.play(step)
        await world.quiet_down()
        nursery.cancel_scope.cancel()
    return world.record
