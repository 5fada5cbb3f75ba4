"""What every feature stands on, and what handling an update needs.

    settings    every setting, read and checked once; mistyped names caught
    deps        ``Deps``: what a handler is given; store writes that wait out a lock
    persist     the wait itself: one store operation retried while the store is busy
    commands    PURE: update → the one command it asks for
    buttons     PURE: inline-button payloads, encoded and strictly decoded
    events      event names, failure reasons, the analytics row and its stdout line
    texts       every user-facing sentence, Russian and English
    personas    the personas file, and what a persona's picture is made of
    llm         the OpenAI-compatible chat endpoint: replies and scenes
    limits      PURE: per-user rates (messages, LLM replies)
    logs        logging to stdout, plain or JSON, secrets scrubbed

Imports the Telegram transport, the store and ``comfy``, never a feature.
"""
