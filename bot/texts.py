"""Every user-facing string, in Russian (the default) and English (SPEC §3.7).

``t(key, lang, **params)`` picks the language from the user's Telegram
``language_code``: English for ``en*``, Russian for everything else.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["LOOK_BUTTON", "Lang", "lang_of", "t"]

Lang = Literal["ru", "en"]

LOOK_BUTTON: Final = "👁️ Посмотреть"

_TEXTS: Final[dict[str, dict[Lang, str]]] = {
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
            "/help — эта подсказка"
        ),
        "en": (
            "Just write to me and I will answer as the persona you chose.\n"
            "Under a reply, the «👁️ Посмотреть» button draws a picture of that scene.\n\n"
            "/persona — choose a persona\n/balance — images left\n/help — this help"
        ),
    },
    "balance": {
        "ru": "Картинок на балансе: {balance}.",
        "en": "Images on your balance: {balance}.",
    },
    "balance_subscription": {
        "ru": "Подписка до {until} (UTC): ещё {left} из {daily} картинок сегодня.",
        "en": "Subscription until {until} (UTC): {left} of {daily} images left today.",
    },
    "no_button_in_groups": {
        "ru": "Картинки доступны только в личном чате с ботом.",
        "en": "Pictures are available only in a private chat with the bot.",
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
    "toast_disabled": {"ru": "Картинки сейчас выключены.", "en": "Pictures are turned off."},
    "toast_stale": {
        "ru": "Эта кнопка больше не работает.",
        "en": "This button no longer works.",
    },
    "toast_cancelled": {"ru": "Отменено.", "en": "Cancelled."},
    "toast_nothing_to_cancel": {
        "ru": "Отменять уже нечего.",
        "en": "Nothing to cancel any more.",
    },
    # One short sentence after a failed request (SPEC §3.4).
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
}


def lang_of(language_code: str | None) -> Lang:
    """English for English-speaking Telegram users, Russian for everyone else."""
    return "en" if language_code and language_code.lower().startswith("en") else "ru"


def t(key: str, lang: str = "ru", /, **params: object) -> str:
    """The text *key* in *lang* with *params* filled in."""
    variants = _TEXTS[key]
    template = variants["en"] if lang == "en" else variants["ru"]
    return template.format(**params) if params else template
