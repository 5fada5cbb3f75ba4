"""Telegram Stars end to end, in-process: offers, pre-checkout, credit once, refunds, variants."""

from __future__ import annotations

from pathlib import Path

import trio

from bot.core.texts import t
from bot.payments.offers import PackPayload, SubscriptionPayload, encode_payload
from store import NewJob, Store
from tests.fakes.comfy import FakeComfy
from tests.fakes.telegram import DEFAULT_USER_ID, FakeTelegram, SentRecord
from tests.harness import Bot, start_bot, threads_run_in_real_time
from tests.rows import balance, deliver, user_row
from tests.test_image_flow import photos, press_look, say_and_get_reply, wait_job_settled

USER = DEFAULT_USER_ID
ADMIN = 42
PACKS = "10:50,50:200"
PACK_10 = encode_payload(PackPayload(10, 50, USER))


def events(store: Store) -> list[tuple[str, str | None]]:
    return [(row["event"], row["detail"]) for row in store.events.since()]


def last_to(tg: FakeTelegram, chat_id: int = USER) -> SentRecord:
    return [s for s in tg.sent if s.chat_id == chat_id][-1]


async def command(tg: FakeTelegram, text: str, *, user_id: int = USER) -> SentRecord:
    count = len([s for s in tg.sent if s.chat_id == user_id])
    tg.user_says(text, user_id=user_id)
    await tg.wait_for(lambda: len([s for s in tg.sent if s.chat_id == user_id]) > count)
    return last_to(tg, user_id)


def balance_of(bot: Bot, user_id: int = USER) -> int:
    with bot.store() as store:
        return balance(store, user_id)


