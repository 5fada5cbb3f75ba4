"""The picture report, pure: events in, numbers and text out (no I/O).

Operators need a quick answer to "how many presses, how many pictures, why did the
others fail, how long does ComfyUI take" without writing SQL against
``events_analytics``. :func:`parse_since` reads a window, :func:`summarize_stats` turns
the counts SQL made (``store.stats.image_stats``) into a :class:`StatsSummary`,
:func:`format_text` / :func:`format_json` render it.
The command line and the admins' ``/stats`` (:mod:`bot.ops.stats`) wrap it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

from bot.core.events import EventName, Reason
from bot.core.texts import t
from store.clock import to_iso
from store.payments import RevenueSummary
from store.stats import ImageStats, SliceStats

__all__ = [
    "DEFAULT_SINCE",
    "MAX_MESSAGE_CHARS",
    "NO_PERSONA",
    "PERCENTS",
    "WINDOW_FORMS",
    "ImageCounts",
    "StatsSummary",
    "format_json",
    "format_payments_text",
    "format_text",
    "parse_since",
    "payments_json",
    "summarize_stats",
]

DEFAULT_SINCE: Final = "7d"
MAX_MESSAGE_CHARS: Final = 4096  # Telegram's limit for one text message
NO_PERSONA: Final = "-"  # the persona key shown for events recorded without one
PERCENTS: Final = (50, 95)  # the duration percentiles the report shows
WINDOW_FORMS: Final = "use 30m, 12h, 7d, 2w or a UTC date like 2026-11-01"

_WINDOW: Final = re.compile(r"(\d{1,6})([mhdw])")
_UNITS: Final = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_TEXT_KEYS: Final = (
    "title", "empty", "presses", "generated", "failed", "other", "rate", "generation_rate",
    "p50", "p95", "persona", "seconds",
)  # fmt: skip
# The failures that are the machinery's, not a user's choice or a limit.
FAULTS: Final = (Reason.GENERATION_ERROR, Reason.SEND_ERROR)


@dataclass(frozen=True, slots=True)
class ImageCounts:
    """The numbers for one slice of the events: everyone, or one persona.

    ``failed`` counts every ``image_failed`` row; ``failures`` splits it by the closed
    set of reasons (every :class:`Reason`, zeros included, in declaration order).
    """

    presses: int
    generated: int
    failed: int
    failures: Mapping[Reason, int]
    p50_ms: int | None  # nearest-rank percentiles of image_generated durations
    p95_ms: int | None

    @property
    def success_rate(self) -> float | None:
        """generated / (generated + failed); None when no request has finished."""
        finished = self.generated + self.failed
        return self.generated / finished if finished else None

    @property
    def generation_rate(self) -> float | None:
        """How often the machinery delivered what it started: generated / (generated +
        generation and send errors). No quota, a full queue, pictures off and the user's
        own cancels are choices or limits, not faults, and are left out."""
        faults = sum(self.failures.get(reason, 0) for reason in FAULTS)
        attempted = self.generated + faults
        return self.generated / attempted if attempted else None


@dataclass(frozen=True, slots=True)
class StatsSummary(ImageCounts):
    """The whole report: totals for the window plus the same numbers per persona."""

    since: datetime
    until: datetime
    personas: Mapping[str, ImageCounts]  # sorted by persona key


def parse_since(text: str, *, now: datetime) -> datetime:
    """The start of a report window: ``30m``, ``12h``, ``7d``, ``2w`` before *now*, or a date.

    A date (``2026-11-01``) means its midnight UTC.

    Raises:
        ValueError: *text* is none of those forms, is zero, or lies after *now*.
    """
    value = text.strip().lower()
    try:
        if match := _WINDOW.fullmatch(value):
            amount, unit = int(match[1]), match[2]
            if amount == 0:
                raise ValueError
            moment = now.astimezone(UTC) - timedelta(**{_UNITS[unit]: amount})
        else:
            moment = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"bad window {text!r}; {WINDOW_FORMS}") from None
    if moment > now:
        raise ValueError(f"window {text!r} starts in the future; {WINDOW_FORMS}")
    return moment


def _slice_counts(stats: SliceStats) -> ImageCounts:
    failures = dict.fromkeys(Reason, 0)
    totals = dict.fromkeys(EventName, 0)
    for count in stats.counts:
        if count.event in totals:
            totals[EventName(count.event)] += count.count
        if count.event == EventName.IMAGE_FAILED and count.reason in failures:
            failures[Reason(count.reason)] += count.count
    p50, p95 = (stats.percentiles.get(percent) for percent in PERCENTS)
    return ImageCounts(
        presses=totals[EventName.IMAGE_REQUESTED],
        generated=totals[EventName.IMAGE_GENERATED],
        failed=totals[EventName.IMAGE_FAILED],
        failures=failures,
        p50_ms=p50,
        p95_ms=p95,
    )


def summarize_stats(stats: ImageStats, *, since: datetime, until: datetime) -> StatsSummary:
    """The report from the counts and percentiles SQL made."""
    return StatsSummary(
        **asdict(_slice_counts(stats.total)),
        since=since,
        until=until,
        personas={key: _slice_counts(stats.personas[key]) for key in sorted(stats.personas)},
    )


def _rate(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def _seconds(ms: int | None, unit: str = "s") -> str:
    return "—" if ms is None else f"{ms / 1000:.1f} {unit}"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    """First column left-aligned, the others right-aligned, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]


