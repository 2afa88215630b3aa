"""The reason codes an image rejection starts with, and the one way to raise one."""

from __future__ import annotations

from typing import NoReturn

from server.errors import ImageRejected

__all__ = ["REASON_CODES", "reject"]

REASON_CODES = (
    "too_large",
    "not_an_image",
    "unsupported_format",
    "format_mismatch",
    "truncated",
    "corrupt",
    "too_many_pixels",
    "size_mismatch",
)
"""Every reason code an :class:`~server.errors.ImageRejected` message starts with."""


def reject(code: str, detail: str) -> NoReturn:
    """Raise ``ImageRejected("<code>: <detail>")``; ``code`` is one of ``REASON_CODES``."""
    raise ImageRejected(f"{code}: {detail}")
