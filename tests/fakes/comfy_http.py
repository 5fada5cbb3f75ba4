"""HTTP routes of ``tests.fakes.comfy.FakeComfy``, shaped like the transcripts.

One async function, ``handle_request(fake, request)``, serves what the client uses:
POST/GET /prompt, GET/POST /queue, POST /interrupt, GET/POST /history, GET /view,
GET /object_info/{class}, GET /system_stats, GET /models/{folder}; each also under
``/api``. Bodies follow the recorded ones: 400 ``value_not_in_list`` (transcript b),
empty-body 200 for /queue, /interrupt and /history posts, ``{}`` history for unknown ids,
404 with an empty body for a missing /view file, text/plain 500 for a body that is not JSON.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import trio

if TYPE_CHECKING:
    from tests.fakes.comfy import FakeComfy

__all__ = ["handle_request", "rejection_body"]

_SERVER_ERROR = "500 Internal Server Error\n\nServer got itself in trouble"
_TOOLTIPS = {
    "ckpt_name": "The name of the checkpoint (model) to load.",
    "lora_name": "The name of the LoRA.",
}


def _json(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


def _text(status: int, body: str) -> httpx.Response:
    return httpx.Response(status, text=body, headers={"content-type": "text/plain; charset=utf-8"})


def rejection_body(
    node_id: str, class_type: str, input_name: str, value: str, allowed: list[str]
) -> dict[str, Any]:
    """The exact 400 shape of an unknown checkpoint or LoRA name (transcript b)."""
    error = {
        "type": "value_not_in_list",
        "message": "Value not in list",
        "details": f"{input_name}: {value!r} not in {allowed!r}",
        "extra_info": {
            "input_name": input_name,
            "input_config": [allowed, {"tooltip": _TOOLTIPS.get(input_name, "")}],
            "received_value": value,
        },
    }
    return {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        },
        "node_errors": {
            node_id: {"errors": [error], "dependent_outputs": ["8"], "class_type": class_type}
        },
    }


def _validate(fake: FakeComfy, graph: dict[str, Any]) -> dict[str, Any] | None:
    checks = (
        ("CheckpointLoaderSimple", "ckpt_name", fake.checkpoints),
        ("LoraLoader", "lora_name", fake.loras),
    )
    for node_id, node in graph.items():
        for class_type, input_name, allowed in checks:
            value = node.get("inputs", {}).get(input_name)
            if node.get("class_type") == class_type and value not in allowed:
                return rejection_body(node_id, class_type, input_name, str(value), list(allowed))
    return None


async def _post_prompt(fake: FakeComfy, body: Any) -> httpx.Response:
    if fake.prompt_overrides:
        status, canned = fake.prompt_overrides.pop(0)
        return _json(status, canned) if isinstance(canned, dict) else _text(status, str(canned))
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), dict):
        error = {
            "type": "no_prompt",
            "message": "No prompt provided",
            "details": "No prompt provided",
            "extra_info": {},
        }
        return _json(400, {"error": error, "node_errors": {}})
    rejected = _validate(fake, body["prompt"])
    if rejected is not None:
        fake.counter += 1  # numbers skip for rejected prompts (docs/comfyui.md, C9)
        return _json(400, rejected)
    item = await fake.enqueue(body)
    if fake.answer_lost_next > 0:  # queued, but a proxy in front lost the answer
        fake.answer_lost_next -= 1
        return _text(502, "Bad Gateway")
    return _json(200, {"prompt_id": item.prompt_id, "number": item.number, "node_errors": {}})


def _object_info(fake: FakeComfy, node_class: str) -> dict[str, Any]:
    names = {
        "CheckpointLoaderSimple": ("ckpt_name", fake.checkpoints),
        "LoraLoader": ("lora_name", fake.loras),
    }
    if node_class not in names:
        return {}
    input_name, values = names[node_class]
    tooltip = {"tooltip": _TOOLTIPS[input_name]}
    spec: list[Any] = (
        [list(values), tooltip]
        if fake.object_info_style == "v1"
        else ["COMBO", {**tooltip, "options": list(values)}]
    )
    info = {
        "input": {"required": {input_name: spec}},
        "output": ["MODEL", "CLIP", "VAE"] if input_name == "ckpt_name" else ["MODEL", "CLIP"],
        "name": node_class,
        "display_name": node_class,
        "python_module": "nodes",
        "category": "loaders",
        "output_node": False,
    }
    return {node_class: info}


def _history(fake: FakeComfy, method: str, path: str, body: Any) -> httpx.Response:
    if method == "POST":
        for prompt_id in (body or {}).get("delete", []):
            fake.history_deleted.append(prompt_id)
            fake.history.pop(prompt_id, None)
        if (body or {}).get("clear"):
            fake.history.clear()
        return httpx.Response(200)
    prompt_id = path.removeprefix("/history").strip("/")
    if not prompt_id:
        return _json(200, fake.history)
    entry = fake.history.get(prompt_id)
    return _json(200, {} if entry is None else {prompt_id: entry})


def _view(fake: FakeComfy, request: httpx.Request) -> httpx.Response:
    filename = request.url.params.get("filename", "")
    if filename.startswith("/") or ".." in filename:
        return httpx.Response(400)
    data = fake.image_for(filename)
    if data is None:
        return httpx.Response(404)
    headers = {"content-type": "image/png", "content-disposition": f'filename="{filename}"'}
    return httpx.Response(200, content=data, headers=headers)


def _job(fake: FakeComfy, method: str, rest: str) -> httpx.Response:
    """GET /api/jobs/{id} and POST /api/jobs/{id}/cancel, as comfy_execution/jobs.py of a
    server after 0.3.64 builds them: history first, then running, then pending."""
    prompt_id, _, action = rest.partition("/")
    if method == "POST" and action == "cancel":
        return _json(200, {"cancelled": fake.cancel_job(prompt_id)})
    if method != "GET" or action:
        return httpx.Response(404)
    entry = fake.history.get(prompt_id)
    if entry is not None:
        failed = entry["status"]["status_str"] == "error"
        job = {
            "id": prompt_id,
            "status": "failed" if failed else "completed",
            "outputs": entry["outputs"],
            "execution_status": entry["status"],
        }
        return _json(200, job)
    for items, status in ((fake.running, "in_progress"), (fake.pending, "pending")):
        if any(item.prompt_id == prompt_id for item in items):
            return _json(200, {"id": prompt_id, "status": status, "outputs_count": 0})
    return _json(404, {"error": "Job not found"})


async def handle_request(fake: FakeComfy, request: httpx.Request) -> httpx.Response:
    """Serve one request, recording it as ``(method, path, json_or_None)``."""
    path = request.url.path
    path = path[len("/api") :] if path.startswith("/api/") else path
    try:
        body = json.loads(request.content) if request.content else None
    except ValueError:
        body = None
        fake.requests.append((request.method, path, None))
        return _text(500, _SERVER_ERROR)
    fake.requests.append((request.method, path, body))
    delay = fake.latency_s.get(f"{request.method} {path}")
    if delay:
        await trio.sleep(delay)
    if fake.unreachable:
        raise httpx.ConnectError("All connection attempts failed", request=request)
    if fake.http_500_next > 0:
        fake.http_500_next -= 1
        return _text(500, _SERVER_ERROR)
    route = (request.method, path)
    if route == ("POST", "/prompt"):
        return await _post_prompt(fake, body)
    if route == ("GET", "/prompt"):
        return _json(200, {"exec_info": {"queue_remaining": fake.queue_remaining()}})
    if route == ("GET", "/queue"):
        running = [item.queue_item() for item in fake.running]
        pending = [item.queue_item() for item in reversed(fake.pending)]  # heap order, unsorted
        return _json(200, {"queue_running": running, "queue_pending": pending})
    if route == ("POST", "/queue"):
        for prompt_id in (body or {}).get("delete", []):
            fake.delete_pending(prompt_id)
        if (body or {}).get("clear"):
            fake.pending.clear()
        return httpx.Response(200)
    if route == ("POST", "/interrupt"):
        prompt_id = (body or {}).get("prompt_id")
        fake.interrupt(prompt_id if isinstance(prompt_id, str) else None)
        return httpx.Response(200)
    if path == "/history" or path.startswith("/history/"):
        return _history(fake, request.method, path, body)
    if route == ("GET", "/view"):
        return _view(fake, request)
    if request.method == "GET" and path.startswith("/object_info/"):
        return _json(200, _object_info(fake, path.removeprefix("/object_info/")))
    if route == ("GET", "/system_stats"):
        system = {
            "os": "posix",
            "comfyui_version": fake.version,
            "python_version": "3.11.7",
            "argv": fake.argv
            + ([] if fake.preview_method == "none" else ["--preview-method", fake.preview_method]),
        }
        return _json(200, {"system": system, "devices": [{"name": "fake", "type": "cuda"}]})
    if route == ("GET", "/jobs") and fake.jobs_api:  # servers after 0.3.64 only
        return _json(200, {"jobs": [], "pagination": {"offset": 0, "limit": 1, "total": 0}})
    if fake.jobs_api and path.startswith("/jobs/"):
        return _job(fake, request.method, path.removeprefix("/jobs/"))
    if route == ("GET", "/models/checkpoints"):
        return _json(200, fake.checkpoints)
    if route == ("GET", "/models/loras"):
        return _json(200, fake.loras)
    return httpx.Response(404)
