"""Whatever ComfyUI, or a proxy in front of it, answers becomes a ``ComfyError``; every
answer is read up to a cap; /view must hand back a picture (docs/comfyui.md, C26)."""

from __future__ import annotations

import gzip
import json
import logging
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.logs import plain_fields
from comfy.client import MAX_JSON_BYTES, MAX_QUEUE_BYTES, ComfyClient, DownloadedImage
from comfy.errors import ComfyError, ComfyProtocolError, ComfyUnavailable
from comfy.events import BinaryFrame, Garbage, parse_ws_message
from comfy.follower import Follower
from comfy.generate import Comfy
from comfy.messages import ImageRef
from common.bodies import (
    BodyReader,
    BodyTooLarge,
    BodyUndecodable,
    PictureFormat,
    describe_body,
    describe_head,
    picture_format,
)
from tests.fakes.comfy import PNG_MAGIC, open_fake_comfy
from tests.fakes.comfy_fixtures import FAKE_BASE_URL, NoJitter

GRAPH: dict[str, Any] = {"1": {"class_type": "SaveImage", "inputs": {}}}
CHUNK = 64 * 1024
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + b"\0" * 20
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\0" * 20
HTML = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)
Call = Callable[[ComfyClient], Awaitable[object]]

CALLS: dict[str, Call] = {
    "submit": lambda c: c.submit(GRAPH, prompt_id="p", client_id="c"),
    "get_queue": lambda c: c.get_queue(),
    "get_history": lambda c: c.get_history("p"),
    "object_info": lambda c: c.object_info("LoraLoader"),
    "system_stats": lambda c: c.system_stats(),
    "delete_queued": lambda c: c.delete_queued("p"),
    "interrupt": lambda c: c.interrupt("p"),
    "delete_history": lambda c: c.delete_history("p"),
    "download": lambda c: c.download(ImageRef(filename="a.png")),
}
READS_JSON = ("submit", "get_queue", "get_history", "object_info", "system_stats")