async def test_buy_a_pack_from_the_button_to_the_new_balance(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg = fake_telegram
    bot = await start_bot(nursery, tmp_path, tg, free_images=3, stars_packs=PACKS)
    offers = await command(tg, "/buy")
    assert offers.text == t("buy_choose", "ru")
    assert offers.buttons() == [
        (t("buy_pack_button", "ru", pictures=10, stars=50), "buy:10"),
        (t("buy_pack_button", "ru", pictures=50, stars=200), "buy:50"),
    ]
    query = tg.user_presses(offers.message_id, "buy:10")
    await tg.wait_for(lambda: len(tg.invoices) == 1)
    [invoice] = tg.invoices
    assert (invoice.method, invoice.chat_id, invoice.amount) == ("sendInvoice", USER, 50)
    assert invoice.payload == PACK_10
    assert query in tg.callback_answers
    charge = await tg.user_buys(invoice.payload, invoice.amount)
    assert charge is not None
    await tg.wait_for(
        lambda: last_to(tg).text == t("pay_thanks_pack", "ru", pictures=10, balance=13)
    )
    assert balance_of(bot) == 13
    with bot.store() as store:
        [(event, detail)] = events(store)
    assert event == "payment_succeeded"
    assert detail is not None
    assert "stars=50" in detail
    assert charge in detail
    await bot.stop()


async def test_pre_checkout_is_answered_at_once_under_a_flood_of_other_updates(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg = fake_telegram
    bot = await start_bot(nursery, tmp_path, tg, stars_packs=PACKS)
    tg.latency_s["sendMessage"] = 2.0  # every reply is slow: lanes and the limiter fill up
    for n in range(120):
        tg.user_says(f"привет {n}", user_id=1000 + n)
    for n in range(60):  # the buyer's own chat is busy too
        tg.user_says(f"ещё {n}", user_id=USER)
    start = trio.current_time()
    query = tg.user_checks_out(PACK_10, 50)
    await tg.wait_for(lambda: query in tg.checkout_answers)
    answer = tg.checkout_answers[query]
    assert answer.ok
    assert answer.at - start < 1.0  # Telegram allows 10 s; the flood would take minutes
    assert len([s for s in tg.sent if s.chat_id != USER]) < 120  # the flood was still going
    await bot.stop()


async def test_pre_checkout_refusals_are_sentences_the_buyer_reads(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg = fake_telegram
    bot = await start_bot(nursery, tmp_path, tg, stars_packs=PACKS)
    cases = [
        (encode_payload(PackPayload(10, 40, USER)), 40, "pay_refused_offer"),  # old price
        (PACK_10, 49, "pay_refused_offer"),  # amount does not match
        (encode_payload(PackPayload(10, 50, USER + 1)), 50, "pay_refused_buyer"),
        ("forged", 50, "pay_refused_offer"),
    ]
    for payload, amount, key in cases:
        query = tg.user_checks_out(payload, amount)
        await tg.wait_for(lambda q=query: q in tg.checkout_answers)
        answer = tg.checkout_answers[query]
        assert (answer.ok, answer.error_message) == (False, t(key, "ru"))
    query = tg.user_checks_out(PACK_10, 50, currency="USD", language_code="en")
    await tg.wait_for(lambda: query in tg.checkout_answers)
    assert tg.checkout_answers[query].error_message == t("pay_refused_offer", "en")
    await bot.stop()


async def test_a_redelivered_successful_payment_credits_once(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg = fake_telegram
    bot = await start_bot(nursery, tmp_path, tg, free_images=0, stars_packs=PACKS)
    charge = tg.payment_succeeds(PACK_10, 50)
    await tg.wait_for(lambda: len(tg.sent) == 1)
    tg.payment_succeeds(PACK_10, 50, charge_id=charge)  # Telegram delivers it again
    await trio.sleep(5)
    assert balance_of(bot) == 10
    assert tg.texts_to(USER) == [t("pay_thanks_pack", "ru", pictures=10, balance=10)]
    with bot.store() as store:
        assert [e for e, _ in events(store)] == ["payment_succeeded"]
    await bot.stop()


async def test_a_crash_after_the_credit_does_not_credit_again_at_the_next_start(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg = fake_telegram
    bot = await start_bot(nursery, tmp_path, tg, free_images=0, stars_packs=PACKS)
    # The bot dies as it sends the thank-you: the payment is stored and credited, but the
    # update never left the inbox, so the next start handles it again. (A crash between
    # storing and crediting cannot happen: one transaction; see test_payment_rules.)
    bot.crash_at(lambda r: r.url.path.endswith("/sendMessage"))
    tg.payment_succeeds(PACK_10, 50)
    await bot.done.wait()
    again = await start_bot(nursery, tmp_path, tg, free_images=0, stars_packs=PACKS)
    await trio.sleep(5)
    assert balance_of(again) == 10
    with again.store() as store:
        assert [e for e, _ in events(store)] == ["payment_succeeded"]
    await again.stop()


async def test_a_subscription_and_its_renewal_extend_it_and_balance_shows_the_renewal(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg = fake_telegram
    bot = await start_bot(
        nursery, tmp_path, tg, stars_subscription_price=300, subscription_daily_images=5
    )
    offers = await command(tg, "/buy")
    assert offers.buttons() == [(t("buy_subscription_button", "ru", daily=5, stars=300), "buy:sub")]
    tg.user_presses(offers.message_id, "buy:sub")
    await tg.wait_for(lambda: len(tg.invoices) == 1)
    [link] = tg.invoices
    assert (link.method, link.subscription_period, link.amount) == (
        "createInvoiceLink",
        2592000,
        300,
    )
    await tg.wait_for(
        lambda: last_to(tg).reply_markup is not None and "url" in str(last_to(tg).reply_markup)
    )
    payload = encode_payload(SubscriptionPayload(300, USER))
    assert link.payload == payload
    now = bot.clock()
    first_end = int(now.timestamp()) + 30 * 86400
    query = tg.user_checks_out(payload, 300)
    await tg.wait_for(lambda: query in tg.checkout_answers)
    assert tg.checkout_answers[query].ok
    first = tg.payment_succeeds(
        payload,
        300,
        subscription_expiration_date=first_end,
        is_recurring=True,
        is_first_recurring=True,
    )
    await tg.wait_for(lambda: (last_to(tg).text or "").startswith("Спасибо"))
    tg.payment_succeeds(
        payload, 300, subscription_expiration_date=first_end + 30 * 86400, is_recurring=True
    )
    await trio.sleep(5)
    with bot.store() as store:
        until = user_row(store, USER).subscription_until
        names = [e for e, _ in events(store)]
    assert until is not None
    assert int(until.timestamp()) == first_end + 30 * 86400
    assert names == ["payment_succeeded", "subscription_renewed"]
    shown = await command(tg, "/balance")
    assert t("balance_renewal", "ru", until=until.strftime("%Y-%m-%d %H:%M")) in (shown.text or "")
    assert until > now
    # an admin stops the renewal; the paid period stays
    await command(tg, "/stoprenewal 5000000001", user_id=ADMIN)
    assert tg.subscription_cancels == []  # not an admin yet: refused
    await bot.stop()
    admin_bot = await start_bot(
        nursery, tmp_path, tg, stars_subscription_price=300, admin_user_ids=str(ADMIN)
    )
    done = await command(tg, f"/stoprenewal {USER}", user_id=ADMIN)
    assert done.text == t("stoprenewal_done", "ru", user_id=USER)
    assert tg.subscription_cancels == [(USER, tg.subscription_cancels[0][1], True)]
    assert tg.subscription_cancels[0][1] != first  # the latest month's charge
    await admin_bot.stop()


async def test_an_admin_refund_after_the_pictures_were_spent_takes_back_what_is_left(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg = fake_telegram
    bot = await start_bot(
        nursery, tmp_path, tg, free_images=0, stars_packs=PACKS, admin_user_ids=str(ADMIN)
    )
    charge = await tg.user_buys(PACK_10, 50)
    assert charge is not None
    await tg.wait_for(lambda: len(tg.texts_to(USER)) == 1)
    with bot.store() as store:  # seven pictures drawn and delivered
        for n in range(7):
            job = NewJob(f"j{n}", f"p{n}", USER, USER, 900 + n, "alice", "ru")
            store.quota.reserve(job, now=bot.clock(), daily_limit=0)
            deliver(store, f"j{n}", now=bot.clock(), file_id=f"f{n}")
    answer = await command(tg, f"/refund {charge}", user_id=ADMIN)
    assert answer.text == t(
        "refund_done", "ru", charge=charge, stars=50, taken=3, images=10, missing=7,
        user_id=USER, balance=0,
    )  # fmt: skip
    assert tg.charges[charge].refunded
    assert balance_of(bot) == 0
    assert tg.texts_to(USER)[-1] == t("refunded_to_user", "ru", stars=50, taken=3, balance=0)
    # Telegram's refunded_payment for the same charge changes nothing more
    tg.payment_refunded(charge)
    again = await command(tg, f"/refund {charge}", user_id=ADMIN)
    assert again.text == t("refund_again", "ru", charge=charge)
    with bot.store() as store:
        assert [e for e, _ in events(store)] == ["payment_succeeded", "payment_refunded"]
    with threads_run_in_real_time(autojump_clock):  # the report is read in a thread
        report = await command(tg, "/stats", user_id=ADMIN)
    assert "\n\nПлатежи\n" in (report.text or "")
    unknown = await command(tg, "/refund nope", user_id=ADMIN)
    assert unknown.text == t("refund_unknown", "ru", charge="nope")
    await bot.stop()


async def test_a_refunded_payment_message_from_telegram_debits_once(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg = fake_telegram
    bot = await start_bot(nursery, tmp_path, tg, free_images=2, stars_packs=PACKS)
    charge = tg.payment_succeeds(PACK_10, 50)
    await tg.wait_for(lambda: len(tg.texts_to(USER)) == 1)
    tg.payment_refunded(charge)
    await tg.wait_for(lambda: len(tg.texts_to(USER)) == 2)
    tg.payment_refunded(charge)  # redelivered
    await trio.sleep(5)
    assert balance_of(bot) == 2
    assert tg.texts_to(USER)[1] == t("refunded_to_user", "ru", stars=50, taken=10, balance=2)
    assert len(tg.texts_to(USER)) == 2
    await bot.stop()


async def test_payments_off_hides_every_buy_button_and_refuses_checkouts(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    tg = fake_telegram
    bot = await start_bot(nursery, tmp_path, tg, comfy=fake_comfy, free_images=0)
    assert "buy" not in [c["command"] for c in tg.commands[""]]
    off = await command(tg, "/buy")
    assert off.text == t("payments_off", "ru")
    shown = await command(tg, "/balance")
    assert shown.reply_markup is None
    reply = await say_and_get_reply(tg)
    query = await press_look(tg, reply)
    assert tg.callback_answers[query].text == t("fail_no_quota", "ru")
    assert tg.callback_answers[query].show_alert
    checkout = tg.user_checks_out(PACK_10, 50)
    await tg.wait_for(lambda: checkout in tg.checkout_answers)
    assert not tg.checkout_answers[checkout].ok
    await bot.stop()


async def test_no_quota_offers_the_packs_when_payments_are_on_and_the_menu_lists_them(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    tg = fake_telegram
    bot = await start_bot(
        nursery, tmp_path, tg, comfy=fake_comfy, free_images=0, stars_packs="10:50"
    )
    menu = [c["command"] for c in tg.commands[""]]
    assert {"buy", "paysupport", "terms"} <= set(menu)
    reply = await say_and_get_reply(tg)
    await press_look(tg, reply)
    await tg.wait_for(lambda: last_to(tg).text == t("fail_no_quota_buy", "ru"))
    assert last_to(tg).buttons() == [(t("buy_pack_button", "ru", pictures=10, stars=50), "buy:10")]
    shown = await command(tg, "/balance")
    assert shown.buttons() == [(t("buy_pack_button", "ru", pictures=10, stars=50), "buy:10")]
    with bot.store() as store:
        assert [(r["event"], r["reason"]) for r in store.events.since()] == [
            ("image_requested", None),
            ("image_failed", "no_quota"),
        ]
    await bot.stop()


async def test_paysupport_and_terms_are_the_operators_texts(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg = fake_telegram
    bot = await start_bot(nursery, tmp_path, tg, stars_packs=PACKS)
    from bot.core.personas import load_personas

    texts = load_personas(bot.settings.personas_file).texts
    assert texts.paysupport is not None
    assert texts.terms is not None
    assert (await command(tg, "/paysupport")).text == texts.paysupport.ru
    count = len(tg.sent)
    tg.user_says("/terms", language_code="en")
    await tg.wait_for(lambda: len(tg.sent) > count)
    assert last_to(tg).text == texts.terms.en
    await bot.stop()


async def test_another_variant_draws_a_new_picture_and_look_still_resends_the_first(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    tg = fake_telegram
    bot = await start_bot(nursery, tmp_path, tg, comfy=fake_comfy, free_images=3)
    reply = await say_and_get_reply(tg)
    await press_look(tg, reply)
    await tg.wait_for(lambda: len(photos(tg)) == 1)
    first = photos(tg)[0]
    assert first.buttons() == [(t("variant_button", "ru"), f"variant:{reply.message_id}")]
    await wait_job_settled(bot)
    query = tg.user_presses(first.message_id, f"variant:{reply.message_id}")
    await tg.wait_for(lambda: query in tg.callback_answers)
    assert tg.callback_answers[query].text == t("toast_started", "ru")
    await tg.wait_for(lambda: len(photos(tg)) == 2)
    await wait_job_settled(bot, jobs=2)
    second = photos(tg)[1]
    assert second.content is not None
    assert second.reply_to_message_id == reply.message_id
    seeds = [s.graph[s.node_of("KSampler")]["inputs"]["seed"] for s in fake_comfy.submitted]
    assert len(set(seeds)) == 2  # a fresh seed
    assert balance_of(bot) == 1  # charged like any picture
    with bot.store() as store:
        assert [(e, d) for e, d in events(store) if e == "image_requested"] == [
            ("image_requested", None),
            ("image_requested", "variant"),
        ]
    # «👁️ Посмотреть» still resends the first picture, free
    await press_look(tg, reply)
    await tg.wait_for(lambda: len(photos(tg)) == 3)
    assert photos(tg)[2].file_id == first.file_id
    assert balance_of(bot) == 1
    await bot.stop()


async def test_a_forged_variant_for_someone_elses_message_is_stale(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    tg = fake_telegram
    bot = await start_bot(nursery, tmp_path, tg, comfy=fake_comfy, free_images=3)
    other = 5_000_000_002
    theirs = await say_and_get_reply(tg, user_id=other)
    mine = await say_and_get_reply(tg)
    query = tg.user_presses(mine.message_id, f"variant:{theirs.message_id + 1000}")
    await tg.wait_for(lambda: query in tg.callback_answers)
    assert tg.callback_answers[query].text == t("toast_stale", "ru")
    assert fake_comfy.submitted == []
    await bot.stop()


async def test_english_users_see_english_labels_and_greeting(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_telegram: FakeTelegram,
    fake_comfy: FakeComfy,
    autojump_clock: object,
) -> None:
    tg = fake_telegram
    bot = await start_bot(nursery, tmp_path, tg, comfy=fake_comfy)
    tg.user_says("/start", language_code="en", first_name="")
    await tg.wait_for(lambda: len(tg.sent) == 1)
    assert tg.sent[0].text == t("greeting", "en", name="friend")
    tg.user_says("hello", language_code="en")
    await tg.wait_for(lambda: len(tg.sent) == 2)
    assert tg.sent[1].buttons() == [("👁️ Show me", "look")]
    await bot.stop()


async def test_help_lists_the_payment_commands_only_while_payments_are_on(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg = fake_telegram
    bot = await start_bot(nursery, tmp_path, tg, stars_packs=PACKS)
    shown = await command(tg, "/help")
    assert shown.text == t("help", "ru") + "\n" + t("help_payments", "ru")
    await bot.stop()
    off = await start_bot(nursery, tmp_path, tg)
    shown = await command(tg, "/help")
    assert shown.text == t("help", "ru")
    await off.stop()


async def test_a_refund_cut_short_before_its_debit_is_finished_by_the_next_refund(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg = fake_telegram
    bot = await start_bot(
        nursery, tmp_path, tg, free_images=0, stars_packs=PACKS, admin_user_ids=str(ADMIN)
    )
    charge = tg.payment_succeeds(PACK_10, 50)
    await tg.wait_for(lambda: len(tg.texts_to(USER)) == 1)
    # Telegram refunds, and the bot dies before it hears so: nothing was debited.
    bot.crash_at(lambda r: r.url.path.endswith("/refundStarPayment"), after=True)
    tg.user_says(f"/refund {charge}", user_id=ADMIN)
    await bot.done.wait()
    assert tg.charges[charge].refunded
    again = await start_bot(
        nursery, tmp_path, tg, free_images=0, stars_packs=PACKS, admin_user_ids=str(ADMIN)
    )
    # The unfinished /refund is in the inbox: handled again, Telegram says "already
    # refunded", and the debit happens now, once.
    await tg.wait_for(lambda: any("10" in s for s in tg.texts_to(ADMIN)))
    assert tg.texts_to(ADMIN)[-1] == t(
        "refund_done", "ru", charge=charge, stars=50, taken=10, images=10, missing=0,
        user_id=USER, balance=0,
    )  # fmt: skip
    assert balance_of(again) == 0
    await again.stop()


async def test_a_payment_is_never_dropped_by_a_full_chat_lane(
    nursery: trio.Nursery, tmp_path: Path, fake_telegram: FakeTelegram, autojump_clock: object
) -> None:
    tg = fake_telegram
    bot = await start_bot(nursery, tmp_path, tg, free_images=0, stars_packs=PACKS)
    tg.latency_s["sendMessage"] = 5.0
    for n in range(100):  # more than a lane holds: the rest of the chat's flood is dropped
        tg.user_says(f"флуд {n}")
    tg.payment_succeeds(PACK_10, 50)

    def credited() -> bool:
        with bot.store() as store:
            user = store.users.get(USER)
        return user is not None and user.image_balance == 10

    with trio.fail_after(60):
        while not credited():  # noqa: ASYNC110 (another connection, no event)
            await trio.sleep(0.5)
    await bot.stop()
