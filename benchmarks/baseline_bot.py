"""The baseline: the same bot, but pictures follow the original design (polling /history).

``python -m benchmarks.baseline_bot --poll 1.0`` runs ``python -m bot`` unchanged except
that pictures are drawn by :class:`PollingComfy`, passed through the bot's own seam
(``main(make_generator=...)``): POST /prompt, then GET /history/{id} every ``--poll``
seconds until the outputs appear, then GET /view. Same ``generate`` signature, same
concurrency limit, same timeout; no websocket is used for the job (the bot's follower
still runs).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

import trio

from bot.__main__ import main as bot_main
from comfy import (
    ComfyClient,
    Follower,
    GeneratedImage,
    GenerationFailed,
    GenerationTimedOut,
    ProgressStage,
    PromptProgress,
)
from comfy.protocol import Signal, probe_from_history

__all__ = ["PollingComfy", "polling_comfy_class"]


class PollingComfy:
    """``Comfy`` in the original design: submit, poll ``/history`` every *poll_s*, download."""

    poll_s = 1.0

    def __init__(self, client: ComfyClient, follower: Follower, *, concurrency: int) -> None:
        self._client = client
        self._limiter = trio.CapacityLimiter(concurrency)

    async def generate(
        self,
        graph: dict[str, Any],
        *,
        prompt_id: str,
        timeout_s: float,
        on_progress: Callable[[PromptProgress], None] | None = None,
        recover: bool = False,
    ) -> GeneratedImage:
        """POST /prompt, poll GET /history/{id} until it has outputs, GET /view.

        Raises:
            GenerationTimedOut: no picture within *timeout_s*.
            GenerationFailed: ComfyUI recorded an error or an interrupt.
        """
        report = on_progress or (lambda _: None)
        async with self._limiter:
            try:
                with trio.fail_after(timeout_s):
                    await self._client.submit(graph, prompt_id=prompt_id, client_id=None)
                    report(PromptProgress(ProgressStage.QUEUED))
                    return await self._poll_and_download(prompt_id, report)
            except trio.TooSlowError:
                raise GenerationTimedOut(f"no picture within {timeout_s:g} s") from None

    async def _poll_and_download(
        self, prompt_id: str, report: Callable[[PromptProgress], None]
    ) -> GeneratedImage:
        while True:
            await trio.sleep(self.poll_s)
            entry = await self._client.get_history(prompt_id)
            if entry is None:
                continue
            probe = probe_from_history(entry)
            if probe.signal is not Signal.FOUND_SUCCESS or not probe.images:
                raise GenerationFailed("the workflow", f"history says {probe.signal.value}")
            report(PromptProgress(ProgressStage.DOWNLOADING))
            image = probe.images[0]
            downloaded = await self._client.download(image)
            return GeneratedImage(downloaded.data, image.filename, downloaded.content_type)


def polling_comfy_class(poll_s: float) -> type[PollingComfy]:
    """A ``PollingComfy`` subclass that polls every *poll_s* seconds."""
    return type(f"PollingComfy{poll_s:g}s", (PollingComfy,), {"poll_s": poll_s})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between polls")
    args = parser.parse_args(argv)
    if args.poll <= 0:
        parser.error(f"--poll must be positive, not {args.poll!r}")
    return bot_main([], make_generator=polling_comfy_class(args.poll))


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
