"""What every package of the project shares, and nothing else: it imports none of them.

    backoff     the one retry-delay policy (a pure iterator of jittered delays)
    logfields   ``fields(**data)``: a log line's data, kept apart from its message
    bodies      an HTTP body read up to a cap; whether bytes are a picture

``comfy`` and ``store`` know nothing of Telegram and ``bot`` is above them all, so a
helper two of them need lives here (the import rules are in ``pyproject.toml``).
"""
