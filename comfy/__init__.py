"""ComfyUI client for the persona bot: workflow template, HTTP client, websocket follower,
the ``Comfy.generate`` facade with timeout and cleanup, and the start-up model check.

Typical wiring (the bot's is ``bot/pictures/servers.py``)::

    http = httpx.AsyncClient(base_url="http://gpu:8188")
    client = ComfyClient(http)
    follower = Follower(client, websocket_opener("http://gpu:8188"))
    await nursery.start(follower.run)
    await follower.wait_connected()
    comfy = Comfy(client, follower)
    image = await comfy.generate(template.build(params), prompt_id=pid, timeout_s=120)
"""

from comfy.client import ComfyClient
from comfy.errors import (
    ComfyError,
    ComfyProtocolError,
    ComfyUnavailable,
    GenerationFailed,
    GenerationInterrupted,
    GenerationTimedOut,
    NotConnected,
    PromptRejected,
)
from comfy.events import Preview
from comfy.follower import Follower, OpenWebsocket, websocket_opener
from comfy.generate import Comfy, GeneratedImage, ProgressStage, PromptProgress
from comfy.preflight import MissingModel, check_models
from comfy.workflow import (
    MAX_SEED,
    SHIPPED_WORKFLOW,
    PromptParams,
    WorkflowError,
    WorkflowTemplate,
)

__all__ = [
    "MAX_SEED",
    "SHIPPED_WORKFLOW",
    "Comfy",
    "ComfyClient",
    "ComfyError",
    "ComfyProtocolError",
    "ComfyUnavailable",
    "Follower",
    "GeneratedImage",
    "GenerationFailed",
    "GenerationInterrupted",
    "GenerationTimedOut",
    "MissingModel",
    "NotConnected",
    "OpenWebsocket",
    "Preview",
    "ProgressStage",
    "PromptParams",
    "PromptProgress",
    "PromptRejected",
    "WorkflowError",
    "WorkflowTemplate",
    "check_models",
    "websocket_opener",
]
