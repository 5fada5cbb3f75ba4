"""The send budget's rules, synchronously: which call goes next, what is dropped or merged."""

from __future__ import annotations

import math

import pytest

from bot.telegram.send_budget import (
    CallClass,
    Drop,
    Grant,
    Priority,
    SendBudget,
    SendRules,
    Ticket,
    classify,
)

RULES = SendRules(per_second=4, per_chat=3, chat_window_s=3.0, cosmetic_per_second=2)


def message(chat: int | None) -> CallClass:
    return CallClass(Priority.MESSAGE, chat, None)


def cosmetic(chat: int, key: object = None) -> CallClass:
    """A status edit in *chat*; edits of one message share a key."""
    return CallClass(Priority.COSMETIC, chat, ("editMessageText", chat, 1) if key is None else key)


TOAST = CallClass(Priority.TOAST, None, None)


def drain(budget: SendBudget, now: float) -> tuple[list[Ticket], list[Drop], float]:
    """Every decision the budget makes at *now*: grants, drops, then the time to look again."""
    granted: list[Ticket] = []
    dropped: list[Drop] = []
    while True:
        step = budget.next(now)
        if isinstance(step, Grant):
            granted.append(step.ticket)
        elif isinstance(step, Drop):
            dropped.append(step)
        else:
            return granted, dropped, step


def test_classify_sorts_calls_by_method() -> None:
    toast = classify("answerCallbackQuery", {"callback_query_id": "1"})
    assert toast == CallClass(Priority.TOAST, None, None)
    photo = classify("sendPhoto", {"chat_id": 7})
    assert photo == CallClass(Priority.MESSAGE, 7, None, holder=7)
    delete = classify("deleteMessage", {"chat_id": 7, "message_id": 3})
    # Sends nothing to the chat (no place in its window), but a 429 for the chat holds it.
    assert delete == CallClass(Priority.MESSAGE, None, None, holder=7)
    action = classify("sendChatAction", {"chat_id": 7, "action": "upload_photo"})
    assert action == CallClass(Priority.COSMETIC, None, ("sendChatAction", 7, None), holder=7)
    edit = classify("editMessageText", {"chat_id": 7, "message_id": 3}, priority=Priority.COSMETIC)
    assert edit == CallClass(Priority.COSMETIC, 7, ("editMessageText", 7, 3), holder=7)
    assert classify("getUpdates", {"offset": 1}) is None
    assert classify("setMyCommands", {}) is None


def test_payment_calls_are_budgeted_by_what_they_do() -> None:
    # An invoice is a message in the chat; the pre-checkout answer has 10 s and must never
    # wait behind pictures; refunds and subscription edits write nothing to a chat.
    invoice = classify("sendInvoice", {"chat_id": 7, "payload": "pack:10"})
    assert invoice == CallClass(Priority.MESSAGE, 7, None, holder=7)
    checkout = classify("answerPreCheckoutQuery", {"pre_checkout_query_id": "q", "ok": True})
    assert checkout == CallClass(Priority.TOAST, None, None)
    assert classify("refundStarPayment", {"user_id": 7}) is None
    assert classify("editUserStarSubscription", {"user_id": 7}) is None


def test_no_one_second_window_holds_more_than_per_second() -> None:
    budget = SendBudget(RULES)
    for chat in range(10):
        budget.add(message(chat), 0.0)
    granted, _, wake_at = drain(budget, 0.0)
    assert len(granted) == 4
    assert wake_at == 1.0
    assert drain(budget, 0.999)[0] == []
    assert len(drain(budget, 1.0)[0]) == 4
    assert len(drain(budget, 2.0)[0]) == 2
    assert drain(budget, 2.0)[2] == math.inf  # nothing waits


def test_one_chat_gets_bursts_of_per_chat_then_one_a_second() -> None:
    budget = SendBudget(SendRules(per_second=30, per_chat=3, chat_window_s=3.0))
    for _ in range(5):
        budget.add(message(1), 0.0)
    granted, _, wake_at = drain(budget, 0.0)
    assert len(granted) == 3
    assert wake_at == 3.0
    assert len(drain(budget, 3.0)[0]) == 2


