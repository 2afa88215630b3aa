"""Reading request bodies the same way on every route: the media type, then a byte limit
enforced before anything is parsed (a declared ``Content-Length`` over it is refused unread)."""

from __future__ import annotations

import re

from fastapi import Request

from server.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

__all__ = ["check_media_type", "read_body"]

_CONTENT_LENGTH = re.compile(r"[0-9]+")


def check_media_type(request: Request, expected: str) -> None:
    """Raise :class:`UnsupportedMediaType` unless the Content-Type is ``expected``."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != expected:
        raise UnsupportedMediaType(f"expected Content-Type {expected}, got {media_type[:80]!r}")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes (before parsing)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _CONTENT_LENGTH.fullmatch(declared):  # not isdigit(): it takes "²" too
            raise BadRequest(f"Content-Length must be a number of bytes, got {declared[:40]!r}")
        size = declared.lstrip("0")
        # more digits than the limit has is over it; int() refuses over 4300 digits
        if len(size) > len(str(limit)) or int(size or "0") > limit:
            shown = size if len(size) <= 40 else f"a {len(size)}-digit number of"
            raise PayloadTooLarge(f"body of {shown} bytes is over the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
    return bytes(body)
