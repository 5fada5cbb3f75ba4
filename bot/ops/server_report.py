"""PURE: the per-server section of the picture report (``stats`` and ``/stats``).

The rows come from :func:`store.server_stats.server_counts`; this module only renders
them, as text lines under the main report or as a JSON list.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.texts import t
from store.server_stats import NO_SERVER, ServerCounts

__all__ = ["server_json", "server_lines"]


def _seconds(ms: int | None, unit: str) -> str:
    return "—" if ms is None else f"{ms / 1000:.1f} {unit}"


def server_lines(rows: Sequence[ServerCounts], lang: str = "en") -> list[str]:
    """An aligned table, one line per server; empty when no job in the window reached a
    server (the section would only repeat the totals)."""
    if all(row.server == NO_SERVER for row in rows):
        return []
    header = [t("stats_server", lang), t("stats_generated", lang), t("stats_failed", lang)]
    table = [[*header, "p50", "p95"]]
    unit = t("stats_seconds", lang)
    for row in rows:
        numbers = [str(row.generated), str(row.failed), _seconds(row.p50_ms, unit)]
        table.append([row.server, *numbers, _seconds(row.p95_ms, unit)])
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(line)
        ).rstrip()
        for line in table
    ]


def server_json(rows: Sequence[ServerCounts]) -> list[dict[str, object]]:
    return [
        {
            "server": row.server,
            "generated": row.generated,
            "failed": row.failed,
            "p50_ms": row.p50_ms,
            "p95_ms": row.p95_ms,
        }
        for row in rows
    ]
