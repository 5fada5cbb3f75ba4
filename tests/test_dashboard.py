"""deploy/grafana-dashboard.json asks only for what the bot exports.

Every series name in a panel's PromQL must be one the bot's registry exposes (with the
suffixes the exposition format adds: ``_total``, ``_bucket``, ``_sum``, ``_count``,
``_info``), every label it selects, groups by or shows in a legend must be one of those
metrics' labels, and the panels the operators asked for are there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, Info
from prometheus_client.metrics import MetricWrapperBase

import common.metrics

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana-dashboard.json"
SERIES = re.compile(r"\b((?:persona_bot|process)_[a-z0-9_]+)\b(\{[^}]*\})?")
SELECTED = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
GROUPED = re.compile(r"\bby\s*\(([^)]*)\)")
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
PROCESS_SERIES = {"process_resident_memory_bytes"}  # the library's process collector


def series_of(metric: MetricWrapperBase) -> dict[str, frozenset[str]]:
    """The series names one metric of the catalogue exposes → the labels they carry."""
    name, labels = metric._name, frozenset(metric._labelnames)
    if isinstance(metric, Counter):
        return {f"{name}_total": labels}
    if isinstance(metric, Histogram):
        return {f"{name}_bucket": labels | {"le"}, f"{name}_sum": labels, f"{name}_count": labels}
    if isinstance(metric, Info):
        return {f"{name}_info": frozenset({"version"})}
    assert isinstance(metric, Gauge)
    return {name: labels}


def catalogue() -> list[MetricWrapperBase]:
    return [m for m in vars(common.metrics).values() if isinstance(m, MetricWrapperBase)]


def exported() -> dict[str, frozenset[str]]:
    """Each series name the bot exposes → the labels it carries."""
    series: dict[str, frozenset[str]] = dict.fromkeys(PROCESS_SERIES, frozenset())
    for metric in catalogue():
        series |= series_of(metric)
    return series


def panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def test_every_series_and_label_in_the_dashboard_is_exported() -> None:
    series = exported()
    assert "persona_bot_events_total" in series
    used: set[str] = set()
    for panel in panels():
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            names = [(m.group(1), m.group(2) or "") for m in SERIES.finditer(expr)]
            assert names, expr
            labels: set[str] = set()
            for name, selector in names:
                assert name in series, f"{panel['title']}: {name} is not exported"
                assert set(SELECTED.findall(selector)) <= series[name], (panel["title"], expr)
                labels |= series[name]
                used.add(name)
            for group in GROUPED.findall(expr):
                grouped = {label.strip() for label in group.split(",") if label.strip()}
                assert grouped <= labels, (panel["title"], expr)
            assert set(LEGEND.findall(target["legendFormat"])) <= labels, panel["title"]
    # And every metric of the bot has a place on it (its build label aside).
    for metric in catalogue():
        if not isinstance(metric, Info):
            assert used & set(series_of(metric)), f"{metric._name} is on no panel"


def test_the_dashboard_has_the_panels_operators_asked_for() -> None:
    titles = {panel["title"] for panel in panels()}
    assert {
        "Pictures per minute",
        "Failures per minute by reason",
        "Queue",
        "Busy slots by server",
        "Stars per day",
    } <= titles
    dashboard = json.loads(DASHBOARD.read_text())
    # Imported into any Grafana: the data source is chosen at import, never a fixed uid.
    [variable] = dashboard["templating"]["list"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}"
