"""Every user-facing string, in Russian (the default) and English.

``t(key, lang, **params)`` takes a Telegram ``language_code`` (``en-US``, ``ru``, ``None``)
or an already chosen :data:`Lang`; :func:`lang_of` is the one rule that picks the
language: English for ``en*``, Russian for everything else.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["COMMAND_MENU", "LOOK_BUTTON", "Lang", "lang_of", "t"]

Lang = Literal["ru", "en"]

LOOK_BUTTON: Final = "👁️ Посмотреть"

# The command menu Telegram shows beside the input field (setMyCommands), per language.
COMMAND_MENU: Final[dict[Lang, tuple[tuple[str, str], ...]]] = {
    "ru": (
        ("start", "начать и выбрать персонажа"),
        ("persona", "сменить персонажа"),
        ("balance", "сколько картинок осталось"),
        ("reset", "начать разговор заново"),
        ("help", "что я умею"),
    ),
    "en": (
        ("start", "start and choose a persona"),
        ("persona", "switch persona"),
        ("balance", "images left"),
        ("reset", "start the conversation over"),
        ("help", "what I can do"),
    ),
}

_TEXTS: Final[dict[str, dict[Lang, str]]] = {
    "friend": {"ru": "друг", "en": "friend"},  # the greeting's name when Telegram gives none
    "greeting": {
        "ru": "Привет, {name}! Я бот-собеседник. Выбери, с кем хочешь поговорить:",
        "en": "Hi, {name}! I am a chat companion bot. Choose who you want to talk to:",
    },
    "choose_persona": {
        "ru": "С кем поговорим?",
        "en": "Who would you like to talk to?",
    },
    "persona_chosen": {
        "ru": "Теперь с тобой говорит {persona}.",
        "en": "You are now talking to {persona}.",
    },
    "help": {
        "ru": (
            "Просто пиши мне — я отвечу от лица выбранного персонажа.\n"
            "Под ответом есть кнопка «👁️ Посмотреть»: она рисует картинку к этой сцене.\n\n"
            "/persona — выбрать персонажа\n/balance — сколько картинок осталось\n"
            "/reset — начать разговор заново\n/help — эта подсказка"
        ),
        "en": (
            "Just write to me and I will answer as the persona you chose.\n"
            "Under a reply, the «👁️ Посмотреть» button draws a picture of that scene.\n\n"
            "/persona — choose a persona\n/balance — images left\n"
            "/reset — start the conversation over\n/help — this help"
        ),
    },
    "conversation_reset": {
        "ru": "Начинаем заново: {persona} не помнит прошлого разговора.",
        "en": "Starting over: {persona} does not remember the earlier conversation.",
    },
    "balance": {
        "ru": "Картинок на балансе: {balance}.",
        "en": "Images on your balance: {balance}.",
    },
    "balance_subscription": {
        "ru": "Подписка до {until} (UTC): ещё {left} из {daily} картинок сегодня.",
        "en": "Subscription until {until} (UTC): {left} of {daily} images left today.",
    },
    "llm_fallback": {
        "ru": "Прости, я сейчас задумался и потерял мысль. Напиши ещё раз чуть позже?",
        "en": "Sorry, I lost my train of thought. Could you write again a bit later?",
    },
    "unknown_command": {
        "ru": "Не знаю такой команды. /help подскажет, что я умею.",
        "en": "I don't know that command. /help shows what I can do.",
    },
    "only_text": {
        "ru": "Я понимаю только текст.",
        "en": "I only understand text.",
    },
    # Toasts answering a press on «👁️ Посмотреть» (answerCallbackQuery, ≤ 200 chars).
    "toast_started": {"ru": "Рисую…", "en": "Drawing…"},
    "toast_in_flight": {
        "ru": "Картинка к этому сообщению уже рисуется.",
        "en": "The picture for this message is already being drawn.",
    },
    "toast_resent": {"ru": "Вот она ещё раз.", "en": "Here it is again."},
    "toast_stale": {
        "ru": "Эта кнопка больше не работает.",
        "en": "This button no longer works.",
    },
    "toast_cancelled": {"ru": "Отменено.", "en": "Cancelled."},
    "toast_nothing_to_cancel": {
        "ru": "Отменять уже нечего.",
        "en": "Nothing to cancel any more.",
    },
    # One short sentence after a failed request (docs/product.md, P3).
    "fail_no_quota": {
        "ru": "Картинки закончились. Напиши администратору, чтобы пополнить баланс, "
        "или загляни завтра, если у тебя подписка.",
        "en": "You are out of pictures. Ask the administrator for more, or come back "
        "tomorrow if you have a subscription.",
    },
    "fail_busy": {
        "ru": "Художник сейчас занят. Попробуй через пару минут.",
        "en": "The artist is busy right now. Please try again in a few minutes.",
    },
    "fail_generation": {
        "ru": "Не получилось нарисовать картинку. Попробуй позже — баланс не списан.",
        "en": "Could not draw the picture. Please try later; nothing was charged.",
    },
    "fail_send": {
        "ru": "Картинка готова, но Telegram не принял её. Попробуй ещё раз — баланс не списан.",
        "en": "The picture is ready but Telegram refused it. Try again; nothing was charged.",
    },
    "fail_disabled": {
        "ru": "Картинки сейчас выключены.",
        "en": "Pictures are turned off right now.",
    },
    "status_queued": {
        "ru": "🎨 Картинка в очереди: {position}-я.",
        "en": "🎨 Your picture is in the queue: number {position}.",
    },
    "status_waiting_gpu": {
        "ru": "🎨 Жду видеокарту…",
        "en": "🎨 Waiting for the GPU…",
    },
    "status_running": {
        "ru": "🎨 Рисую: {percent}%",
        "en": "🎨 Drawing: {percent}%",
    },
    "status_sending": {"ru": "🎨 Почти готово…", "en": "🎨 Almost done…"},
    "cancel_button": {"ru": "✖ Отмена", "en": "✖ Cancel"},
    "admin_only": {
        "ru": "Эта команда только для администраторов.",
        "en": "This command is for administrators only.",
    },
    "grant_usage": {
        "ru": "Использование: /grant <user_id> <число>",
        "en": "Usage: /grant <user_id> <count>",
    },
    "grant_done": {
        "ru": "Пользователю {user_id} начислено {images}. Баланс: {balance}.",
        "en": "Granted {images} to user {user_id}. Balance: {balance}.",
    },
    "subscribe_usage": {
        "ru": "Использование: /subscribe <user_id> <дней>",
        "en": "Usage: /subscribe <user_id> <days>",
    },
    "subscribe_done": {
        "ru": "Подписка пользователя {user_id} действует до {until} (UTC).",
        "en": "User {user_id} is subscribed until {until} (UTC).",
    },
    # The picture report: /stats for admins, python -m bot stats for operators (English).
    "stats_usage": {
        "ru": "Использование: /stats [30m | 12h | 7d | 2w | 2026-11-01]",
        "en": "Usage: /stats [30m | 12h | 7d | 2w | 2026-11-01]",
    },
    "stats_title": {
        "ru": "Картинки, {since} → {until} UTC",
        "en": "Pictures, {since} → {until} UTC",
    },
    "stats_empty": {"ru": "За это время нажатий не было.", "en": "No presses in this window."},
    "stats_presses": {"ru": "нажатий", "en": "presses"},
    "stats_generated": {"ru": "нарисовано", "en": "generated"},
    "stats_failed": {"ru": "не вышло", "en": "failed"},
    "stats_other": {"ru": "другое", "en": "other"},
    "stats_rate": {"ru": "успех", "en": "success rate"},
    "stats_p50": {"ru": "время p50", "en": "time p50"},
    "stats_p95": {"ru": "время p95", "en": "time p95"},
    "stats_persona": {"ru": "персонаж", "en": "persona"},
}


def lang_of(language_code: str | None) -> Lang:
    """English for English-speaking Telegram users (``en``, ``en-US``), Russian otherwise."""
    return "en" if language_code and language_code.lower().startswith("en") else "ru"


def t(key: str, lang: str | None = "ru", /, **params: object) -> str:
    """The text *key* in the language :func:`lang_of` picks for *lang*, *params* filled in."""
    template = _TEXTS[key][lang_of(lang)]
    return template.format(**params) if params else template
