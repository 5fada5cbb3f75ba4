"""Every Prometheus metric the bot exports, in one catalogue (docs/operating.md, "Metrics").

The metrics live in ``prometheus_client``'s default registry, beside its process and
Python collectors, and are exposed only when ``METRICS_ADDRESS`` is set
(:mod:`bot.ops.listener`). Each is updated where its fact happens: a counter after the
change it counts is committed, a histogram with a duration the trio clock measured, the
gauges of state once a second by the heartbeat (:mod:`bot.ops.health`). Updating them is
thread-safe (the library's locks), so the listener's thread may read them at any time.

Names and labels follow Prometheus's advice: the ``persona_bot_`` prefix, base units
(seconds), ``_total`` on counters (added by the library), and only label values from
closed sets: event names and reasons, Bot API method names, the configured ComfyUI
servers, outcomes. Never a user, a chat or a job.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram, Info

__all__ = [
    "BUILD",
    "COMFY_PROMPT_SECONDS",
    "COMFY_QUEUE",
    "COMFY_RUNS",
    "COMFY_SLOTS",
    "COMFY_SLOTS_BUSY",
    "COMFY_SLOT_WAIT_SECONDS",
    "COMFY_SWITCH_SECONDS",
    "COMFY_UP",
    "EVENTS",
    "LLM_REQUESTS",
    "LLM_SECONDS",
    "PICTURE_SECONDS",
    "QUEUE_JOBS",
    "QUEUE_WAIT_SECONDS",
    "SEND_DROPPED",
    "SEND_WAIT_SECONDS",
    "STARS",
    "STARS_REFUNDED",
    "STORE_GAVE_UP",
    "STORE_WAIT_SECONDS",
    "TELEGRAM_LAST_POLL",
    "TELEGRAM_REQUESTS",
    "TELEGRAM_SECONDS",
    "UPDATES",
    "UPDATES_THROTTLED",
]

PREFIX: Final = "persona_bot_"

# Bucket bounds in seconds, chosen for what each measures: a picture takes from seconds
# (a warm GPU) to the 10-minute ComfyUI timeout; a Bot API or LLM call from milliseconds
# to the 30 s HTTP timeout; a wait in a queue or the send budget from nothing to minutes.
PICTURE_BUCKETS: Final = (2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 600.0)
CALL_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WAIT_BUCKETS: Final = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

BUILD: Final = Info(PREFIX + "build", "The running bot's version")

# -- what users did and got (one per committed product event) ---------------------------
EVENTS: Final = Counter(
    PREFIX + "events",
    "Product events committed (the events_analytics rows), by event and failure reason",
    ["event", "reason"],
)
PICTURE_SECONDS: Final = Histogram(
    PREFIX + "picture_seconds",
    "Time from a picture's press to its delivery, for delivered pictures",
    buckets=PICTURE_BUCKETS,
)
STARS: Final = Counter(
    PREFIX + "stars",
    "Telegram Stars credited, by what they bought (pack or subscription)",
    ["kind"],
)
STARS_REFUNDED: Final = Counter(PREFIX + "stars_refunded", "Telegram Stars refunded")
UPDATES: Final = Counter(
    PREFIX + "updates",
    "Telegram updates handled, by what they asked for (a command, a text, a button)",
    ["command"],
)
UPDATES_THROTTLED: Final = Counter(
    PREFIX + "updates_throttled",
    "Telegram updates answered as too fast instead of being handled",
)

# -- pictures: the bot's queue and the ComfyUI servers -----------------------------------
QUEUE_JOBS: Final = Gauge(PREFIX + "queue_jobs", "Picture jobs waiting for a generation worker")
QUEUE_WAIT_SECONDS: Final = Histogram(
    PREFIX + "queue_wait_seconds",
    "Time a picture job waited in the bot's queue for a generation worker",
    buckets=WAIT_BUCKETS,
)
COMFY_SLOT_WAIT_SECONDS: Final = Histogram(
    PREFIX + "comfy_slot_wait_seconds",
    "Time a picture job waited for a free slot on a healthy ComfyUI server",
    buckets=WAIT_BUCKETS,
)
COMFY_PROMPT_SECONDS: Final = Histogram(
    PREFIX + "comfy_prompt_seconds",
    "Time from handing a prompt to a ComfyUI server to its picture, by server",
    ["server"],
    buckets=PICTURE_BUCKETS,
)
COMFY_RUNS: Final = Counter(
    PREFIX + "comfy_runs",
    "Pictures drawn, by server and whether ComfyUI had their models loaded (warm: true,"
    " false, unknown)",
    ["server", "warm"],
)
COMFY_SWITCH_SECONDS: Final = Gauge(
    PREFIX + "comfy_switch_seconds",
    "What loading a cold checkpoint and LoRA costs on the server, as the bot learned it",
    ["server"],
)
COMFY_UP: Final = Gauge(
    PREFIX + "comfy_server_up",
    "1 while the ComfyUI server's websocket is connected and it is not backed off",
    ["server"],
)
COMFY_SLOTS: Final = Gauge(
    PREFIX + "comfy_slots", "Pictures the bot runs at once on the server (its #N)", ["server"]
)
COMFY_SLOTS_BUSY: Final = Gauge(
    PREFIX + "comfy_slots_busy", "The bot's pictures on the server now", ["server"]
)
COMFY_QUEUE: Final = Gauge(
    PREFIX + "comfy_queue_remaining",
    "Prompts in the server's own queue, every client's (its status message)",
    ["server"],
)

# -- the Bot API -------------------------------------------------------------------------
TELEGRAM_REQUESTS: Final = Counter(
    PREFIX + "telegram_requests",
    "Bot API requests, by method and outcome (ok, rate_limited, refused, server_error, network)",
    ["method", "outcome"],
)
TELEGRAM_SECONDS: Final = Histogram(
    PREFIX + "telegram_request_seconds",
    "Bot API request time, getUpdates excluded (it waits for updates by design)",
    buckets=CALL_BUCKETS,
)
TELEGRAM_LAST_POLL: Final = Gauge(
    PREFIX + "telegram_last_poll_timestamp_seconds",
    "Unix time of the last successful getUpdates",
)
SEND_WAIT_SECONDS: Final = Histogram(
    PREFIX + "send_budget_wait_seconds",
    "Time a Bot API call waited for its turn in the send budget",
    buckets=WAIT_BUCKETS,
)
SEND_DROPPED: Final = Counter(
    PREFIX + "send_budget_dropped",
    "Cosmetic Bot API calls the send budget dropped, by reason (stale or merged)",
    ["reason"],
)
PREVIEWS: Final = Counter(
    PREFIX + "previews",
    "Forming pictures sent to status messages, by outcome (shown, dropped by the send"
    " budget, withdrawn for the picture, refused by Telegram, failed)",
    ["outcome"],
)

# -- the LLM and the store ---------------------------------------------------------------
LLM_REQUESTS: Final = Counter(
    PREFIX + "llm_requests", "LLM chat completions, by outcome (ok or failed)", ["outcome"]
)
LLM_SECONDS: Final = Histogram(
    PREFIX + "llm_request_seconds", "LLM chat completion time", buckets=CALL_BUCKETS
)
STORE_WAIT_SECONDS: Final = Histogram(
    PREFIX + "store_lock_wait_seconds",
    "Time a store write waited out a locked or busy database (writes that waited)",
    buckets=WAIT_BUCKETS,
)
STORE_GAVE_UP: Final = Counter(
    PREFIX + "store_writes_gave_up",
    "Store writes that still found the database locked or full after their patience",
)
