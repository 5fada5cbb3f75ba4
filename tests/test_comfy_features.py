"""What a ComfyUI server offers, read from /system_stats and the /api/jobs probe."""

from __future__ import annotations

import pytest

from comfy.features import ServerFeatures, server_features
from comfy.messages import SystemStats

CLASSIC = "classic (the last prompt)"


def stats(*argv: str, version: str = "0.3.64") -> SystemStats:
    return SystemStats(system={"comfyui_version": version, "argv": ["main.py", *argv]})


@pytest.mark.parametrize(
    ("argv", "jobs_api", "cache", "previews"),
    [
        ((), False, "classic (the last prompt)", "off"),
        (("--cache-lru", "3"), False, "lru 3", "off"),
        (("--cache-lru=2",), True, "lru 2", "per prompt"),
        (("--cache-lru", "0"), False, "classic (the last prompt)", "off"),
        (("--cache-none",), False, "none", "off"),
        (("--cache-ram", "--listen"), False, "ram", "off"),
        (("--preview-method", "latent2rgb"), False, CLASSIC, "latent2rgb (server flag)"),
        (("--preview-method", "none"), True, CLASSIC, "per prompt"),
    ],
)  # fmt: skip
def test_features_from_the_command_line(
    argv: tuple[str, ...], jobs_api: bool, cache: str, previews: str
) -> None:
    found = server_features(stats(*argv), jobs_api=jobs_api)
    assert (found.cache, found.previews, found.jobs_api) == (cache, previews, jobs_api)


def test_a_server_that_reports_no_command_line_or_version() -> None:
    assert server_features(SystemStats(system={}), jobs_api=False) == ServerFeatures(
        "?", False, "classic (the last prompt)", "off"
    )
