"""One explicit async function per chat command: greet, switch persona, reply.

Picture presses are handled in :mod:`bot.pictures.press`, balance and admin commands in
:mod:`bot.payments.accounts`. Every handler gets the :class:`~bot.core.deps.Deps` and its command.
"""

from __future__ import annotations

import logging
from typing import Final

import trio

from bot.chat.drafts import DraftWriter
from bot.chat.keyboards import look_keyboard, persona_keyboard
from bot.core.buttons import ChoosePersona
from bot.core.commands import (
    ChatText,
    Context,
    HelpCmd,
    NonText,
    PersonaCmd,
    Press,
    PrivacyCmd,
    ResetCmd,
    StartCmd,
    UnknownCallback,
    UnknownCmd,
)
from bot.core.deps import Deps
from bot.core.llm import (
    MAX_REPLY_CHARS,
    REPLY_MAX_TOKENS,
    LlmError,
    offline_reply,
    persona_messages,
)
from bot.core.personas import Persona
from bot.core.texts import t
from bot.telegram.errors import TelegramError
from common.logfields import fields

__all__ = [
    "fallback_line",
    "handle_chat_text",
    "handle_help",
    "handle_non_text",
    "handle_persona",
    "handle_persona_choice",
    "handle_privacy",
    "handle_reset",
    "handle_start",
    "handle_unknown_callback",
    "handle_unknown_command",
    "send_persona_text",
]

log = logging.getLogger(__name__)

TYPING_ACTION: Final = "typing"
TYPING_DEADLINE_S: Final = 5.0  # one cosmetic chat action is given up after this
# An action shows for 5 s at most, so it is sent again this often while the LLM thinks
# (docs/telegram.md, T9).
TYPING_RENEW_S: Final = 4.0


async def send_persona_text(deps: Deps, ctx: Context, persona: Persona, text: str) -> int:
    """Send the persona's words, with «👁️ Посмотреть» in a private chat when pictures are on.

    The stored row is what makes a later press on the button genuine.
    """
    text = text[:MAX_REPLY_CHARS]
    markup = look_keyboard(ctx.lang) if ctx.private and deps.settings.images_available else None
    message = await deps.api.send_message(ctx.chat_id, text, reply_markup=markup)
    await deps.write(
        f"text {message.message_id} sent to chat {ctx.chat_id}",
        lambda: deps.store.sent.add(
            chat_id=ctx.chat_id,
            message_id=message.message_id,
            user_id=ctx.user_id,
            persona_key=persona.key,
            text=text,
            now=deps.now(),
        ),
    )
    return message.message_id


def fallback_line(persona: Persona, lang: str) -> str:
    """The line shown when the LLM fails, in the persona's own grammatical gender."""
    if persona.fallback_line is not None and (lang != "en" or persona.en is not None):
        return persona.fallback_line
    return t("llm_fallback_feminine" if persona.gender == "feminine" else "llm_fallback", lang)


async def handle_start(deps: Deps, cmd: StartCmd) -> None:
    """The greeting and the persona keyboard; a deep link's persona key opens that persona."""
    user = await deps.ensure_user(cmd.ctx)
    found = deps.personas.find(cmd.payload) if cmd.payload is not None else None
    persona = found.speaking(cmd.ctx.lang) if found is not None else None
    if persona is not None:
        await deps.write(
            f"persona of user {cmd.ctx.user_id}",
            lambda: deps.store.users.set_persona(cmd.ctx.user_id, persona.key, now=deps.now()),
        )
        await send_persona_text(deps, cmd.ctx, persona, persona.greeting)
        return
    if cmd.payload is not None:
        log.info(
            "chat_deep_link_unknown_persona",
            extra=fields(user=user.user_id, payload=cmd.payload),
        )
    name = cmd.ctx.first_name or t("friend", cmd.ctx.lang)
    await deps.api.send_message(
        cmd.ctx.chat_id,
        t("greeting", cmd.ctx.lang, name=name),
        reply_markup=persona_keyboard(
            deps.personas.personas, current=user.persona_key, lang=cmd.ctx.lang
        ),
    )


async def handle_help(deps: Deps, cmd: HelpCmd) -> None:
    text = t("help", cmd.ctx.lang)
    if deps.settings.payments_on:
        text += "\n" + t("help_payments", cmd.ctx.lang)
    await deps.api.send_message(cmd.ctx.chat_id, text)


async def handle_privacy(deps: Deps, cmd: PrivacyCmd) -> None:
    """``/privacy``: what is kept and for how long, from the retention settings."""
    lang = cmd.ctx.lang
    policy = deps.settings.retention

    def kept(days: int) -> str:
        return t("privacy_forever", lang) if days == 0 else t("privacy_days", lang, days=days)

    contact = deps.settings.support_contact
    text = t(
        "privacy",
        lang,
        turns=kept(policy.turns_days),
        sent=kept(policy.sent_messages_days),
        jobs=kept(policy.jobs_days),
        events=kept(policy.events_days),
        contact=t("privacy_contact", lang, contact=contact) if contact else "",
    )
    await deps.api.send_message(cmd.ctx.chat_id, text)


async def handle_persona(deps: Deps, cmd: PersonaCmd) -> None:
    user = await deps.ensure_user(cmd.ctx)
    current = deps.personas.get(user.persona_key).key
    await deps.api.send_message(
        cmd.ctx.chat_id,
        t("choose_persona", cmd.ctx.lang),
        reply_markup=persona_keyboard(deps.personas.personas, current=current, lang=cmd.ctx.lang),
    )


