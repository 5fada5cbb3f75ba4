"""``/forget``: a user deletes their conversation and the texts kept of it (docs/product.md, P20).

One transaction in the store (``store.retention.forget_user``); the balance, the
subscription and the record of what was charged stay. The confirmation names both, so
nobody fears for their pictures.
"""

from __future__ import annotations

import logging

from bot.core.commands import ForgetCmd
from bot.core.deps import Deps
from bot.core.texts import t
from common.logfields import fields
from store.retention import forget_user

__all__ = ["handle_forget"]

log = logging.getLogger(__name__)


async def handle_forget(deps: Deps, cmd: ForgetCmd) -> None:
    """Delete, then confirm: the deletion is committed before the answer is sent."""
    gone = await deps.write(
        f"forget user {cmd.ctx.user_id}",
        lambda: forget_user(deps.store.db, cmd.ctx.user_id, now=deps.now()),
    )
    log.info(
        "user_forgot_their_texts",
        extra=fields(
            user=cmd.ctx.user_id,
            turns=gone.turns,
            texts=gone.texts,
            scenes=gone.scenes,
            parked=gone.parked,
        ),
    )
    await deps.api.send_message(cmd.ctx.chat_id, t("forget_done", cmd.ctx.lang))
