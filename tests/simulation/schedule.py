"""PURE: a seeded schedule of what users, Telegram, ComfyUI and the host do to the bot.

:func:`generate` turns a seed into a :class:`Schedule`: a few users chatting, pressing,
pressing again, cancelling, asking for another variant, buying packs and months (and
Telegram renewing them), refunds by the admin and by Telegram, ``/grant``,
``/subscribe``, ``/forget``, a group talking over everyone; and faults drawn from the
same seed: Telegram answering 429, 5xx or nothing, ComfyUI dropping its websocket,
failing its HTTP, losing an answer, failing a prompt, restarting or going away for a
while, a slow LLM, the database locked by another process, the bot killed at a moment
or at a request and started again on the same file. A step carries every choice it
needs (which reply, which charge) as a number the world takes modulo what exists, so
the same seed replays the same run.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from typing import Final

__all__ = ["USERS", "Act", "Schedule", "Step", "generate"]

USERS: Final = (900_001, 900_002, 900_003)  # private chats; the admin is the world's own
ACTIVE_S: Final = 240.0  # steps happen in the first four minutes of virtual time
OPENING_S: Final = 5.0  # the users' first words, before anything else


class Act(enum.Enum):
    SAY = "say"
    PRESS = "press"  # «👁️ Посмотреть» under one of the user's replies
    VARIANT = "variant"  # «🔄 Ещё вариант» under one of their pictures
    CANCEL = "cancel"  # «✖ Отмена» under one of their status messages
    PRESS_AND_CANCEL = "press_and_cancel"  # press, then cancel that job a moment later
    FLOOD_PRESSES = "flood_presses"  # one user presses the same button many times
    BUY_PACK = "buy_pack"
    BUY_MONTH = "buy_month"
    RENEW = "renew"  # Telegram renews a month the user paid
    ADMIN_REFUND = "admin_refund"
    TELEGRAM_REFUND = "telegram_refund"
    GRANT = "grant"
    SUBSCRIBE = "subscribe"
    FORGET = "forget"
    GROUP_TALK = "group_talk"
    # Faults.
    TELEGRAM_STORM = "telegram_storm"  # 429s, 5xx and lost answers for a while
    GROUP_429 = "group_429"  # the group's sends answered 429 for a while
    WS_DROP = "ws_drop"
    HTTP_500 = "http_500"
    ANSWER_LOST = "answer_lost"  # POST /prompt queues, the answer is lost
    PROMPT_ERROR = "prompt_error"  # the next prompt fails in a node
    COMFY_RESTART = "comfy_restart"
    SERVER_AWAY = "server_away"  # unreachable for a while, websocket refused
    SLOW_LLM = "slow_llm"
    LOCK_DB = "lock_db"
    KILL = "kill"  # SIGKILL now; started again on the same database
    KILL_AT = "kill_at"  # SIGKILL when a request of some method is on its way


# How often each act is drawn (chat and presses dominate, faults are rarer).
WEIGHTS: Final[dict[Act, int]] = {
    Act.SAY: 14,
    Act.PRESS: 14,
    Act.VARIANT: 3,
    Act.CANCEL: 3,
    Act.PRESS_AND_CANCEL: 4,
    Act.FLOOD_PRESSES: 1,
    Act.BUY_PACK: 4,
    Act.BUY_MONTH: 2,
    Act.RENEW: 2,
    Act.ADMIN_REFUND: 2,
    Act.TELEGRAM_REFUND: 2,
    Act.GRANT: 3,
    Act.SUBSCRIBE: 2,
    Act.FORGET: 2,
    Act.GROUP_TALK: 2,
    Act.TELEGRAM_STORM: 2,
    Act.GROUP_429: 1,
    Act.WS_DROP: 2,
    Act.HTTP_500: 2,
    Act.ANSWER_LOST: 1,
    Act.PROMPT_ERROR: 2,
    Act.COMFY_RESTART: 1,
    Act.SERVER_AWAY: 1,
    Act.SLOW_LLM: 1,
    Act.LOCK_DB: 1,
    Act.KILL: 2,
    Act.KILL_AT: 2,
}


@dataclass(frozen=True, slots=True)
class Step:
    at: float  # virtual seconds from the start
    act: Act
    user: int  # one of USERS
    pick: int  # which reply, picture, charge, server, request... (modulo what exists)
    amount: int = 0  # pictures, days, seconds, presses: the act's own number


@dataclass(frozen=True, slots=True)
class Schedule:
    seed: int
    steps: tuple[Step, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        """The schedule, one step a line, for a failing seed's report."""
        lines = [f"seed {self.seed}: {len(self.steps)} steps"]
        lines += [
            f"  {s.at:7.2f} s  {s.act.value:<16} user={s.user} pick={s.pick} amount={s.amount}"
            for s in self.steps
        ]
        return "\n".join(lines)


def generate(seed: int, *, steps: int | None = None) -> Schedule:
    """The schedule of *seed*: every user says something first, then between 20 and 40
    drawn steps unless *steps* says."""
    rng = random.Random(seed)
    count = steps if steps is not None else rng.randint(20, 40)
    acts, weights = zip(*WEIGHTS.items(), strict=True)
    times = sorted(rng.uniform(OPENING_S, ACTIVE_S) for _ in range(count))
    drawn = [
        Step(at=round(rng.uniform(0.0, OPENING_S), 2), act=Act.SAY, user=user, pick=n)
        for n in range(2)
        for user in USERS
    ]
    drawn.sort(key=lambda step: step.at)
    for at in times:
        act = rng.choices(acts, weights)[0]
        drawn.append(
            Step(
                at=round(at, 2),
                act=act,
                user=rng.choice(USERS),
                pick=rng.randrange(1_000_000),
                amount=_amount(act, rng),
            )
        )
    return Schedule(seed, tuple(drawn))


def _amount(act: Act, rng: random.Random) -> int:
    match act:
        case Act.GRANT:
            return rng.choice((-3, -1, 1, 2, 5))
        case Act.SUBSCRIBE:
            return rng.choice((1, 3, 40))
        case Act.FLOOD_PRESSES:
            return rng.randint(20, 400)  # past the dispatcher's 256 press tasks too
        case Act.GROUP_TALK:
            return rng.randint(3, 25)
        case Act.TELEGRAM_STORM | Act.GROUP_429 | Act.SERVER_AWAY | Act.SLOW_LLM:
            return rng.randint(5, 40)  # seconds
        case Act.LOCK_DB:
            return rng.randint(1, 8)  # seconds
        case Act.HTTP_500:
            return rng.randint(1, 4)  # answers
        case Act.PRESS_AND_CANCEL:
            return rng.randint(0, 80)  # tenths of a second between the two
    return 0