async def handle_persona_choice(deps: Deps, cmd: Press[ChoosePersona]) -> None:
    found = deps.personas.find(cmd.button.key)
    if found is None:
        await deps.answer_query(cmd.query_id, text=t("toast_stale", cmd.ctx.lang))
        return
    persona = found.speaking(cmd.ctx.lang)
    await deps.ensure_user(cmd.ctx)
    await deps.write(
        f"persona of user {cmd.ctx.user_id}",
        lambda: deps.store.users.set_persona(cmd.ctx.user_id, persona.key, now=deps.now()),
    )
    await deps.answer_query(
        cmd.query_id, text=t("persona_chosen", cmd.ctx.lang, persona=persona.name)
    )
    await send_persona_text(deps, cmd.ctx, persona, persona.greeting)


async def handle_reset(deps: Deps, cmd: ResetCmd) -> None:
    """Start the conversation with the current persona over: its turns are forgotten."""
    user = await deps.ensure_user(cmd.ctx)
    persona = deps.personas.get(user.persona_key).speaking(cmd.ctx.lang)
    dropped = await deps.write(
        f"conversation of user {cmd.ctx.user_id} reset",
        lambda: deps.store.conversation.clear(user_id=cmd.ctx.user_id, persona_key=persona.key),
    )
    log.info(
        "chat_conversation_reset",
        extra=fields(user=user.user_id, persona=persona.key, turns=dropped),
    )
    await deps.api.send_message(
        cmd.ctx.chat_id, t("conversation_reset", cmd.ctx.lang, persona=persona.name)
    )
    await send_persona_text(deps, cmd.ctx, persona, persona.greeting)


async def handle_chat_text(deps: Deps, cmd: ChatText) -> None:
    """Answer in the persona's voice: the LLM when configured, else an offline line."""
    user = await deps.ensure_user(cmd.ctx)
    persona = deps.personas.get(user.persona_key).speaking(cmd.ctx.lang)
    if deps.llm is None:
        reply = offline_reply(persona, rng=deps.rng)
    else:
        reply = await _llm_reply(deps, cmd, persona)
    await send_persona_text(deps, cmd.ctx, persona, reply)


async def _llm_reply(deps: Deps, cmd: ChatText, persona: Persona) -> str:
    assert deps.llm is not None
    if not deps.limits.llm.take(cmd.ctx.user_id, trio.current_time()):
        log.info("llm_call_throttled", extra=fields(user=cmd.ctx.user_id))
        return t("llm_throttled", cmd.ctx.lang)
    conversation = deps.store.conversation
    history = conversation.last(
        user_id=cmd.ctx.user_id, persona_key=persona.key, limit=deps.settings.llm_history_turns
    )
    answer: str | LlmError
    # A private chat sees the reply grow as the LLM writes it (bot/chat/drafts.py).
    drafts = (
        DraftWriter(deps, cmd.ctx.chat_id) if cmd.ctx.private and deps.drafts.available else None
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_keep_typing, deps, cmd.ctx.chat_id)
        if drafts is not None:
            nursery.start_soon(drafts.run)
        try:
            answer = await deps.llm.complete(
                persona_messages(persona, history, cmd.text),
                max_tokens=REPLY_MAX_TOKENS,
                on_text=drafts.show if drafts is not None else None,
            )
        except LlmError as exc:  # caught inside, so it never arrives in an ExceptionGroup
            answer = exc
        nursery.cancel_scope.cancel()
    if isinstance(answer, LlmError):
        log.warning(
            "llm_reply_failed",
            extra=fields(user=cmd.ctx.user_id, persona=persona.key, error=str(answer)),
        )
        return fallback_line(persona, cmd.ctx.lang)
    reply = answer[:MAX_REPLY_CHARS]
    await deps.write(
        f"conversation of user {cmd.ctx.user_id}",
        lambda: conversation.add_exchange(
            user_id=cmd.ctx.user_id,
            persona_key=persona.key,
            asked=cmd.text,
            answered=reply,
            now=deps.now(),
        ),
    )
    return reply


async def _keep_typing(deps: Deps, chat_id: int) -> None:
    """ "typing…" until cancelled (the LLM answered); cosmetic, so failures are only logged."""
    while True:
        try:
            with trio.move_on_after(TYPING_DEADLINE_S):
                await deps.api.send_chat_action(chat_id, TYPING_ACTION)
        except TelegramError as exc:
            log.debug("telegram_typing_action_failed", extra=fields(chat=chat_id, error=str(exc)))
        await trio.sleep(TYPING_RENEW_S)


async def handle_non_text(deps: Deps, cmd: NonText) -> None:
    await deps.api.send_message(cmd.ctx.chat_id, t("only_text", cmd.ctx.lang))


async def handle_unknown_command(deps: Deps, cmd: UnknownCmd) -> None:
    if cmd.ctx.private:
        await deps.api.send_message(cmd.ctx.chat_id, t("unknown_command", cmd.ctx.lang))


async def handle_unknown_callback(deps: Deps, cmd: UnknownCallback) -> None:
    """A forged or stale button: stop the spinner, do nothing else."""
    log.info("press_unknown_data_ignored", extra=fields(user=cmd.user_id))
    await deps.answer_query(cmd.query_id, text=t("toast_stale", cmd.lang))
