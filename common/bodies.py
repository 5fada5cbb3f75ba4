"""HTTP bodies: read up to a cap, is it a picture, and what it was instead.

``GET /view`` answers with whatever sits between the bot and ComfyUI: the picture, or a
proxy's HTML error page with a 200, an empty body, a truncated file. Only the bytes tell
(docs/comfyui.md, C26): a picture starts with the signature of its format, and the
``Content-Type`` header is reported but never trusted. The same one-line description of a
body (content type, size, first bytes) names what a JSON endpoint sent when it was not
JSON. ``comfy.client`` turns what goes wrong here into ``ComfyProtocolError``; the LLM
client into its own error.

``BodyReader`` (sans-IO) reads a body up to a cap and decompresses it itself (gzip,
deflate), at most ``INFLATE_STEP_BYTES`` a step: httpx's own decoders inflate each raw
read whole, so 64 KiB of a gzip bomb became about 64 MB at once (docs/libraries.md, L30).
``read_body`` is its thin loop over an httpx response.
"""

from __future__ import annotations

import enum
import zlib
from typing import Final

import httpx

__all__ = [
    "ACCEPT_ENCODING",
    "HEAD_BYTES",
    "INFLATE_STEP_BYTES",
    "BodyError",
    "BodyReader",
    "BodyTooLarge",
    "BodyUndecodable",
    "PictureFormat",
    "describe_body",
    "describe_head",
    "picture_format",
    "read_body",
]

INFLATE_STEP_BYTES: Final = 64 * 1024  # decompressed per step, whatever the raw chunk holds
# What a request offers: exactly the encodings BodyReader decodes.
ACCEPT_ENCODING: Final = "gzip, deflate"

HEAD_BYTES: Final = 48  # of a body, quoted in an error's detail
_SIGNATURE_BYTES: Final = 12  # the longest signature checked (RIFF....WEBP)


class PictureFormat(enum.Enum):
    """A format Telegram takes as a photo; the value is its MIME type."""

    PNG = "image/png"
    JPEG = "image/jpeg"
    WEBP = "image/webp"

    @property
    def extension(self) -> str:
        return _EXTENSIONS[self]


_EXTENSIONS: Final = {
    PictureFormat.PNG: ".png",
    PictureFormat.JPEG: ".jpg",
    PictureFormat.WEBP: ".webp",
}


def picture_format(data: bytes) -> PictureFormat | None:
    """The format whose signature *data* starts with, or None (not a picture we send).

    PNG: the 8-byte ``\\x89PNG\\r\\n\\x1a\\n``; JPEG: ``FF D8 FF``; WebP: ``RIFF``, a
    4-byte size, ``WEBP``.
    """
    head = data[:_SIGNATURE_BYTES]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PictureFormat.PNG
    if head.startswith(b"\xff\xd8\xff"):
        return PictureFormat.JPEG
    if len(head) == _SIGNATURE_BYTES and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return PictureFormat.WEBP
    return None


def describe_head(data: bytes, *, limit: int = HEAD_BYTES) -> str:
    """The first *limit* bytes: quoted if they are printable UTF-8 text, else in hex."""
    head = data[:limit]
    if not head:
        return "nothing"
    text = _printable_text(head)
    more = "…" if len(data) > limit else ""
    if text is not None:
        return repr(text + more)
    return head.hex(" ") + (" …" if more else "")


def describe_body(data: bytes, *, content_type: str, size: int | None = None) -> str:
    """``text/html, 1532 bytes, starting '<!DOCTYPE html>…'``: one line for an error."""
    kind = content_type.split(";")[0].strip() or "no content type"
    length = len(data) if size is None else size
    if length == 0:
        return f"{kind}, empty"
    return f"{kind}, {length} bytes, starting {describe_head(data)}"


def _printable_text(head: bytes) -> str | None:
    """*head* as one line of text, or None when it is binary. A multi-byte character cut
    at the end of *head* is dropped rather than taken for binary."""
    for cut in range(4):
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        flat = " ".join(text.split())
        return flat if flat.isprintable() else None
    return None


class BodyError(Exception):
    """A body that cannot be read within its rules; the message is one line."""


