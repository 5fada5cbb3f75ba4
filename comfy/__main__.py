"""``python -m comfy``: draw one picture from the terminal, or check the models.

Examples::

    python -m comfy --url http://gpu:8188 --checkpoint sd_xl_base_1.0.safetensors \\
        --lora anna.safetensors --prompt "anna, portrait, soft light" -o out.png
    python -m comfy --url http://gpu:8188 --check --checkpoint sd_xl_base_1.0.safetensors \\
        --lora anna.safetensors --lora bob.safetensors

``--url`` takes the bot's ``COMFYUI_BASE_URL`` as it is, one server or a comma-separated
list (``#N`` slots are read and ignored here, see ``comfy.servers``): ``--check`` checks
every server, each line led by its ``host:port``; a picture is drawn on the first server
that has the checkpoint and the LoRA.

Uses the same code path as the bot (template, websocket follower, timeout and cleanup).
Exit code 0 on success, 1 with a one-line error otherwise.

The defaults come from the bot's own settings, read from ``.env`` in the working folder
and the environment (the environment wins, as for the bot): ``COMFYUI_BASE_URL`` for
``--url``, ``COMFYUI_DEFAULT_CHECKPOINT``, ``COMFYUI_TIMEOUT_SECONDS`` and
``WORKFLOW_FILE``. So next to the bot's ``.env``, ``python -m comfy --check --lora
anna.safetensors`` needs nothing exported.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Final

import httpx
import trio
from dotenv import dotenv_values

from comfy.client import ComfyClient
from comfy.errors import ComfyError
from comfy.follower import Follower, OpenWebsocket, websocket_opener
from comfy.generate import Comfy, GeneratedImage, ProgressStage, PromptProgress
from comfy.preflight import check_models
from comfy.servers import ServerSpec, parse_servers
from comfy.workflow import (
    MAX_SEED,
    SHIPPED_WORKFLOW,
    PromptParams,
    WorkflowError,
    WorkflowTemplate,
)

__all__ = ["bot_settings", "build_parser", "main", "run_cli"]

DEFAULT_WORKFLOW: Final = str(SHIPPED_WORKFLOW)
DEFAULT_CHECKPOINT: Final = "sd_xl_base_1.0.safetensors"
DEFAULT_TIMEOUT_S: Final = 120.0
ENV_FILE: Final = ".env"
HTTP_TIMEOUT: Final = httpx.Timeout(30.0)
CONNECT_TIMEOUT_S: Final = 10.0  # for the websocket, before the picture is asked for

Say = Callable[[str], None]


def bot_settings(
    env_file: str | Path = ENV_FILE, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The bot's variables from *env_file* and the environment (which wins), upper-cased.

    ``comfy`` knows nothing of the bot's settings model, so it reads the file itself;
    empty values count as unset, as they do for the bot.
    """
    values = {
        name.upper(): value
        for name, value in dotenv_values(env_file).items()
        if value is not None and value.strip()
    }
    environ = os.environ if environ is None else environ
    values.update({name.upper(): value for name, value in environ.items() if value.strip()})
    return values


