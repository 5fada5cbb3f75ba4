"""The persona's words: an LLM reply, an English scene for the picture, or offline lines.

With ``LLM_BASE_URL`` set, the bot talks to any OpenAI-compatible chat completions
endpoint (Ollama, llama.cpp server, vLLM, OpenAI, OpenRouter) over the process's shared
``httpx.AsyncClient``: one POST, so one HTTP stack and one injectable transport for
tests. Without it, the persona answers with its offline lines, which is enough to try
the picture flow. Every LLM failure becomes a polite sentence, never a silent chat.

The answer is streamed and read up to ``MAX_ANSWER_BYTES`` (counted after decompression,
through the same bounded reader as ComfyUI's answers, ``common.bodies.read_body``): a
server that sends more, or sends it forever within the timeout, costs at most that much
memory and ends as an ``LlmError``. Its text is decoded here as UTF-8, never through the
charset its header names (docs/libraries.md, L30).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from typing import Final

import httpx
import trio
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from bot.core.personas import Persona
from bot.telegram.redact import Redactor
from common.bodies import ACCEPT_ENCODING, BodyError, read_body
from common.logfields import fields
from common.metrics import LLM_REQUESTS, LLM_SECONDS
from store import Turn

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_REPLY_CHARS",
    "ChatCompletions",
    "EventStream",
    "LlmError",
    "offline_reply",
    "persona_messages",
    "scene_messages",
]

log = logging.getLogger(__name__)

MAX_REPLY_CHARS: Final = 4096  # Telegram's sendMessage limit
MAX_SCENE_CHARS: Final = 300
DEFAULT_TIMEOUT_S: Final = 30.0
QUOTED_BODY_CHARS: Final = 200  # of an unexpected answer, in the error's detail
# A 400-token answer is a few KB of JSON; servers that add usage, logprobs or reasoning
# text stay far below this. Anything larger is a misbehaving server or proxy.
MAX_ANSWER_BYTES: Final = 1024 * 1024
REPLY_MAX_TOKENS: Final = 400
SCENE_MAX_TOKENS: Final = 80
SCENE_SYSTEM_PROMPT: Final = (
    "You write prompts for an image generator. Given a chat message written by a character, "
    "describe in English, in at most 25 words, the visible scene: place, action, lighting, "
    "mood. Comma-separated phrases only. No names, no quotes, no explanations."
)


class LlmError(Exception):
    """The LLM could not answer; ``detail`` is one line for the log."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    content: str | None = None


class _Choice(BaseModel):
    model_config = ConfigDict(extra="ignore")
    message: _Message


class _Completion(BaseModel):
    model_config = ConfigDict(extra="ignore")
    choices: list[_Choice]


class _Delta(BaseModel):
    model_config = ConfigDict(extra="ignore")
    content: str | None = None


class _ChunkChoice(BaseModel):
    model_config = ConfigDict(extra="ignore")
    delta: _Delta = _Delta()


class _Chunk(BaseModel):
    """One event of a streamed completion (``"object": "chat.completion.chunk"``)."""

    model_config = ConfigDict(extra="ignore")
    choices: list[_ChunkChoice] = []


class EventStream:
    """PURE: server-sent events in, the payloads of their ``data:`` lines out.

    Comments (``: ping``) and other fields are skipped; a line cut between two chunks is
    kept until its end arrives. More than *limit* bytes in all raises ``LlmError``.
    """

    def __init__(self, *, limit: int = MAX_ANSWER_BYTES) -> None:
        self._limit = limit
        self._size = 0
        self._pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        self._size += len(chunk)
        if self._size > self._limit:
            raise LlmError(f"the streamed answer is over its cap of {self._limit} bytes")
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        payloads = []
        for line in lines:
            if line.startswith(b"data:"):
                payloads.append(line[5:].strip().decode("utf-8", "replace"))
        return payloads