def _totals_lines(summary: StatsSummary, text: Mapping[str, str]) -> list[str]:
    rows = [
        [text["presses"], str(summary.presses)],
        [text["generated"], str(summary.generated)],
        [text["failed"], str(summary.failed)],
        *([f"  {reason.value}", str(n)] for reason, n in summary.failures.items()),
    ]
    other = summary.failed - sum(summary.failures.values())
    if other:
        rows.append([f"  {text['other']}", str(other)])
    rows.append([text["rate"], _rate(summary.success_rate)])
    rows.append([text["generation_rate"], _rate(summary.generation_rate)])
    rows.append([text["p50"], _seconds(summary.p50_ms, text["seconds"])])
    rows.append([text["p95"], _seconds(summary.p95_ms, text["seconds"])])
    return _table(rows)


def _persona_lines(summary: StatsSummary, text: Mapping[str, str]) -> list[str]:
    header = [text["persona"], text["presses"], text["generated"], text["failed"]]
    rows = [[*header, text["rate"], "p50", "p95"]]
    for key, counts in summary.personas.items():
        numbers = [str(counts.presses), str(counts.generated), str(counts.failed)]
        timing = [
            _seconds(counts.p50_ms, text["seconds"]),
            _seconds(counts.p95_ms, text["seconds"]),
        ]
        rows.append([key, *numbers, _rate(counts.success_rate), *timing])
    return _table(rows)


def format_text(summary: StatsSummary, lang: str = "en") -> str:
    """The report as aligned plain text for a terminal or one Telegram message.

    Per-persona lines past :data:`MAX_MESSAGE_CHARS` are dropped and replaced by "…".
    """
    text = {key: t(f"stats_{key}", lang) for key in _TEXT_KEYS}
    span = {"since": f"{summary.since:%Y-%m-%d %H:%M}", "until": f"{summary.until:%Y-%m-%d %H:%M}"}
    lines = [text["title"].format(**span)]
    if not summary.presses and not summary.generated and not summary.failed:
        return "\n".join([*lines, text["empty"]])
    lines += [*_totals_lines(summary, text), ""]
    used = sum(len(line) + 1 for line in lines)
    for line in _persona_lines(summary, text):
        if used + len(line) + len("\n…") > MAX_MESSAGE_CHARS:
            lines.append("…")
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)


def _counts_json(counts: ImageCounts) -> dict[str, object]:
    rate, generation = counts.success_rate, counts.generation_rate
    return {
        "presses": counts.presses,
        "generated": counts.generated,
        "failed": counts.failed,
        "failures": {reason.value: n for reason, n in counts.failures.items()},
        "success_rate": None if rate is None else round(rate, 4),
        "generation_success_rate": None if generation is None else round(generation, 4),
        "p50_ms": counts.p50_ms,
        "p95_ms": counts.p95_ms,
    }


def format_json(summary: StatsSummary) -> str:
    """The report as JSON: fixed keys, durations in ms, rates rounded to 4 places."""
    document = {
        "since": to_iso(summary.since),
        "until": to_iso(summary.until),
        **_counts_json(summary),
        "personas": {key: _counts_json(counts) for key, counts in summary.personas.items()},
    }
    return json.dumps(document, ensure_ascii=False, indent=2)


# Payments (docs/product.md, P18): a section of its own after the pictures, from SQL
# aggregates over ``payments`` and ``jobs`` (store.payments.Payments.summary).

_PAYMENT_KEYS: Final = (
    "revenue", "refunded", "packs", "subscriptions", "subscribers",
    "paid_pictures", "free_pictures", "sub_pictures",
)  # fmt: skip


def _payment_numbers(revenue: RevenueSummary) -> dict[str, int]:
    return {
        "revenue": revenue.stars,
        "refunded": revenue.refunded_stars,
        "packs": revenue.packs_sold,
        "subscriptions": revenue.subscriptions_paid,
        "subscribers": revenue.active_subscribers,
        "paid_pictures": revenue.paid_pictures,
        "free_pictures": revenue.free_pictures,
        "sub_pictures": revenue.subscription_pictures,
    }


def format_payments_text(revenue: RevenueSummary, lang: str = "en") -> str:
    """The payments section: stars earned (net of refunds), sales, where pictures came from."""
    numbers = _payment_numbers(revenue)
    rows = [[t(f"stats_{key}", lang), str(numbers[key])] for key in _PAYMENT_KEYS]
    return "\n".join([t("stats_payments", lang), *_table(rows)])


def payments_json(revenue: RevenueSummary) -> dict[str, int]:
    """The payments section for ``--json``: stars net of refunds, counts."""
    numbers = _payment_numbers(revenue)
    return {
        "revenue_stars": numbers["revenue"],
        "refunded_stars": numbers["refunded"],
        "packs_sold": numbers["packs"],
        "subscription_payments": numbers["subscriptions"],
        "active_subscribers": numbers["subscribers"],
        "pictures_from_paid_balance": numbers["paid_pictures"],
        "pictures_from_free_balance": numbers["free_pictures"],
        "pictures_by_subscription": numbers["sub_pictures"],
    }