def build_parser(settings: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The command line; *settings* (see :func:`bot_settings`) give the defaults."""
    known = settings or {}
    url = known.get("COMFYUI_BASE_URL")
    parser = argparse.ArgumentParser(
        prog="python -m comfy", description="Draw one picture on ComfyUI, or check its models."
    )
    parser.add_argument(
        "--url",
        required=url is None,
        default=url,
        help=(
            "ComfyUI base URL, e.g. http://gpu:8188, or a comma-separated list of them"
            " (default: COMFYUI_BASE_URL from .env)"
        ),
    )
    parser.add_argument(
        "--checkpoint", default=known.get("COMFYUI_DEFAULT_CHECKPOINT", DEFAULT_CHECKPOINT)
    )
    parser.add_argument(
        "--lora", action="append", default=[], help="LoRA file (repeat for --check)"
    )
    parser.add_argument("--lora-strength", type=float, default=0.8, help="model and clip strength")
    parser.add_argument("--prompt", help="positive prompt")
    parser.add_argument("--negative", default="blurry, lowres, watermark, text")
    parser.add_argument("--seed", type=int, help="default: random")
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument(
        "--timeout",
        type=float,
        default=known.get("COMFYUI_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_S),
        help="seconds",
    )
    parser.add_argument("--workflow", default=known.get("WORKFLOW_FILE", DEFAULT_WORKFLOW))
    parser.add_argument("-o", "--output", help="file to write the picture to")
    parser.add_argument("--check", action="store_true", help="only check the models exist")
    return parser


def _progress_printer(say: Say) -> Callable[[PromptProgress], None]:
    last: list[PromptProgress] = []

    def on_progress(progress: PromptProgress) -> None:
        if last and last[0] == progress:
            return
        last[:] = [progress]
        if progress.stage is ProgressStage.RUNNING and progress.maximum:
            say(f"running {progress.value}/{progress.maximum}")
        elif progress.stage is ProgressStage.QUEUED and progress.queue_remaining is not None:
            say(f"queued ({progress.queue_remaining} in ComfyUI's queue)")
        elif progress.stage is not ProgressStage.RUNNING:
            say(progress.stage.value.replace("_", " "))

    return on_progress


async def _check(client: ComfyClient, args: argparse.Namespace, say: Say) -> int:
    missing = await check_models(client, checkpoint=args.checkpoint, loras=args.lora)
    for model in missing:
        say(f"missing {model.kind}: {model.name}")
    if not missing:
        say(f"ok: checkpoint and {len(args.lora)} LoRA file(s) present")
    return 1 if missing else 0


async def _check_each(clients: Sequence[ComfyClient], args: argparse.Namespace, say: Say) -> int:
    """Every server in turn; one that cannot be reached is a failed line, not the end."""
    code = 0
    for client in clients:

        def said(line: str, name: str = client.server) -> None:
            say(f"{name}: {line}")

        try:
            code = max(code, await _check(client, args, said))
        except ComfyError as exc:
            said(f"error: {type(exc).__name__}: {exc.detail}")
            code = 1
    return code


async def _first_capable(
    clients: Sequence[ComfyClient], args: argparse.Namespace, say: Say
) -> ComfyClient | None:
    """The first server with the checkpoint and the LoRA, or None (each reason said)."""
    for client in clients:
        try:
            missing = await check_models(client, checkpoint=args.checkpoint, loras=args.lora[:1])
        except ComfyError as exc:
            say(f"{client.server}: {type(exc).__name__}: {exc.detail}")
            continue
        if not missing:
            say(f"server {client.server}")
            return client
        say(f"{client.server}: missing " + ", ".join(model.name for model in missing))
    return None


async def _generate(
    client: ComfyClient, open_ws: OpenWebsocket, args: argparse.Namespace, say: Say
) -> int:
    template = WorkflowTemplate.from_file(args.workflow)
    seed = args.seed if args.seed is not None else random.Random().randint(0, MAX_SEED)
    params = PromptParams(
        checkpoint=args.checkpoint,
        lora_name=args.lora[0],
        lora_strength_model=args.lora_strength,
        lora_strength_clip=args.lora_strength,
        positive=args.prompt,
        negative=args.negative,
        seed=seed,
        width=args.width,
        height=args.height,
        steps=args.steps,
    )
    follower = Follower(client, open_ws)
    prompt_id = str(uuid.uuid4())
    say(f"prompt {prompt_id} seed {seed}")
    result: GeneratedImage | ComfyError
    async with trio.open_nursery() as nursery:
        await nursery.start(follower.run)
        comfy = Comfy(client, follower)
        try:
            with trio.move_on_after(CONNECT_TIMEOUT_S):
                await follower.wait_connected()
            result = await comfy.generate(
                template.build(params),
                prompt_id=prompt_id,
                timeout_s=args.timeout,
                on_progress=_progress_printer(say),
            )
        except ComfyError as exc:  # raised outside the nursery, so not in an ExceptionGroup
            result = exc
        nursery.cancel_scope.cancel()
    if isinstance(result, ComfyError):
        raise result
    image = result
    await trio.Path(args.output).write_bytes(image.data)
    say(f"wrote {args.output} ({len(image.data)} bytes, {image.content_type})")
    return 0


async def run_cli(
    args: argparse.Namespace,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    open_ws: OpenWebsocket | Mapping[str, OpenWebsocket] | None = None,
    say: Say = print,
) -> int:
    """Run the command; *transport* and *open_ws* (one, or one per ``host:port``) replace
    the network in tests."""
    if not args.check and (not args.prompt or not args.lora or not args.output):
        say("error: --prompt, --lora and -o are required to draw a picture")
        return 2
    try:
        servers = parse_servers(args.url, default_slots=1)
        if not servers:
            raise ValueError("--url names no server")
        async with AsyncExitStack() as stack:
            clients: list[ComfyClient] = []
            for spec in servers:
                http = httpx.AsyncClient(
                    base_url=spec.url, transport=transport, timeout=HTTP_TIMEOUT
                )
                clients.append(ComfyClient(await stack.enter_async_context(http)))
            if len(clients) == 1:  # as it always was: no server names in the output
                if args.check:
                    return await _check(clients[0], args, say)
                return await _generate(clients[0], _opener(open_ws, servers[0]), args, say)
            if args.check:
                return await _check_each(clients, args, say)
            client = await _first_capable(clients, args, say)
            if client is None:
                say("error: no server has the checkpoint and the LoRA")
                return 1
            spec = servers[clients.index(client)]
            return await _generate(client, _opener(open_ws, spec), args, say)
    except ComfyError as exc:
        say(f"error: {type(exc).__name__}: {exc.detail}")
    except (WorkflowError, ValueError, OSError) as exc:
        say(f"error: {exc}")
    return 1


def _opener(
    open_ws: OpenWebsocket | Mapping[str, OpenWebsocket] | None, spec: ServerSpec
) -> OpenWebsocket:
    opener = open_ws.get(spec.name) if isinstance(open_ws, Mapping) else open_ws
    return opener or websocket_opener(spec.url)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(bot_settings()).parse_args(argv)
    return trio.run(run_cli, args)


if __name__ == "__main__":
    sys.exit(main())
