"""The picture flow's rules, pure: the press decision, the job lifecycle, the status message.

Plain functions over plain values: no event loop, no fakes, every branch.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trio

from bot.core.events import EventName, Reason
from bot.core.texts import t
from bot.pictures.decision import (
    REFUSALS,
    AlreadyDrawing,
    PressFacts,
    Queue,
    Refuse,
    Resend,
    Reserve,
    Stale,
    after_reserve,
    decide_press,
)
from bot.pictures.lifecycle import (
    CANCEL,
    ENDS,
    START,
    STEPS,
    CancelLanding,
    Exit,
    Phase,
    Settle,
    Start,
    Step,
    start_of,
)
from bot.pictures.status import (
    Action,
    Drawing,
    Queued,
    Sending,
    StatusBoard,
    StatusLine,
    StatusView,
    Waiting,
    next_action,
    render,
    status_of,
)
from bot.telegram.client import TelegramApi
from comfy import ProgressStage, PromptProgress
from store import ACTIVE_STATES, Job, JobState, QuotaSource, Refusal, SentMessage, open_store
from tests.fakes.telegram import FakeTelegram

USER = 42
MESSAGE = 7


def sent(*, user_id: int = USER, file_id: str | None = None) -> SentMessage:
    return SentMessage(
        chat_id=USER,
        message_id=MESSAGE,
        user_id=user_id,
        persona_key="alice",
        text="a scene",
        photo_file_id=file_id,
    )


def facts(**changes: object) -> PressFacts:
    values: dict[str, object] = {
        "private_chat": True,
        "chat_id": USER,
        "user_id": USER,
        "sent": sent(),
        "job_active": False,
        "pictures_on": True,
    }
    values.update(changes)
    return PressFacts(**values)  # type: ignore[arg-type]


# The press decision


def test_a_genuine_press_with_pictures_on_reserves() -> None:
    assert decide_press(facts()) == Reserve(sent())


@pytest.mark.parametrize(
    "changes",
    [
        {"sent": None},  # a message the store does not know (forged, or from another bot)
        {"sent": sent(user_id=USER + 1)},  # someone else's text
        {"private_chat": False},  # a group
        {"chat_id": USER + 1},  # a private chat that is not the presser's own
    ],
    ids=["unknown-message", "other-users-text", "group", "foreign-private-chat"],
)
def test_a_press_that_is_not_genuine_is_stale(changes: dict[str, object]) -> None:
    assert decide_press(facts(**changes)) == Stale()


def test_a_delivered_picture_is_resent_before_anything_else_is_checked() -> None:
    delivered = sent(file_id="AgAD")
    decision = decide_press(facts(sent=delivered, job_active=True, pictures_on=False))
    assert decision == Resend(delivered, "AgAD")


def test_a_press_while_the_picture_is_being_made_starts_nothing() -> None:
    assert decide_press(facts(job_active=True, pictures_on=False)) == AlreadyDrawing()


def test_a_press_with_pictures_off_is_refused_as_disabled() -> None:
    assert decide_press(facts(pictures_on=False)) == Refuse(Reason.DISABLED)


def job(state: JobState = JobState.QUEUED, *, graph: str | None = None) -> Job:
    return Job(
        job_id="j" * 32,
        prompt_id="p",
        user_id=USER,
        chat_id=USER,
        message_id=MESSAGE,
        persona_key="alice",
        language="ru",
        state=state,
        quota_source=QuotaSource.BALANCE,
        graph=graph,
        status_message_id=None,
        spool_path=None,
        file_id=None,
        reason=None,
        detail=None,
        created_at=datetime(2026, 11, 28, tzinfo=UTC),
    )


def test_the_reservation_decides_between_queue_no_quota_and_a_lost_race() -> None:
    assert after_reserve(job()) == Queue(job())
    assert after_reserve(Refusal.NO_QUOTA) == Refuse(Reason.NO_QUOTA)
    assert after_reserve(Refusal.IN_FLIGHT) == AlreadyDrawing()


def test_every_refusal_has_an_alert_text_and_a_detail() -> None:
    assert set(REFUSALS) == {Reason.DISABLED, Reason.NO_QUOTA, Reason.BUSY}
    for refusal in REFUSALS.values():
        assert t(refusal.text_key, "ru") != t(refusal.text_key, "en")
        assert refusal.detail


# The job lifecycle


def test_steps_run_prepare_generate_deliver_each_recording_its_state() -> None:
    step: Step | None = Step.PREPARE
    walked = []
    while step is not None:
        walked.append((step, STEPS[step].records))
        step = STEPS[step].then
    assert walked == [
        (Step.PREPARE, JobState.RUNNING),
        (Step.GENERATE, JobState.DOWNLOADED),
        (Step.DELIVER, JobState.DELIVERED),
    ]


@pytest.mark.parametrize(
    ("state", "holds_its_data", "resumed", "expected"),
    [
        (JobState.QUEUED, False, False, Start(Step.PREPARE, look_up_first=False)),
        (JobState.QUEUED, False, True, Start(Step.PREPARE, look_up_first=False)),
        (JobState.QUEUED, True, True, Start(Step.GENERATE, look_up_first=False)),
        (JobState.RUNNING, True, True, Start(Step.GENERATE, look_up_first=True)),
        (JobState.RUNNING, True, False, Start(Step.GENERATE, look_up_first=False)),
        (JobState.RUNNING, False, True, Start(Step.PREPARE, look_up_first=False)),
        (JobState.DOWNLOADED, True, True, Start(Step.DELIVER, look_up_first=False)),
        (JobState.DOWNLOADED, False, True, Start(Step.GENERATE, look_up_first=True)),
    ],
)
def test_where_a_job_starts(
    state: JobState, holds_its_data: bool, resumed: bool, expected: Start
) -> None:
    assert start_of(state, holds_its_data=holds_its_data, resumed=resumed) == expected


def test_every_active_state_has_a_start_and_final_states_have_none() -> None:
    assert {state for state, _ in START} == set(ACTIVE_STATES)
    for final in (JobState.DELIVERED, JobState.FAILED):
        with pytest.raises(ValueError, match="no step left"):
            start_of(final, holds_its_data=True, resumed=True)


def test_only_a_delivery_charges_and_only_a_stop_keeps_the_job() -> None:
    charged = {exit_ for exit_, end in ENDS.items() if end.settle is Settle.CHARGE}
    kept = {exit_ for exit_, end in ENDS.items() if end.settle is Settle.KEEP}
    assert charged == {Exit.DELIVERED}
    assert kept == {Exit.SHUTDOWN}
    assert set(ENDS) == set(Exit)


def test_every_settled_exit_logs_one_final_event_with_a_reason_for_failures() -> None:
    for exit_, end in ENDS.items():
        if end.settle in (Settle.KEEP, Settle.NOTHING):  # nothing settles here
            assert (end.event, end.reason, end.notice) == (None, None, None)
        elif end.settle is Settle.CHARGE:
            assert (end.event, end.reason) == (EventName.IMAGE_GENERATED, None)
        else:
            assert end.event is EventName.IMAGE_FAILED, exit_
            assert end.reason is not None, exit_


@pytest.mark.parametrize(
    ("exit_", "reason", "notice"),
    [
        (Exit.QUEUE_FULL, Reason.BUSY, None),
        (Exit.GENERATION_FAILED, Reason.GENERATION_ERROR, "fail_generation"),
        (Exit.WORKFLOW_FAILED, Reason.GENERATION_ERROR, "fail_generation"),
        (Exit.SEND_REFUSED, Reason.SEND_ERROR, "fail_send"),
        (Exit.USER_BLOCKED, Reason.SEND_ERROR, None),
        (Exit.CANCELLED, Reason.CANCELLED, None),
        (Exit.NO_COMFYUI, Reason.GENERATION_ERROR, "fail_generation"),
        (Exit.CRASHED, Reason.GENERATION_ERROR, "fail_generation"),
    ],
)
def test_each_failure_has_its_reason_and_its_sentence(
    exit_: Exit, reason: Reason, notice: str | None
) -> None:
    end = ENDS[exit_]
    assert (end.settle, end.reason, end.notice) == (Settle.RELEASE, reason, notice)


def test_where_a_cancel_lands() -> None:
    assert CANCEL == {
        Phase.WAITING: CancelLanding.RELEASE_NOW,
        Phase.DRAWING: CancelLanding.CANCEL_WORKER,
        Phase.DELIVERING: CancelLanding.TOO_LATE,
        Phase.ENDED: CancelLanding.TOO_LATE,
    }


# The status message

QUEUED_2 = StatusView(t("status_queued", "ru", position=2), cancellable=True)
QUEUED_1 = StatusView(t("status_queued", "ru", position=1), cancellable=True)


def line(**changes: object) -> StatusLine:
    values: dict[str, object] = {
        "job_id": "j",
        "chat_id": USER,
        "reply_to": MESSAGE,
        "lang": "ru",
        "wanted": QUEUED_2,
    }
    values.update(changes)
    return StatusLine(**values)  # type: ignore[arg-type]


def test_a_new_line_is_posted_at_once() -> None:
    assert next_action(line(), 0.0) is Action.POST


def test_nothing_happens_while_a_call_is_in_flight() -> None:
    assert next_action(line(busy=True), 0.0) is None
    assert next_action(line(busy=True, closed=True, message_id=5), 0.0) is None


def test_a_shown_line_needs_nothing() -> None:
    assert next_action(line(message_id=5, shown=QUEUED_2, written_at=0.0), 100.0) is None


def test_an_edit_waits_the_interval_after_the_change_and_after_the_last_write() -> None:
    changed = line(message_id=5, shown=QUEUED_2, wanted=QUEUED_1, written_at=0.0, changed_at=30.0)
    assert next_action(changed, 30.0, min_interval_s=3.0) == 33.0
    assert next_action(changed, 33.0, min_interval_s=3.0) is Action.EDIT
    just_written = line(
        message_id=5, shown=QUEUED_2, wanted=QUEUED_1, written_at=31.0, changed_at=30.0
    )
    assert next_action(just_written, 33.0, min_interval_s=3.0) == 34.0


def test_a_closed_line_is_deleted_or_forgotten() -> None:
    assert next_action(line(closed=True, message_id=5), 0.0) is Action.DELETE
    assert next_action(line(closed=True), 0.0) is Action.FORGET
    assert next_action(line(closed=True, given_up=True), 0.0) is Action.FORGET


def test_a_line_whose_post_failed_is_left_alone() -> None:
    assert next_action(line(given_up=True), 0.0) is None


@pytest.mark.parametrize(
    ("status", "key", "params", "cancellable"),
    [
        (Queued(3), "status_queued", {"position": 3}, True),
        (Waiting(), "status_waiting_gpu", {}, True),
        (Waiting(3), "status_queued", {"position": 3}, True),
        (Drawing(40), "status_running", {"percent": 40}, True),
        (Sending(), "status_sending", {}, False),
    ],
)
def test_render(status: object, key: str, params: dict[str, object], cancellable: bool) -> None:
    for lang in ("ru", "en"):
        assert render(status, lang) == StatusView(t(key, lang, **params), cancellable)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("progress", "status"),
    [
        (PromptProgress(ProgressStage.WAITING_FOR_SERVER), Waiting()),
        (PromptProgress(ProgressStage.QUEUED, queue_remaining=3), Waiting()),
        (PromptProgress(ProgressStage.WAITING_FOR_SLOT, place=2), Waiting(2)),
        (PromptProgress(ProgressStage.RUNNING, 2, 8), Drawing(25)),
        (PromptProgress(ProgressStage.RUNNING, 9, 8), Drawing(100)),
        (PromptProgress(ProgressStage.RUNNING, 0, 0), Drawing(0)),
        (PromptProgress(ProgressStage.DOWNLOADING), Sending()),
    ],
)
def test_status_of_progress(progress: PromptProgress, status: object) -> None:
    assert status_of(progress) == status


# The status board against the fake Bot API


async def test_the_board_posts_edits_throttled_and_deletes_once_the_post_landed(
    telegram_api: TelegramApi,
    fake_telegram: FakeTelegram,
    nursery: trio.Nursery,
    autojump_clock: object,
) -> None:
    fake_telegram.user_says("hi", user_id=USER)
    fake_telegram.latency_s = {"sendMessage": 1.0, "editMessageText": 1.0}
    with open_store(":memory:") as store:
        board = StatusBoard(telegram_api, store.jobs, min_interval_s=3.0)
        await nursery.start(board.run)
        start = trio.current_time()
        board.open("a" * 32, chat_id=USER, reply_to=1, lang="ru", status=Queued(2))
        await trio.sleep(0.5)
        board.show("a" * 32, Queued(1))  # while the post is in flight: one edit follows
        await fake_telegram.wait_for(lambda: len(fake_telegram.edits) == 1)
        [posted] = [s for s in fake_telegram.sent if "🎨" in (s.text or "")]
        assert (posted.text, posted.at) == (t("status_queued", "ru", position=2), start + 1)
        [edit] = fake_telegram.edits
        assert edit.text == t("status_queued", "ru", position=1)
        # the interval after the post landed (it was the later of change and write)
        assert edit.at == start + 1 + 3 + 1
        board.open("b" * 32, chat_id=USER, reply_to=1, lang="ru", status=Waiting())
        await trio.sleep(0.5)
        board.close("b" * 32)  # closed while its post is in flight: deleted once it lands
        await fake_telegram.wait_for(lambda: len(fake_telegram.deleted) == 1)
        second = [s for s in fake_telegram.sent if "🎨" in (s.text or "")][-1]
        assert fake_telegram.deleted == [(USER, second.message_id)]
        sent_before = len(fake_telegram.sent)
        board.open("c" * 32, chat_id=USER, reply_to=1, lang="ru", status=Waiting())
        board.close("c" * 32)  # closed before the board got to it: never posted
        await trio.sleep(10)
        assert len(fake_telegram.sent) == sent_before