def test_messages_in_one_chat_keep_their_order() -> None:
    budget = SendBudget(RULES)
    first = budget.add(message(1), 0.0)
    second = budget.add(message(1), 0.1)
    assert [t.seq for t in drain(budget, 0.2)[0]] == [first.seq, second.seq]


def test_a_toast_goes_even_when_the_second_is_full_and_takes_no_slot() -> None:
    budget = SendBudget(RULES)
    for chat in range(4):
        budget.add(message(chat), 0.0)
    drain(budget, 0.0)
    toasts = [budget.add(TOAST, 0.2) for _ in range(10)]
    assert [t.seq for t in drain(budget, 0.2)[0]] == [t.seq for t in toasts]
    for chat in range(4):
        budget.add(message(chat), 0.5)
    assert len(drain(budget, 1.0)[0]) == 4  # the toasts took none of this second's slots


def test_toasts_go_before_messages_that_waited_longer() -> None:
    budget = SendBudget(RULES)
    for chat in range(4):
        budget.add(message(chat), 0.0)
    drain(budget, 0.0)
    late_message = budget.add(message(9), 0.2)
    toast = budget.add(TOAST, 0.5)
    granted, _, _ = drain(budget, 1.0)
    assert [t.seq for t in granted] == [toast.seq, late_message.seq]


def test_cosmetic_calls_get_only_their_share_of_each_second() -> None:
    budget = SendBudget(RULES)
    for chat in range(4):
        budget.add(cosmetic(chat), 0.0)
    granted, _, wake_at = drain(budget, 0.0)
    assert len(granted) == 2  # cosmetic_per_second
    assert wake_at == 1.0
    reply = budget.add(message(50), 0.0)
    assert [t.seq for t in drain(budget, 0.0)[0]] == [reply.seq]  # messages still go


def test_cosmetic_calls_wait_behind_messages() -> None:
    budget = SendBudget(RULES)
    action = budget.add(cosmetic(1), 0.0)
    replies = [budget.add(message(chat), 0.1) for chat in (2, 3, 4, 5)]
    granted, _, _ = drain(budget, 0.2)
    assert [t.seq for t in granted] == [r.seq for r in replies]
    assert [t.seq for t in drain(budget, 1.2)[0]] == [action.seq]


def test_a_cosmetic_call_leaves_the_chats_last_two_slots_to_messages() -> None:
    rules = SendRules(per_second=30, per_chat=3, chat_window_s=3.0, cosmetic_max_wait_s=10.0)
    budget = SendBudget(rules)
    budget.add(cosmetic(1), 0.0)
    assert len(drain(budget, 0.0)[0]) == 1
    action = budget.add(cosmetic(1, key="another"), 0.5)
    assert drain(budget, 0.5)[0] == []  # one of three slots used: the other two are messages'
    post = budget.add(message(1), 0.6)
    photo = budget.add(message(1), 0.7)
    assert [t.seq for t in drain(budget, 0.7)[0]] == [post.seq, photo.seq]
    granted, _, wake_at = drain(budget, 3.0)
    assert granted == []
    assert wake_at == 3.7  # until only one of the chat's three slots is taken
    assert [t.seq for t in drain(budget, 3.7)[0]] == [action.seq]


def test_cosmetic_calls_never_take_the_seconds_last_slots() -> None:
    budget = SendBudget(RULES)  # 4 a second, 2 of them at most cosmetic
    budget.add(message(1), 0.0)
    budget.add(message(2), 0.0)
    assert len(drain(budget, 0.0)[0]) == 2
    budget.add(cosmetic(3), 0.1)
    granted, _, wake_at = drain(budget, 0.1)
    assert granted == []  # two slots left in this second, both kept for messages
    assert wake_at == 1.0