class Chunks(httpx.AsyncByteStream):
    """A body in the given raw chunks, as a network read would deliver them."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


class Endless(httpx.AsyncByteStream):
    """A body that never ends; counts what was read of it."""

    def __init__(self, chunk: bytes = b" " * CHUNK) -> None:
        self.chunk = chunk
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            self.sent += len(self.chunk)
            yield self.chunk


def client_for(make: Callable[[], httpx.Response]) -> ComfyClient:
    transport = httpx.MockTransport(lambda request: make())
    return ComfyClient(httpx.AsyncClient(transport=transport, base_url=FAKE_BASE_URL))


def broken_gzip() -> httpx.Response:
    # Built from a stream so that httpx decodes it on the client's side, not here.
    headers = {"content-encoding": "gzip", "content-type": "application/json"}
    return httpx.Response(200, headers=headers, stream=httpx.ByteStream(b"\x1f\x8b\x08 not gzip"))


def html_page() -> httpx.Response:
    return httpx.Response(200, html=HTML)


def bad_utf8() -> httpx.Response:
    return httpx.Response(200, content=b'{"a": "\xff\xfe"}', headers={"content-type": "text/json"})


def deep_json() -> httpx.Response:
    return httpx.Response(200, content=b"[" * 100_000, headers={"content-type": "application/json"})


def bogus_charset_500() -> httpx.Response:
    # ``Response.text`` would pick the rot13 codec and raise TypeError.
    return httpx.Response(
        500, content=b"oops", headers={"content-type": "text/plain; charset=rot13"}
    )


def bogus_charset_403() -> httpx.Response:
    return httpx.Response(
        403, content=b"denied", headers={"content-type": "text/html; charset=rot13"}
    )


def redirect() -> httpx.Response:
    return httpx.Response(302, headers={"location": "http://elsewhere.test/login"})


def wrong_shape() -> httpx.Response:
    return httpx.Response(200, json=[1, 2, 3])


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (broken_gzip, ComfyProtocolError),
        (bogus_charset_500, ComfyUnavailable),
        (bogus_charset_403, ComfyProtocolError),
        (redirect, ComfyProtocolError),
    ],
)
async def test_every_call_turns_a_broken_answer_into_a_comfy_error(
    call: str, reply: Callable[[], httpx.Response], error: type[ComfyError]
) -> None:
    with pytest.raises(error):
        await CALLS[call](client_for(reply))


@pytest.mark.parametrize("call", READS_JSON)
@pytest.mark.parametrize("reply", [html_page, bad_utf8, deep_json, wrong_shape])
async def test_json_endpoints_refuse_what_is_not_their_json(
    call: str, reply: Callable[[], httpx.Response]
) -> None:
    with pytest.raises(ComfyProtocolError):
        await CALLS[call](client_for(reply))


async def test_a_broken_gzip_body_says_so() -> None:
    with pytest.raises(ComfyProtocolError) as caught:
        await client_for(broken_gzip).object_info("LoraLoader")
    assert caught.value.detail.startswith(
        "GET /object_info/LoraLoader: compressed body does not decompress: Error -3 "
    )


async def test_an_unknown_content_encoding_is_refused_and_only_known_ones_are_asked_for() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["accept-encoding"])
        headers = {"content-encoding": "br"}
        return httpx.Response(200, headers=headers, stream=httpx.ByteStream(b"{}"))

    client = ComfyClient(
        httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url=FAKE_BASE_URL)
    )
    with pytest.raises(ComfyProtocolError) as caught:
        await client.system_stats()
    assert caught.value.detail == (
        "GET /system_stats: Content-Encoding 'br' is not gzip or deflate"
    )
    assert seen == ["gzip, deflate"]


async def test_an_html_page_for_json_says_what_came_back() -> None:
    with pytest.raises(ComfyProtocolError) as caught:
        await client_for(html_page).get_history("p")
    assert caught.value.detail == (
        "GET /history answered text/html, 152 bytes, "
        "starting '<!DOCTYPE html> <html><head><title>502 Bad Gatew…', not JSON"
    )


async def test_a_500_quotes_its_body_whatever_charset_it_claims() -> None:
    with pytest.raises(ComfyUnavailable) as caught:
        await client_for(bogus_charset_500).get_queue()
    assert caught.value.detail == "ComfyUI answered 500 to GET /queue: oops"


async def test_an_endless_json_body_is_read_only_up_to_its_cap() -> None:
    stream = Endless()
    client = client_for(lambda: httpx.Response(200, stream=stream))
    with pytest.raises(ComfyProtocolError) as caught:
        await client.get_history("p")
    assert caught.value.detail == f"GET /history/p: body is over its cap of {MAX_JSON_BYTES} bytes"
    assert MAX_JSON_BYTES < stream.sent <= MAX_JSON_BYTES + CHUNK


async def test_the_queue_has_a_larger_cap_and_an_endless_500_is_quoted_not_read() -> None:
    stream = Endless()
    with pytest.raises(ComfyProtocolError, match=f"over its cap of {MAX_QUEUE_BYTES} bytes"):
        await client_for(lambda: httpx.Response(200, stream=stream)).get_queue()
    assert MAX_QUEUE_BYTES < stream.sent <= MAX_QUEUE_BYTES + CHUNK
    error_page = Endless(b"x" * CHUNK)
    with pytest.raises(ComfyUnavailable, match=r"answered 502 to GET /queue: x+…$"):
        await client_for(lambda: httpx.Response(502, stream=error_page)).get_queue()
    assert error_page.sent <= 2 * CHUNK


async def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    stream = Endless()
    headers = {"content-length": str(MAX_JSON_BYTES + 1)}
    with pytest.raises(
        ComfyProtocolError,
        match=rf"{MAX_JSON_BYTES + 1} bytes \(Content-Length\) is over its cap of \d+$",
    ):
        await client_for(lambda: httpx.Response(200, headers=headers, stream=stream)).system_stats()
    assert stream.sent == 0


def gzip_bomb(size: int) -> bytes:
    """*size* spaces, gzipped a MiB at a time (about a thousandth of *size*)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b" " * 2**20
    parts = [packer.compress(block) for _ in range(size // len(block))]
    return b"".join([*parts, packer.flush()])


@pytest.mark.parametrize("one_raw_chunk", [True, False])
async def test_a_gzip_bomb_is_inflated_only_up_to_the_cap(one_raw_chunk: bool) -> None:
    bomb = gzip_bomb(256 * 2**20)
    assert len(bomb) < 2**20
    chunks = [bomb] if one_raw_chunk else [bomb[i : i + CHUNK] for i in range(0, len(bomb), CHUNK)]
    headers = {"content-encoding": "gzip", "content-length": str(len(bomb))}
    client = client_for(lambda: httpx.Response(200, headers=headers, stream=Chunks(chunks)))
    tracemalloc.start()
    try:
        with pytest.raises(ComfyProtocolError, match="body is over its cap"):
            await client.object_info("LoraLoader")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_JSON_BYTES + 2**20  # the cap and change; not 256 MiB, nor 64 MiB a read


async def test_a_queue_number_too_large_for_a_float_sorts_last() -> None:
    body = {
        "queue_running": [],
        "queue_pending": [[10**400, "late"], [-(10**400), "first"], [2, "b"]],
    }
    queue = await client_for(lambda: httpx.Response(200, json=body)).get_queue()
    assert queue.pending == ("first", "b", "late")


async def test_a_400_echoing_a_huge_nested_value_is_summarised_shortly() -> None:
    value: Any = "x"
    for _ in range(500):
        value = [value]
    error = {
        "type": "value_not_in_list",
        "message": "Value not in list",
        "details": "",
        "extra_info": {"input_name": "ckpt_name", "received_value": value},
    }
    body = {"error": {}, "node_errors": {"1": {"errors": [error], "class_type": "Loader"}}}
    client = client_for(lambda: httpx.Response(400, json=body))
    with pytest.raises(ComfyError) as caught:
        await client.submit(GRAPH, prompt_id="p", client_id="c")
    assert caught.value.detail == (
        "ComfyUI rejected the prompt: node 1 (Loader): ckpt_name [[[[...]]]] not in list"
    )


# -- /view must be a picture --------------------------------------------------------------


async def test_an_html_page_from_view_is_not_a_picture_whatever_its_content_type() -> None:
    client = client_for(
        lambda: httpx.Response(200, content=HTML.encode(), headers={"content-type": "image/png"})
    )
    with pytest.raises(ComfyProtocolError) as caught:
        await client.download(ImageRef(filename="persona_00001_.png"))
    assert caught.value.detail == (
        "GET /view for 'persona_00001_.png' answered image/png, 152 bytes, "
        "starting '<!DOCTYPE html> <html><head><title>502 Bad Gatew…', "
        "not a PNG, JPEG or WebP picture"
    )


@pytest.mark.parametrize(
    ("content", "content_type", "found"),
    [
        (b"", "image/png", "image/png, empty"),
        (
            b"\x00\x01\x02\xfe",
            "application/octet-stream",
            "application/octet-stream, 4 bytes, starting 00 01 02 fe",
        ),
        (b"GIF89a\x01\x00", "", "no content type, 8 bytes, starting 47 49 46 38 39 61 01 00"),
    ],
)
async def test_other_bodies_from_view_are_refused_and_described(
    content: bytes, content_type: str, found: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    client = client_for(lambda: httpx.Response(200, content=content, headers=headers))
    with pytest.raises(ComfyProtocolError) as caught:
        await client.download(ImageRef(filename="a.png"))
    assert (
        caught.value.detail
        == f"GET /view for 'a.png' answered {found}, not a PNG, JPEG or WebP picture"
    )


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(PNG_MAGIC + b"data", "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp")],
)
async def test_pictures_are_known_by_their_bytes_not_their_header(
    content: bytes, content_type: str
) -> None:
    client = client_for(
        lambda: httpx.Response(200, content=content, headers={"content-type": "text/plain"})
    )
    image = await client.download(ImageRef(filename="a.png"))
    assert (image.data, image.content_type) == (content, content_type)


async def test_an_endless_view_stops_at_the_picture_cap() -> None:
    stream = Endless(PNG_MAGIC * (CHUNK // 8))
    client = client_for(lambda: httpx.Response(200, stream=stream))
    with pytest.raises(
        ComfyProtocolError, match=r"^GET /view for 'a\.png': body is over its cap of 1000000 bytes$"
    ):
        await client.download(ImageRef(filename="a.png"), max_bytes=1_000_000)
    assert stream.sent <= 1_000_000 + CHUNK


@pytest.mark.parametrize(
    ("image", "detail"),
    [
        (
            ImageRef(filename="\ud800.png"),
            "GET /view for '\\ud800.png' cannot be requested: 'utf-8' codec can't encode "
            "character '\\ud800' in position 0: surrogates not allowed",
        ),
        (
            ImageRef(filename="a.png", subfolder="\udcff"),
            "GET /view for 'a.png' cannot be requested: 'utf-8' codec can't encode "
            "character '\\udcff' in position 0: surrogates not allowed",
        ),
        (
            ImageRef(filename="x" * 100_000),
            f"GET /view for '{'x' * 400}",  # cut short, as every detail is
        ),
    ],
    ids=["surrogate-name", "surrogate-folder", "too-long"],
)
async def test_a_file_name_no_url_can_carry_is_a_protocol_error(
    image: ImageRef, detail: str
) -> None:
    client = client_for(lambda: httpx.Response(200, content=PNG_MAGIC))
    with pytest.raises(ComfyProtocolError) as caught:
        await client.download(image)
    assert caught.value.detail.startswith(detail[:290])
    with pytest.raises(ComfyProtocolError, match="cannot be requested"):
        await client.get_history("\ud800")


# -- the pure describers ------------------------------------------------------------------


def test_picture_signatures() -> None:
    assert picture_format(PNG_MAGIC) is PictureFormat.PNG
    assert picture_format(JPEG) is PictureFormat.JPEG
    assert picture_format(WEBP) is PictureFormat.WEBP
    assert picture_format(b"RIFF\x24\x00\x00\x00WAVEfmt ") is None  # RIFF, but audio
    assert picture_format(b"RIFF\x24\x00\x00\x00WEB") is None  # cut short
    assert picture_format(PNG_MAGIC[:7]) is None
    assert picture_format(b"") is None
    assert [f.extension for f in PictureFormat] == [".png", ".jpg", ".webp"]


def test_heads_are_quoted_as_text_or_shown_in_hex() -> None:
    assert describe_head(b"") == "nothing"
    assert describe_head(b"Bad\n\tGateway") == "'Bad Gateway'"
    assert describe_head("ё".encode() * 30, limit=5) == "'ёё…'"  # a character cut at the end
    assert describe_head(b"\x89PNG\r\n") == "89 50 4e 47 0d 0a"
    assert describe_head(b"\x00" * 60, limit=3) == "00 00 00 …"
    assert describe_head(b"ok\x07bell") == "6f 6b 07 62 65 6c 6c"
    assert describe_body(b"{}", content_type="application/json; charset=utf-8") == (
        "application/json, 2 bytes, starting '{}'"
    )
    assert describe_body(b"ab", content_type="", size=9000) == (
        "no content type, 9000 bytes, starting 'ab'"
    )


def test_websocket_frames_nested_past_the_stack_are_garbage_not_a_crash() -> None:
    assert parse_ws_message("[" * 100_000) == Garbage("text frame is not JSON (100000 chars)")
    meta = b"[" * 100_000
    frame = b"\x00\x00\x00\x04" + len(meta).to_bytes(4, "big") + meta
    assert parse_ws_message(frame) == BinaryFrame(4, None, len(frame))


def read(encoding: str, raw: bytes, *, limit: int = 100, truncate: bool = False) -> bytes:
    reader = BodyReader(encoding, limit=limit, truncate=truncate)
    for i in range(0, len(raw), 7):  # odd raw chunk sizes, as a network delivers them
        reader.feed(raw[i : i + 7])
    return reader.finish()


def test_the_body_reader_decodes_what_it_offers_and_nothing_else() -> None:
    text = b'{"a": "' + b"x" * 50 + b'"}'
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert read("", text) == text
    assert read("identity", text) == text
    assert read("gzip", gzip.compress(text)) == text
    assert read("X-Gzip, identity", gzip.compress(text)) == text
    assert read("deflate", zlib.compress(text)) == text
    assert read("deflate", raw_deflate.compress(text) + raw_deflate.flush()) == text
    assert read("gzip", gzip.compress(text) + b"trailing junk") == text  # as httpx does
    assert read("gzip", gzip.compress(text)[:-8]) == text  # no trailer: what it held
    with pytest.raises(BodyUndecodable, match=r"^Content-Encoding 'gzip, gzip' is not gzip"):
        BodyReader("gzip, gzip", limit=100)
    with pytest.raises(BodyUndecodable, match=r"^compressed body does not decompress: "):
        read("gzip", b"\x1f\x8b\x08\x00 not really")
    with pytest.raises(BodyUndecodable):
        read("deflate", b"neither zlib nor raw deflate \xff\xff\xff")


def test_the_body_reader_caps_and_truncates() -> None:
    assert read("", b"x" * 100) == b"x" * 100
    with pytest.raises(BodyTooLarge, match=r"^body is over its cap of 100 bytes$"):
        read("", b"x" * 101)
    with pytest.raises(BodyTooLarge):
        read("gzip", gzip.compress(b"x" * 101))
    assert read("", b"x" * 500, truncate=True) == b"x" * 100
    assert read("gzip", gzip.compress(b"y" * 10_000), truncate=True) == b"y" * 100


# -- the reconciler survives anything -----------------------------------------------------


async def test_the_reconciler_outlives_garbage_and_a_bug_then_finds_the_prompt(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="comfy.follower")
    mode = ["fine"]
    async with open_fake_comfy() as fake:

        async def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.startswith("/history/") and mode[0] == "gzip":
                return broken_gzip()
            if request.url.path.startswith("/history/") and mode[0] == "bug":
                raise RuntimeError("a bug under the client")
            return await fake.handler(request)

        transport = httpx.MockTransport(handler)
        async with httpx.AsyncClient(transport=transport, base_url=FAKE_BASE_URL) as http:
            client = ComfyClient(http)
            follower = Follower(client, fake.open_ws, rng=NoJitter())
            comfy = Comfy(client, follower)
            async with trio.open_nursery() as nursery:
                await nursery.start(follower.run)
                await follower.wait_connected()

                async def break_things() -> None:
                    await trio.sleep(1)
                    mode[0] = "gzip"
                    fake.drop_websockets()  # the prompt's messages are lost: reconcile it
                    await trio.sleep(10)
                    mode[0] = "bug"
                    await trio.sleep(10)
                    mode[0] = "fine"

                nursery.start_soon(break_things)
                t0 = trio.current_time()
                image = await comfy.generate(GRAPH_FOR_FAKE, prompt_id="p-1", timeout_s=120)
                assert 21 <= trio.current_time() - t0 <= 21 + 2  # found at the next probe
                assert image.data.startswith(PNG_MAGIC)
                assert follower.connected
                nursery.cancel_scope.cancel()
    failures = [r for r in caplog.records if r.getMessage() == "comfy_reconcile_failed"]
    assert [r.levelname for r in failures] == ["WARNING", "ERROR"]  # once per distinct failure
    assert "compressed body does not decompress" in plain_fields(failures[0])
    assert plain_fields(failures[1]) == (' error="unexpected RuntimeError: a bug under the client"')


GRAPH_FOR_FAKE: dict[str, Any] = {
    "1": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
    },
    "8": {"class_type": "SaveImage", "inputs": {"filename_prefix": "persona_bot"}},
}


# -- any answer at all ----------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def shaped(keys: list[str]) -> st.SearchStrategy[Any]:
    """Objects with the keys an endpoint's model reads, holding anything."""
    return st.dictionaries(st.sampled_from(keys), json_values, max_size=len(keys))


documents = st.one_of(
    json_values,
    shaped(["queue_running", "queue_pending"]),
    st.fixed_dictionaries({"queue_pending": st.lists(st.lists(json_values, max_size=3))}),
    st.dictionaries(st.just("p"), shaped(["outputs", "status"]), max_size=1),
    st.dictionaries(st.just("LoraLoader"), shaped(["input", "name"]), max_size=1),
    shaped(["prompt_id", "number", "error", "node_errors", "system", "devices"]),
)
bodies = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([PNG_MAGIC, JPEG, WEBP]).map(lambda head: head + b"tail"),
    documents.map(lambda doc: json.dumps(doc).encode()),
)


@given(
    status=st.sampled_from([200, 200, 200, 204, 301, 400, 404, 413, 500, 503]),
    body=bodies,
    content_type=st.sampled_from(["", "application/json", "text/html; charset=rot13", "image/png"]),
    encoding=st.sampled_from(["", "gzip", "gzip-broken", "deflate-broken"]),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_answer_is_a_result_or_a_comfy_error(
    status: int, body: bytes, content_type: str, encoding: str
) -> None:
    def reply() -> httpx.Response:
        headers = {"content-type": content_type} if content_type else {}
        raw = gzip.compress(body) if encoding == "gzip" else body
        if encoding:
            headers["content-encoding"] = encoding.removesuffix("-broken")
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(raw))

    async def every_call() -> None:
        client = client_for(reply)
        for call in CALLS.values():
            try:
                result = await call(client)
            except ComfyError:
                continue
            if isinstance(result, DownloadedImage):
                assert picture_format(result.data) is not None

    trio.run(every_call)
