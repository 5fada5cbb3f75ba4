"""Every user-facing string, in Russian (the default) and English.

``t(key, lang, **params)`` takes a Telegram ``language_code`` (``en-US``, ``ru``, ``None``)
or an already chosen :data:`Lang`; :func:`lang_of` is the one rule that picks the
language: Russian for ``ru*`` (and when Telegram gives none), English for everyone else.

A number that meets a noun names the noun's forms after it, and the right one is chosen
for the number (:func:`plural`): ``{balance:картинка|картинки|картинок}`` reads "1
картинка", "2 картинки", "5 картинок", "21 картинка"; ``{balance:picture|pictures}``
reads "1 picture", "2 pictures". Russian takes three forms (one, few, many), English two.
``{position:ord}`` is a place in line: "3-я", "3rd".
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "ADMIN_MENU",
    "COMMAND_MENU",
    "LOOK_BUTTON",
    "PAYMENT_MENU",
    "TEMPLATES",
    "Lang",
    "lang_of",
    "ordinal",
    "plural",
    "t",
]

Lang = Literal["ru", "en"]

LOOK_BUTTON: Final = "👁️ Посмотреть"  # the Russian label; t("look_button", lang) for others

# The command menu Telegram shows beside the input field (setMyCommands), per language.
COMMAND_MENU: Final[dict[Lang, tuple[tuple[str, str], ...]]] = {
    "ru": (
        ("start", "начать и выбрать персонажа"),
        ("persona", "сменить персонажа"),
        ("balance", "сколько картинок осталось"),
        ("reset", "начать разговор заново"),
        ("privacy", "что я храню и как это стереть"),
        ("help", "что я умею"),
    ),
    "en": (
        ("start", "start and choose a persona"),
        ("persona", "switch persona"),
        ("balance", "images left"),
        ("reset", "start the conversation over"),
        ("privacy", "what I keep and how to erase it"),
        ("help", "what I can do"),
    ),
}

# Added to the menu of the chats of ADMIN_USER_IDS only (a chat-scoped menu).
ADMIN_MENU: Final[dict[Lang, tuple[tuple[str, str], ...]]] = {
    "ru": (
        ("stats", "отчёт о картинках"),
        ("grant", "начислить картинки: /grant <user_id> <count>"),
        ("subscribe", "подписка: /subscribe <user_id> <days>"),
        ("refund", "вернуть платёж: /refund <charge_id>"),
        ("stoprenewal", "остановить продление: /stoprenewal <user_id>"),
    ),
    "en": (
        ("stats", "the picture report"),
        ("grant", "add pictures: /grant <user_id> <count>"),
        ("subscribe", "subscription: /subscribe <user_id> <days>"),
        ("refund", "refund a payment: /refund <charge_id>"),
        ("stoprenewal", "stop a renewal: /stoprenewal <user_id>"),
    ),
}

# Added to the menu when something is for sale (docs/product.md, P18).
PAYMENT_MENU: Final[dict[Lang, tuple[tuple[str, str], ...]]] = {
    "ru": (
        ("buy", "купить картинки за звёзды"),
        ("paysupport", "помощь с покупками"),
        ("terms", "условия"),
    ),
    "en": (
        ("buy", "buy pictures with Stars"),
        ("paysupport", "help with purchases"),
        ("terms", "terms of service"),
    ),
}

_TEXTS: Final[dict[str, dict[Lang, str]]] = {
    "look_button": {"ru": LOOK_BUTTON, "en": "👁️ Show me"},
    "variant_button": {"ru": "🔄 Ещё вариант", "en": "🔄 Another take"},
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
            "Под ответом есть кнопка «{look}»: она рисует картинку к этой сцене.\n\n"
            "/persona — выбрать персонажа\n/balance — сколько картинок осталось\n"
            "/reset — начать разговор заново\n/forget — стереть нашу переписку\n"
            "/privacy — что я храню\n/help — эта подсказка"
        ),
        "en": (
            "Just write to me and I will answer as the persona you chose.\n"
            "Under a reply, the «{look}» button draws a picture of that scene.\n\n"
            "/persona — choose a persona\n/balance — images left\n"
            "/reset — start the conversation over\n/forget — erase our conversation\n"
            "/privacy — what I keep\n/help — this help"
        ),
    },
    "help_payments": {
        "ru": "/buy — купить картинки за звёзды\n/paysupport — помощь с покупками\n"
        "/terms — условия",
        "en": "/buy — buy pictures with Stars\n/paysupport — help with purchases\n"
        "/terms — terms of service",
    },
    "conversation_reset": {
        "ru": "Начинаем заново: {persona} не помнит прошлого разговора.",
        "en": "Starting over: {persona} does not remember the earlier conversation.",
    },
    "balance": {
        "ru": "На балансе {balance:картинка|картинки|картинок}.",
        "en": "Your balance: {balance:picture|pictures}.",
    },
    "balance_subscription": {
        "ru": "Подписка до {until} (UTC): сегодня осталось {left} из"
        " {daily:картинки|картинок|картинок}.",
        "en": "Subscription until {until} (UTC): {left} of {daily:picture|pictures} left today.",
    },
    "llm_fallback": {
        "ru": "Прости, я сейчас задумался и потерял мысль. Напиши ещё раз чуть позже?",
        "en": "Sorry, I lost my train of thought. Could you write again a bit later?",
    },
    "llm_throttled": {
        "ru": "Давай чуть помедленнее — я не успеваю за тобой. Напиши мне через минутку?",
        "en": "Let's slow down a little, I can't keep up. Write to me again in a minute?",
    },
    "throttled": {
        "ru": "Ты пишешь очень быстро. Дай мне минутку — и я снова отвечу.",
        "en": "You are writing very fast. Give me a minute and I will answer again.",
    },
    "press_throttled": {
        "ru": "Слишком много нажатий. Подожди немного.",
        "en": "Too many presses. Please wait a moment.",
    },
    "try_later": {
        "ru": "Секунду, я занят. Нажми ещё раз чуть позже.",
        "en": "One moment, I am busy. Please press again a bit later.",
    },
    # The same line for personas who speak of themselves in the feminine.
    "llm_fallback_feminine": {
        "ru": "Прости, я сейчас задумалась и потеряла мысль. Напиши ещё раз чуть позже?",
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
    # Toasts answering a press on «{look}» (answerCallbackQuery, ≤ 200 chars).
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
    "toast_cancel_too_late": {
        "ru": "Поздно: картинка уже отправляется.",
        "en": "Too late: the picture is already on its way.",
    },
    # One short sentence after a failed request (docs/product.md, P3).
    "fail_no_quota": {
        "ru": "Картинки закончились. Если у тебя подписка, новые будут завтра.",
        "en": "You are out of pictures. With a subscription, new ones come tomorrow.",
    },
    "fail_no_quota_contact": {
        "ru": "Картинки закончились. Чтобы пополнить баланс, напиши {contact}. Если у тебя "
        "подписка, новые будут завтра.",
        "en": "You are out of pictures. To get more, write to {contact}. With a subscription, "
        "new ones come tomorrow.",
    },
    "fail_no_quota_buy": {
        "ru": "Картинки закончились. Можно купить ещё за звёзды (/buy) "
        "или заглянуть завтра, если у тебя подписка.",
        "en": "You are out of pictures. Buy more with Stars (/buy), or come back "
        "tomorrow if you have a subscription.",
    },
    "fail_busy": {
        "ru": "Художник сейчас занят. Попробуй через пару минут.",
        "en": "The artist is busy right now. Please try again in a few minutes.",
    },
    "fail_generation": {
        "ru": "Не получилось нарисовать картинку. Попробуй позже — с баланса ничего не списано.",
        "en": "Could not draw the picture. Please try later; nothing was charged.",
    },
    "fail_send": {
        "ru": "Картинка готова, но Telegram не принял её. Попробуй ещё раз — с баланса ничего"
        " не списано.",
        "en": "The picture is ready but Telegram refused it. Try again; nothing was charged.",
    },
    "fail_disabled": {
        "ru": "Картинки сейчас выключены.",
        "en": "Pictures are turned off right now.",
    },
    "status_queued": {
        "ru": "🎨 Картинка в очереди: {position:ord}.",
        "en": "🎨 Your picture is {position:ord} in line.",
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
    # Telegram Stars (docs/product.md, P18). Invoice titles are at most 32 characters.
    "buy_choose": {
        "ru": "Картинки за Telegram Stars. Что выберешь?",
        "en": "Pictures for Telegram Stars. What would you like?",
    },
    "buy_pack_button": {
        "ru": "{pictures:картинка|картинки|картинок} — {stars} ⭐",
        "en": "{pictures:picture|pictures} — {stars} ⭐",
    },
    "buy_subscription_button": {
        "ru": "Подписка: {daily} в день — {stars} ⭐ в месяц",
        "en": "Subscription: {daily} a day — {stars} ⭐ a month",
    },
    "payments_off": {
        "ru": "Покупки сейчас выключены.",
        "en": "Purchases are turned off right now.",
    },
    "invoice_pack_title": {
        "ru": "{pictures:картинка|картинки|картинок}",
        "en": "{pictures:picture|pictures}",
    },
    "invoice_pack_description": {
        "ru": "{pictures:картинка|картинки|картинок} на баланс: нажимай «{look}» под ответами.",
        "en": "{pictures:picture|pictures} on your balance for the «{look}» button under replies.",
    },
    "invoice_subscription_title": {"ru": "Подписка на месяц", "en": "Monthly subscription"},
    "invoice_subscription_description": {
        "ru": "{daily:картинка|картинки|картинок} каждый день, 30 дней; продлевается, пока не"
        " отменишь.",
        "en": "{daily:picture|pictures} every day for 30 days; renews until you cancel it.",
    },
    "subscription_link": {
        "ru": "Подписка на месяц за {stars} ⭐: {daily:картинка|картинки|картинок} в день.",
        "en": "A monthly subscription for {stars} ⭐: {daily:picture|pictures} a day.",
    },
    "subscription_link_button": {"ru": "Оформить подписку", "en": "Subscribe"},
    "pay_refused_offer": {
        "ru": "Это предложение больше не действует. Открой /buy ещё раз.",
        "en": "This offer is no longer available. Please open /buy again.",
    },
    "pay_refused_buyer": {
        "ru": "Этот счёт выставлен другому человеку. Открой /buy сам.",
        "en": "This invoice was made for someone else. Please open /buy yourself.",
    },
    "pay_refused_blocked": {
        "ru": "Покупки для этого аккаунта недоступны. Напиши в /paysupport.",
        "en": "Purchases are not available for this account. See /paysupport.",
    },
    "pay_thanks_pack": {
        "ru": "Спасибо! На баланс добавлено: {pictures:картинка|картинки|картинок}. Теперь на"
        " балансе {balance:картинка|картинки|картинок}.",
        "en": "Thank you! {pictures:picture|pictures} added. Your balance:"
        " {balance:picture|pictures}.",
    },
    "pay_thanks_subscription": {
        "ru": "Спасибо! Подписка действует до {until} (UTC). На балансе"
        " {balance:картинка|картинки|картинок}.",
        "en": "Thank you! Your subscription runs until {until} (UTC). Your balance:"
        " {balance:picture|pictures}.",
    },
    "balance_renewal": {
        "ru": "Подписка продлится {until} (UTC), если не отменить её в Telegram.",
        "en": "The subscription renews on {until} (UTC) unless you cancel it in Telegram.",
    },
    "refunded_to_user": {
        "ru": "Платёж на {stars} ⭐ возвращён. Списано картинок: {taken}. Баланс: {balance}.",
        "en": "Your payment of {stars} ⭐ was refunded. Pictures taken back: {taken}. "
        "Balance: {balance}.",
    },
    "refund_usage": {
        "ru": "Использование: /refund <telegram_payment_charge_id>",
        "en": "Usage: /refund <telegram_payment_charge_id>",
    },
    "refund_unknown": {
        "ru": "Платежа {charge} нет в базе.",
        "en": "No payment {charge} in the database.",
    },
    "refund_refused": {
        "ru": "Telegram не вернул платёж {charge}: {error}",
        "en": "Telegram did not refund {charge}: {error}",
    },
    "refund_done": {
        "ru": "Платёж {charge} возвращён ({stars} ⭐). Списано {taken} из"
        " {images:картинки|картинок|картинок}; "
        "уже потрачено: {missing}. Баланс пользователя {user_id}: {balance}.",
        "en": "Refunded {charge} ({stars} ⭐). Took back {taken} of {images:picture|pictures}; "
        "already spent: {missing}. Balance of user {user_id}: {balance}.",
    },
    "refund_again": {
        "ru": "Платёж {charge} уже был возвращён; ничего не списано.",
        "en": "Payment {charge} was refunded before; nothing was taken now.",
    },
    "paysupport_contact": {
        "ru": "С вопросами о покупках пиши {contact}.",
        "en": "For help with purchases, write to {contact}.",
    },
    "privacy": {
        "ru": "Что я храню о тебе и сколько:\n"
        "• нашу переписку (для памяти разговора) — {turns};\n"
        "• тексты своих ответов под кнопкой «{look}» — {sent};\n"
        "• заказы картинок и их описания — {jobs};\n"
        "• счётчики без текстов (что нажато, что нарисовано) — {events};\n"
        "• баланс картинок, подписку и платежи — пока ими пользуешься.\n\n"
        "/forget сразу стирает переписку и тексты ответов.{contact}",
        "en": "What I keep about you, and for how long:\n"
        "• our conversation (so I remember it) — {turns};\n"
        "• the texts of my replies under the «{look}» button — {sent};\n"
        "• picture orders and their scenes — {jobs};\n"
        "• counts without texts (what was pressed and drawn) — {events};\n"
        "• your picture balance, subscription and payments — while you use them.\n\n"
        "/forget erases our conversation and the texts of my replies at once.{contact}",
    },
    "privacy_days": {
        "ru": "{days:день|дня|дней}",
        "en": "{days:day|days}",
    },
    "privacy_forever": {"ru": "бессрочно", "en": "with no time limit"},
    # The bot's profile (setMyDescription: an empty chat; setMyShortDescription: the
    # profile line, at most 120 characters).
    "bot_description": {
        "ru": "Собеседник с характером: выбери персонажа и пиши ему как другу. Под ответом "
        "есть кнопка «{look}» — она нарисует сцену из разговора.",
        "en": "A companion with a character: choose a persona and write as to a friend. Under "
        "a reply, the «{look}» button draws the scene you are talking about.",
    },
    "bot_short_description": {
        "ru": "Разговоры с персонажами и картинки к ним по кнопке.",
        "en": "Chats with personas, and a picture of the scene at a press.",
    },
    "privacy_contact": {
        "ru": "\nВопросы: {contact}.",
        "en": "\nQuestions: {contact}.",
    },
    "pay_info_missing": {
        "ru": "Администратор ещё не написал этот текст.",
        "en": "The administrator has not written this text yet.",
    },
    "stoprenewal_usage": {
        "ru": "Использование: /stoprenewal <user_id>",
        "en": "Usage: /stoprenewal <user_id>",
    },
    "stoprenewal_none": {
        "ru": "У пользователя {user_id} нет оплаченной подписки.",
        "en": "User {user_id} has no paid subscription.",
    },
    "stoprenewal_done": {
        "ru": "Подписка пользователя {user_id} не продлится; оплаченный срок остаётся.",
        "en": "User {user_id}'s subscription will not renew; the paid period stays.",
    },
    "stoprenewal_refused": {
        "ru": "Telegram не остановил продление: {error}",
        "en": "Telegram did not stop the renewal: {error}",
    },
    "stats_payments": {"ru": "Платежи", "en": "Payments"},
    "stats_revenue": {"ru": "выручка, ⭐", "en": "revenue, stars"},
    "stats_refunded": {"ru": "возвращено, ⭐", "en": "refunded, stars"},
    "stats_packs": {"ru": "продано пакетов", "en": "packs sold"},
    "stats_subscriptions": {"ru": "оплат подписки", "en": "subscription payments"},
    "stats_subscribers": {"ru": "активных подписчиков", "en": "active subscribers"},
    "stats_paid_pictures": {"ru": "картинок из купленных", "en": "pictures from paid balance"},
    "stats_free_pictures": {"ru": "картинок из бесплатных", "en": "pictures from free balance"},
    "stats_sub_pictures": {"ru": "картинок по подписке", "en": "pictures by subscription"},
    "admin_only": {
        "ru": "Эта команда только для администраторов.",
        "en": "This command is for administrators only.",
    },
    "grant_usage": {
        "ru": "Использование: /grant <user_id> <число>",
        "en": "Usage: /grant <user_id> <count>",
    },
    "grant_done": {
        "ru": "Пользователю {user_id} начислено: {images:картинка|картинки|картинок}. Баланс:"
        " {balance}.",
        "en": "Granted {images:picture|pictures} to user {user_id}. Balance: {balance}.",
    },
    "grant_again": {
        "ru": "Эта команда /grant уже выполнена. Баланс пользователя {user_id}: {balance}.",
        "en": "This /grant was applied before. User {user_id}'s balance: {balance}.",
    },
    "subscribe_usage": {
        "ru": "Использование: /subscribe <user_id> <дней>",
        "en": "Usage: /subscribe <user_id> <days>",
    },
    "subscribe_done": {
        "ru": "Подписка пользователя {user_id} действует до {until} (UTC).",
        "en": "User {user_id} is subscribed until {until} (UTC).",
    },
    "subscribe_again": {
        "ru": "Эта команда /subscribe уже выполнена. Подписка пользователя {user_id}"
        " действует до {until} (UTC).",
        "en": "This /subscribe was applied before. User {user_id} is subscribed until"
        " {until} (UTC).",
    },
    # /forget (docs/product.md, P20): what went, and that the balance stays.
    "forget_done": {
        "ru": (
            "Готово: я стёр нашу переписку и тексты своих ответов. "
            "Кнопки «{look}» под старыми ответами больше не работают. "
            "Баланс картинок и подписка остались как были."
        ),
        "en": (
            "Done: I erased our conversation and the texts of my replies. "
            "The «{look}» buttons under old replies no longer work. "
            "Your picture balance and subscription are unchanged."
        ),
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
    "stats_generation_rate": {"ru": "успех генерации", "en": "generation success"},
    "stats_seconds": {"ru": "с", "en": "s"},
    "stats_p50": {"ru": "время p50", "en": "time p50"},
    "stats_p95": {"ru": "время p95", "en": "time p95"},
    "stats_persona": {"ru": "персонаж", "en": "persona"},
    "stats_server": {"ru": "сервер", "en": "server"},
}


# Every text's template by key and language, read-only (tests reread them all).
TEMPLATES: Final[Mapping[str, Mapping[Lang, str]]] = MappingProxyType(_TEXTS)


def lang_of(language_code: str | None) -> Lang:
    """Russian for Russian-speaking Telegram users (``ru``, ``ru-RU``) and when Telegram
    gives no language; English for everyone else."""
    if language_code is None or not language_code.strip():
        return "ru"
    return "ru" if language_code.lower().startswith("ru") else "en"


def plural(count: int, forms: str, lang: Lang) -> str:
    """*count* with the form of the noun it takes: *forms* is ``one|few|many`` (Russian)
    or ``one|other`` (English)."""
    names = forms.split("|")
    if lang == "ru" and len(names) == 3:
        tens, units = count % 100, count % 10
        if units == 1 and tens != 11:
            form = names[0]
        elif 2 <= units <= 4 and not 12 <= tens <= 14:
            form = names[1]
        else:
            form = names[2]
    else:
        form = names[0] if count == 1 else names[-1]
    return f"{count} {form}"


def ordinal(place: int, lang: Lang) -> str:
    """A place in line: "3-я" (of a картинка), "3rd"."""
    if lang == "ru":
        return f"{place}-я"
    suffix = "th" if 11 <= place % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(place % 10, "th")
    return f"{place}{suffix}"


class _Texts(string.Formatter):
    """``str.format`` that reads a field's ``one|few|many`` spec as the noun's forms."""

    def __init__(self, lang: Lang) -> None:
        self._lang = lang

    def format_field(self, value: object, format_spec: str) -> str:
        if "|" in format_spec and isinstance(value, int):
            return plural(value, format_spec, self._lang)
        if format_spec == "ord" and isinstance(value, int):
            return ordinal(value, self._lang)
        return str(super().format_field(value, format_spec))


def t(key: str, lang: str | None = "ru", /, **params: object) -> str:
    """The text *key* in the language :func:`lang_of` picks for *lang*, *params* filled in.

    ``{look}`` is always the picture button's label in that language, so that a text names
    the button the user actually sees.
    """
    chosen = lang_of(lang)
    template = _TEXTS[key][chosen]
    look = _TEXTS["look_button"][chosen]
    if not params:  # some callers fill a template's other fields themselves
        return template.replace("{look}", look)
    return _Texts(chosen).format(template, **{"look": look, **params})