def test_a_stale_cosmetic_call_is_dropped_and_a_message_never_is() -> None:
    budget = SendBudget(RULES)
    budget.rate_limited(0.0, 60.0)
    action = budget.add(cosmetic(1), 0.0)
    reply = budget.add(message(1), 0.0)
    _, dropped, wake_at = drain(budget, 1.0)
    assert dropped == []
    assert wake_at == RULES.cosmetic_max_wait_s
    _, dropped, wake_at = drain(budget, RULES.cosmetic_max_wait_s)
    assert dropped == [Drop(action, "stale")]
    assert wake_at == 60.0
    assert [t.seq for t in drain(budget, 60.0)[0]] == [reply.seq]


def test_a_newer_cosmetic_call_replaces_an_older_one_with_its_key() -> None:
    budget = SendBudget(RULES)
    budget.rate_limited(0.0, 1.0)
    older = budget.add(cosmetic(1), 0.0)
    other_chat = budget.add(cosmetic(2), 0.1)
    newer = budget.add(cosmetic(1), 0.5)
    _, dropped, _ = drain(budget, 0.5)
    assert dropped == [Drop(older, "merged")]
    assert {t.seq for t in drain(budget, 1.0)[0]} == {other_chat.seq, newer.seq}


def test_a_429_about_no_chat_holds_every_chat_until_retry_after() -> None:
    budget = SendBudget(RULES)
    budget.rate_limited(10.0, 5.0)
    budget.rate_limited(11.0, 1.0)  # a shorter verdict does not shorten the wait
    reply = budget.add(in_chat(1), 11.0)
    granted, _, wake_at = drain(budget, 12.0)
    assert granted == []
    assert wake_at == 15.0
    assert [t.seq for t in drain(budget, 15.0)[0]] == [reply.seq]


