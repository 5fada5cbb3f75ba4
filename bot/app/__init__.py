"""The process: what starts, wires and stops everything else.

    process     ``run()``: the root nursery and every task in it; ``Stopper``
    handler     update → command → the one feature that handles it; the admin gate
    startup     Telegram at boot: getMe, the webhook, the command menu, outages waited out
    signals     SIGINT/SIGTERM → a graceful stop; a second one → at once

The only room that knows every feature (``pyproject.toml`` holds the import rules).
"""

from bot.app.process import STOP_GRACE_S, Stopper, run

__all__ = ["STOP_GRACE_S", "Stopper", "run"]
