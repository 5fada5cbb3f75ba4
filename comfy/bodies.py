"""What came back: is a body a picture, and how to say in one line what it was instead.

``GET /view`` answers with whatever sits between the bot and ComfyUI: the picture, or a
proxy's HTML error page with a 200, an empty body, a truncated file. Only the bytes tell
(docs/comfyui.md, C26): a picture starts with the signature of its format, and the
``Content-Type`` header is reported but never trusted. The same one-line description of a
body (content type, size, first bytes) names what a JSON endpoint sent when it was not
JSON. Pure functions; ``comfy.client`` turns their answers into ``ComfyProtocolError``.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["HEAD_BYTES", "PictureFormat", "describe_body", "describe_head", "picture_format"]

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