def test_a_withdrawn_ticket_is_not_counted() -> None:
    budget = SendBudget(RULES)
    for chat in range(4):
        budget.add(message(chat), 0.0)
    drain(budget, 0.0)
    gone = budget.add(message(8), 0.1)
    budget.withdraw(gone)
    assert budget.waiting == 0
    assert drain(budget, 1.0) == ([], [], math.inf)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"per_second": 0}, "0"),
        ({"per_chat": 1}, "1"),
        ({"per_second": 3, "cosmetic_per_second": 4}, "4"),
    ],
)
def test_rules_refuse_impossible_numbers(kwargs: dict[str, int], bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        SendRules(**kwargs)  # type: ignore[arg-type]


def test_overall_gives_cosmetic_calls_a_fifth() -> None:
    assert SendRules.overall(25).cosmetic_per_second == 5
    assert SendRules.overall(2).cosmetic_per_second == 1


def test_status_posts_leave_the_seconds_last_slots_to_photos() -> None:
    budget = SendBudget(RULES)  # 4 a second, the last 2 kept for replies and photos
    for chat in range(4):
        budget.add(CallClass(Priority.STATUS, chat, None), 0.0)
    assert len(drain(budget, 0.0)[0]) == 2
    photo = budget.add(message(9), 0.3)
    assert [t.seq for t in drain(budget, 0.3)[0]] == [photo.seq]


def test_status_posts_leave_a_chats_last_two_slots_to_photos() -> None:
    budget = SendBudget(SendRules(per_second=30, per_chat=5, chat_window_s=5.0))
    posts = [budget.add(CallClass(Priority.STATUS, 1, None), 0.0) for _ in range(5)]
    assert [t.seq for t in drain(budget, 0.0)[0]] == [p.seq for p in posts[:3]]
    photos = [budget.add(message(1), 0.5) for _ in range(2)]
    assert [t.seq for t in drain(budget, 0.5)[0]] == [p.seq for p in photos]


def in_chat(chat: int, priority: Priority = Priority.MESSAGE) -> CallClass:
    """A call about *chat*: counted in its window, held by a 429 for it."""
    return CallClass(priority, chat, None, holder=chat)


def test_a_429_in_one_chat_holds_that_chat_only() -> None:
    budget = SendBudget(RULES)
    assert not budget.rate_limited(0.0, 30.0, chat=-100)  # a group chat got a 429
    held = budget.add(in_chat(-100), 0.0)
    other = budget.add(in_chat(1), 0.0)
    toast = budget.add(TOAST, 0.0)
    granted, _, wake_at = drain(budget, 0.0)
    assert [t.seq for t in granted] == [toast.seq, other.seq]
    assert wake_at == 30.0
    assert [t.seq for t in drain(budget, 30.0)[0]] == [held.seq]


def test_429s_in_several_chats_at_once_hold_every_chat() -> None:
    budget = SendBudget(RULES)
    # Telegram is telling the bot, not one chat, to slow down: the third holds everyone.
    assert [budget.rate_limited(0.5, 10.0, chat=chat) for chat in (1, 2, 3)] == [
        False,
        False,
        True,
    ]
    elsewhere = budget.add(in_chat(4), 0.5)
    toast = budget.add(TOAST, 0.5)
    granted, _, wake_at = drain(budget, 0.5)
    assert [t.seq for t in granted] == [toast.seq]
    assert wake_at == 10.5
    assert [t.seq for t in drain(budget, 10.5)[0]] == [elsewhere.seq]


def test_answers_are_never_held_by_a_429() -> None:
    budget = SendBudget(RULES)
    assert budget.rate_limited(0.0, 60.0)  # a 429 for a call of no chat: all else waits
    answers = [budget.add(TOAST, 0.0) for _ in range(3)]  # presses' and a checkout's
    reply = budget.add(message(1), 0.0)
    granted, _, wake_at = drain(budget, 0.0)
    assert [t.seq for t in granted] == [t.seq for t in answers]
    assert wake_at == 60.0
    assert [t.seq for t in drain(budget, 60.0)[0]] == [reply.seq]


def test_a_group_gets_telegrams_group_budget() -> None:
    rules = SendRules(per_second=30, per_chat=5, per_group=20, group_window_s=60.0)
    budget = SendBudget(rules)
    times: list[int] = []
    for now in range(121):
        if now < 21:  # one a second, a pace a private chat's budget allows
            budget.add(message(-100), float(now))
        times += [now for _ in drain(budget, float(now))[0]]
    assert times[:20] == list(range(20))
    assert times[20:] == [60]  # the 21st waits until the first leaves the group's minute


def preview(chat: int) -> CallClass:
    """A status message's forming picture (one per message: they share a key)."""
    return CallClass(Priority.PREVIEW, chat, ("editMessageMedia", chat, 1))


def test_previews_go_after_every_other_cosmetic_call_in_the_same_share() -> None:
    budget = SendBudget(RULES)  # 2 cosmetic calls a second
    pictures = [budget.add(preview(chat), 0.0) for chat in (1, 2)]
    edits = [budget.add(cosmetic(chat), 0.1) for chat in (3, 4)]
    granted, _, wake_at = drain(budget, 0.1)
    assert [t.seq for t in granted] == [e.seq for e in edits]  # the older previews wait
    assert wake_at == 1.1
    assert [t.seq for t in drain(budget, 1.1)[0]] == [p.seq for p in pictures]


def test_a_stale_preview_is_dropped_and_a_newer_one_replaces_a_waiting_one() -> None:
    budget = SendBudget(RULES)
    budget.rate_limited(0.0, 60.0)
    older = budget.add(preview(1), 0.0)
    newer = budget.add(preview(1), 1.0)
    _, dropped, wake_at = drain(budget, 1.0)
    assert dropped == [Drop(older, "merged")]
    assert wake_at == 1.0 + RULES.cosmetic_max_wait_s
    _, dropped, _ = drain(budget, 1.0 + RULES.cosmetic_max_wait_s)
    assert dropped == [Drop(newer, "stale")]


def test_a_preview_is_classified_by_the_priority_the_board_gives_it() -> None:
    params = {"chat_id": 7, "message_id": 3}
    assert classify("editMessageMedia", params) == CallClass(Priority.MESSAGE, 7, None, holder=7)
    assert classify("editMessageMedia", params, priority=Priority.PREVIEW) == CallClass(
        Priority.PREVIEW, 7, ("editMessageMedia", 7, 3), holder=7
    )
    assert Priority.PREVIEW.cosmetic
    assert Priority.COSMETIC.cosmetic
    assert not Priority.STATUS.cosmetic
