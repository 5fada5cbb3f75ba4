"""The ComfyUI servers one bot drives: ``COMFYUI_BASE_URL`` as a comma-separated list.

Each entry is a base URL with an optional ``#N``, the number of prompts this bot keeps on
that server at once (its slots); without it the server takes the default
(``COMFYUI_CONCURRENCY``)::

    http://gpu1:8188#3, http://gpu2:8188, https://gpu3.example:443/comfy#1

A server is named ``host:port`` in logs, the ``jobs`` table and the reports, so two
entries may not share a host and port. The ``#`` form was chosen over a servers file
because a URL never carries a fragment to ComfyUI and the whole fleet stays one setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import httpx

__all__ = ["MAX_SLOTS", "ServerSpec", "parse_servers"]

MAX_SLOTS: Final = 64


@dataclass(frozen=True, slots=True)
class ServerSpec:
    url: str  # the base URL, without the ``#N``
    slots: int
    name: str  # ``host:port``: unique among the servers


def parse_servers(text: str, *, default_slots: int) -> tuple[ServerSpec, ...]:
    """The servers of a ``COMFYUI_BASE_URL`` value, in the order given.

    Raises:
        ValueError: an entry is not an http(s) URL, its ``#N`` is not 1..64, or two
            entries name the same host:port; the message names the bad entry.
    """
    servers: list[ServerSpec] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        url, _, slots_text = entry.partition("#")
        slots = default_slots
        if slots_text:
            if not slots_text.isdigit() or not 1 <= int(slots_text) <= MAX_SLOTS:
                raise ValueError(
                    f"server {entry!r}: the number after # must be 1..{MAX_SLOTS} slots"
                )
            slots = int(slots_text)
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"server {entry!r} is not a URL: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"server {entry!r} must be an http:// or https:// URL with a host")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        name = f"{parsed.host}:{port}"
        if any(server.name == name for server in servers):
            raise ValueError(f"server {name!r} is listed twice")
        servers.append(ServerSpec(url=url.rstrip("/") or url, slots=slots, name=name))
    return tuple(servers)
