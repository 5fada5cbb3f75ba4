"""The Telegram Bot API transport; it imports nothing else of the bot.

``client`` (typed calls, retries), ``types`` (pydantic models), ``errors`` (the error
tree and the reply envelope), ``redact`` (the token never leaves in a text), ``polling``
(long polling into a durable inbox), ``inbox`` (what polling and the dispatcher need of
that inbox) and ``dispatcher`` (per-chat lanes).
"""