class BodyTooLarge(BodyError):
    """The body (decompressed) passed its cap."""


class BodyUndecodable(BodyError):
    """An unknown ``Content-Encoding``, or compressed data that does not decompress."""


class BodyReader:
    """Raw body chunks in, at most *limit* decoded bytes out; sans-IO.

    ``feed`` raises ``BodyTooLarge`` as soon as the decoded body passes *limit*, or, with
    *truncate*, keeps the first *limit* bytes and sets ``full`` (an error page that is
    only quoted). Each inflate step yields at most ``INFLATE_STEP_BYTES``, so a compressed
    body never costs much more than *limit*, however well it compresses.
    """

    def __init__(self, content_encoding: str, *, limit: int, truncate: bool = False) -> None:
        self._limit = limit
        self._truncate = truncate
        self._chunks: list[bytes] = []
        self._size = 0
        self.full = False
        self._inflate = _inflater(content_encoding)
        self.compressed = self._inflate is not None
        # "deflate" is zlib-wrapped by the standard, raw by some servers: retry raw once.
        self._deflate_retry = self.compressed and "gzip" not in content_encoding.lower()

    def feed(self, raw: bytes) -> None:
        if self.full:
            return
        if self._inflate is None:
            self._take(raw)
            return
        data = raw
        while data and not self.full:
            try:
                step = min(self._limit - self._size + 1, INFLATE_STEP_BYTES)
                out = self._inflate.decompress(data, step)
            except zlib.error as exc:
                if not self._deflate_retry:
                    raise BodyUndecodable(f"compressed body does not decompress: {exc}") from None
                self._inflate, self._deflate_retry = zlib.decompressobj(-zlib.MAX_WBITS), False
                continue
            self._deflate_retry = False
            self._take(out)
            data = self._inflate.unconsumed_tail
            if self._inflate.eof:
                return  # anything after the end of the stream is ignored, as httpx does

    def finish(self) -> bytes:
        """The decoded body; compressed data cut short gives what it held, as httpx does."""
        if self._inflate is not None and not self.full:
            try:
                self._take(self._inflate.flush())
            except zlib.error as exc:
                raise BodyUndecodable(f"compressed body does not decompress: {exc}") from None
        return b"".join(self._chunks)

    def _take(self, data: bytes) -> None:
        room = self._limit - self._size
        if len(data) > room:
            if not self._truncate:
                raise BodyTooLarge(f"body is over its cap of {self._limit} bytes")
            data, self.full = data[:room], True
        self._chunks.append(data)
        self._size += len(data)


def _inflater(content_encoding: str) -> zlib._Decompress | None:
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c not in ("", "identity")]
    if not codings:
        return None
    if codings in (["gzip"], ["x-gzip"]):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if codings == ["deflate"]:
        return zlib.decompressobj()
    raise BodyUndecodable(f"Content-Encoding {content_encoding!r} is not gzip or deflate")


async def read_body(response: httpx.Response, *, limit: int, truncate: bool = False) -> bytes:
    """Read *response* (opened with ``stream``) through a ``BodyReader``. A declared
    ``Content-Length`` over *limit* on an uncompressed body is refused before reading.

    Raises:
        BodyTooLarge, BodyUndecodable: see ``BodyReader``.
        httpx.HTTPError: the connection failed while reading.
    """
    if response.is_stream_consumed:
        # Built in memory (``httpx.MockTransport``), so read and decoded by httpx already:
        # only the cap is left to apply.
        reader = BodyReader("", limit=limit, truncate=truncate)
        reader.feed(response.content)
        return reader.finish()
    reader = BodyReader(
        response.headers.get("content-encoding", ""), limit=limit, truncate=truncate
    )
    declared = response.headers.get("content-length", "")
    known = declared.isascii() and declared.isdigit()
    if known and int(declared) > limit and not truncate and not reader.compressed:
        raise BodyTooLarge(f"body of {declared} bytes (Content-Length) is over its cap of {limit}")
    async for raw in response.aiter_raw():
        reader.feed(raw)
        if reader.full:
            break
    return reader.finish()
