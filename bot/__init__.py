"""The Telegram side of the persona bot; ``docs/architecture.md`` is the map.

    app/        the process: the root nursery, start-up, signals, update → feature
    chat/       the conversation: commands, persona replies, the persona picker
    pictures/   «👁️ Посмотреть»: press, queue, workers, status, delivery, servers
    payments/   /balance, /buy, Stars payments and refunds, the admins' /grant
    ops/        doctor, stats, backup, retention, and the admins' /stats
    core/       what every feature stands on: settings, Deps, commands, texts, events
    telegram/   the Bot API transport: client, types, polling, dispatcher, send budget

A room imports only the rooms below it (``pyproject.toml``, ``[tool.importlinter]``):
``app`` knows every feature; features know ``core`` and ``telegram``, never each other.
"""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("persona-image-bot")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
