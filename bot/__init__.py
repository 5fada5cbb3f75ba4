"""The Telegram side of the persona bot; see ``docs/architecture.md`` for the rooms.

    telegram/   the Bot API transport: client, types, errors, polling, dispatcher
    chat/       the conversation: commands, persona replies, the persona picker
    pictures/   «👁️ Посмотреть»: press, queue, workers, status, delivery, recovery
    accounts/   /balance, and the admins' /grant and /subscribe
    ops/        python -m bot doctor and stats, and /stats

At the top: the process (``app``, ``__main__``, ``settings``, ``signals``, ``startup``,
``logging_setup``) and what the features share (``routing``, ``update_handler``,
``deps``, ``texts``, ``analytics``, ``personas``, ``llm``, ``callback_data``).
"""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("persona-image-bot")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