class ChatCompletions:
    """A minimal OpenAI-compatible ``/chat/completions`` client.

    With ``on_text`` a completion is asked for as a stream (``"stream": true``) and
    ``on_text`` gets the text so far after each piece. A server that answers a stream
    request with one JSON body is taken as one that does not stream: that is logged once
    (``llm_streaming_unsupported``) and later requests ask for no stream.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        model: str,
        api_key: SecretStr | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._http = http
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._api_key = api_key
        self._timeout_s = timeout_s
        # A server may echo the key it refused in its error page.
        self._redact = Redactor([api_key.get_secret_value() if api_key else None])
        self._streams: bool | None = None  # None until a stream request was answered

    async def complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.8,
        on_text: Callable[[str], None] | None = None,
    ) -> str:
        """The assistant's text for *messages*; *on_text* sees it grow, if it streams.

        Raises:
            LlmError: timeout, network error, non-2xx, an answer over ``MAX_ANSWER_BYTES``,
                or an answer without text.
        """
        started = trio.current_time()
        try:
            text = await self._complete(
                messages, max_tokens=max_tokens, temperature=temperature, on_text=on_text
            )
        except LlmError:
            _measured("failed", started)
            raise
        _measured("ok", started)
        return text

    async def _complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        on_text: Callable[[str], None] | None,
    ) -> str:
        stream = on_text is not None and self._streams is not False
        # A stream is read piece by piece, so it is asked for uncompressed; a whole body
        # goes through read_body, which decodes what it names here.
        headers = {"accept-encoding": "identity" if stream else ACCEPT_ENCODING}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        body: dict[str, object] = {
            "model": self._model,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if stream:
            body["stream"] = True
        try:
            with trio.fail_after(self._timeout_s):
                async with self._http.stream(
                    "POST", self._url, json=body, headers=headers, timeout=self._timeout_s
                ) as response:
                    status = response.status_code
                    if stream and on_text is not None and _is_event_stream(response):
                        self._streams = True
                        return await _read_stream(response, on_text, self._quote)
                    content = await read_body(response, limit=MAX_ANSWER_BYTES)
        except trio.TooSlowError:
            raise LlmError(f"no answer within {self._timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise LlmError(self._redact(f"{type(exc).__name__}: {exc}")) from None
        except BodyError as exc:
            raise LlmError(self._redact(f"answer unreadable: {exc}")) from None
        if status // 100 != 2:
            raise LlmError(f"HTTP {status}: {self._quote(content)}")
        if stream and self._streams is None:
            self._streams = False
            log.info(
                "llm_streaming_unsupported",
                extra=fields(hint="the LLM answered a stream request at once; replies are"
                             " shown when complete"),
            )  # fmt: skip
        try:
            completion = _Completion.model_validate_json(content)
        except ValidationError:
            raise LlmError(f"unexpected answer: {self._quote(content)}") from None
        text = (completion.choices[0].message.content or "").strip() if completion.choices else ""
        if not text:
            raise LlmError("the answer has no text")
        return text

    def _quote(self, content: bytes) -> str:
        """The start of a server's body for an error; hidden before it is cut, so that no
        part of a secret survives the cut."""
        text = content[: QUOTED_BODY_CHARS * 4].decode("utf-8", "replace")
        return repr(self._redact(text)[:QUOTED_BODY_CHARS])


def _is_event_stream(response: httpx.Response) -> bool:
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    encoded = response.headers.get("content-encoding", "identity").strip().lower()
    return (
        response.status_code // 100 == 2
        and kind == "text/event-stream"
        and (encoded in ("", "identity"))
    )


async def _read_stream(
    response: httpx.Response, on_text: Callable[[str], None], quote: Callable[[bytes], str]
) -> str:
    """The text of a streamed completion, *on_text* told after every piece of it."""
    events = EventStream()
    text = ""
    async for chunk in response.aiter_bytes():
        for payload in events.feed(chunk):
            if payload == "[DONE]":
                return _final(text)
            try:
                event = json.loads(payload)
                piece = _Chunk.model_validate(event)
            except (ValueError, ValidationError):
                continue  # not a completion's piece (a keep-alive of some server): skip
            if isinstance(event, dict) and event.get("error"):
                raise LlmError(f"the stream ended in an error: {quote(payload.encode())}")
            added = "".join(choice.delta.content or "" for choice in piece.choices[:1])
            if added:
                text += added
                on_text(text)
    return _final(text)


def _final(text: str) -> str:
    if not text.strip():
        raise LlmError("the answer has no text")
    return text.strip()


def _measured(outcome: str, started: float) -> None:
    """Count an answered or failed completion (one cut short by a cancel is neither)."""
    LLM_REQUESTS.labels(outcome=outcome).inc()
    LLM_SECONDS.observe(trio.current_time() - started)


def persona_messages(
    persona: Persona, history: Sequence[Turn], user_text: str
) -> list[dict[str, str]]:
    """System prompt, the last turns of this conversation, then the new message."""
    messages = [{"role": "system", "content": persona.system_prompt}]
    messages += [{"role": turn.role, "content": turn.text} for turn in history]
    messages.append({"role": "user", "content": user_text})
    return messages


def scene_messages(reply_text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SCENE_SYSTEM_PROMPT},
        {"role": "user", "content": reply_text[:MAX_REPLY_CHARS]},
    ]


def offline_reply(persona: Persona, *, rng: random.Random) -> str:
    """One of the persona's offline lines, at random."""
    return rng.choice(persona.offline_lines)


def clean_scene(text: str) -> str:
    """One line, no quotes, bounded: it goes into a CLIP prompt."""
    flat = " ".join(text.replace('"', " ").replace("\n", " ").split())
    return flat[:MAX_SCENE_CHARS].rstrip(" ,.")
