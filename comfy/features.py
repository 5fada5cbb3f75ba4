"""PURE: what one ComfyUI server offers, from ``/system_stats`` and a probe of ``/api/jobs``.

Servers after 0.3.64 add a jobs API (``GET /api/jobs``, ``GET /api/jobs/{id}``,
``POST /api/jobs/{id}/cancel``) and take ``extra_data.preview_method`` per prompt; every
server reports its version and its command line (``system.argv``) in ``/system_stats``,
which tells its node cache (``--cache-lru N``, ``--cache-none``, ``--cache-ram``) and a
server-wide preview method (``--preview-method``). ``doctor`` prints them per server
(docs/comfyui.md, C28).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from comfy.messages import SystemStats

__all__ = ["ServerFeatures", "server_features"]


@dataclass(frozen=True, slots=True)
class ServerFeatures:
    version: str
    jobs_api: bool
    cache: str  # "classic (the last prompt)", "lru 4", "none", "ram"
    previews: str  # "off", "latent2rgb (server flag)", "per prompt"

    def line(self) -> str:
        jobs = "jobs API" if self.jobs_api else "no jobs API (history and queue)"
        return f"ComfyUI {self.version}: {jobs}; cache {self.cache}; previews {self.previews}"


def server_features(stats: SystemStats, *, jobs_api: bool) -> ServerFeatures:
    system = stats.system
    argv = (
        [str(arg) for arg in system.get("argv", [])] if isinstance(system.get("argv"), list) else []
    )
    return ServerFeatures(
        version=str(system.get("comfyui_version", "?")),
        jobs_api=jobs_api,
        cache=_cache(argv),
        previews=_previews(argv, jobs_api=jobs_api),
    )


def _flag(argv: Sequence[str], name: str) -> str | None:
    """The value of ``--name value`` or ``--name=value``; "" for a flag without one."""
    for index, arg in enumerate(argv):
        if arg == name:
            following = argv[index + 1] if index + 1 < len(argv) else ""
            return "" if following.startswith("--") else following
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _cache(argv: Sequence[str]) -> str:
    lru = _flag(argv, "--cache-lru")
    if lru and lru.isdigit() and int(lru) > 0:
        return f"lru {int(lru)}"
    if _flag(argv, "--cache-none") is not None:
        return "none"
    if _flag(argv, "--cache-ram") is not None:
        return "ram"
    return "classic (the last prompt)"


def _previews(argv: Sequence[str], *, jobs_api: bool) -> str:
    method = _flag(argv, "--preview-method")
    if method and method != "none":
        return f"{method} (server flag)"
    return "per prompt" if jobs_api else "off"
