"""The real ``python -m bot`` process buys a pack with Stars and draws a picture with it.

Against the fakes on 127.0.0.1 (real clock): a user with no free pictures presses
«👁️ Посмотреть» and is offered the packs, buys one (invoice, pre-checkout, payment),
is thanked with the new balance, and the next press draws a picture charged to it.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from bot.core.personas import load_personas
from bot.core.settings import SHIPPED_PERSONAS
from bot.core.texts import t
from store import open_store
from tests.fakes.comfy import FakeComfy, PromptScript
from tests.fakes.telegram import DEFAULT_USER_ID, TEST_TOKEN, FakeTelegram
from tests.processes import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    bot_environment,
    running_bot,
    serve_fakes,
)
from tests.rows import balance

pytestmark = pytest.mark.slow

USER = DEFAULT_USER_ID


async def test_buy_a_pack_then_draw_a_picture_with_it(tmp_path: Path) -> None:
    telegram = FakeTelegram()
    comfy = FakeComfy(loras=tuple(load_personas(SHIPPED_PERSONAS).lora_files()))
    comfy.default_script = PromptScript(run_s=0.3, steps=2)
    async with trio.open_nursery() as nursery:
        fakes = await serve_fakes(nursery, telegram, comfy)
        env = bot_environment(tmp_path, FREE_IMAGES="0", STARS_PACKS="5:25", **fakes)
        async with running_bot(env) as (process, output):
            with trio.fail_after(START_TIMEOUT_S):
                telegram.user_says("привет")
                await telegram.wait_for(lambda: len(telegram.sent) == 1, timeout_s=START_TIMEOUT_S)
                reply = telegram.sent[0]
                telegram.user_presses(reply.message_id, "look")
                offer_text = t("fail_no_quota_buy", "ru")
                await telegram.wait_for(lambda: offer_text in telegram.texts_to(USER))
                offers = next(s for s in telegram.sent if s.text == offer_text)
                assert offers.buttons() == [
                    (t("buy_pack_button", "ru", pictures=5, stars=25), "buy:5")
                ]
                telegram.user_presses(offers.message_id, "buy:5")
                await telegram.wait_for(lambda: len(telegram.invoices) == 1)
                [invoice] = telegram.invoices
                charge = await telegram.user_buys(invoice.payload, invoice.amount)
                assert charge is not None
                thanks = t("pay_thanks_pack", "ru", pictures=5, balance=5)
                await telegram.wait_for(lambda: thanks in telegram.texts_to(USER))
                telegram.user_presses(reply.message_id, "look")
                await telegram.wait_for(lambda: any(s.kind == "photo" for s in telegram.sent))
            photo = next(s for s in telegram.sent if s.kind == "photo")
            assert photo.reply_to_message_id == reply.message_id
            assert photo.buttons() == [(t("variant_button", "ru"), f"variant:{reply.message_id}")]
            with trio.fail_after(STOP_TIMEOUT_S):
                while b"image_generated" not in output:  # noqa: ASYNC110 (a pipe, no event)
                    await trio.sleep(0.05)
                process.send_signal(signal.SIGTERM)
                await process.wait()
        nursery.cancel_scope.cancel()
    text = output.decode()
    assert process.returncode == 0, text
    assert "payment_succeeded" in text
    assert "stars=25" in text
    assert TEST_TOKEN not in text
    assert "pre_checkout_query" in (telegram.allowed_updates or [])
    with open_store(tmp_path / "data" / "bot.db") as store:
        assert balance(store, USER) == 4
        [job] = list(store.db.query("SELECT state, quota_source, paid FROM jobs"))
        assert (job["state"], job["quota_source"], job["paid"]) == ("delivered", "balance", 1)
