"""Encoding a kept frame for the buffer and the wire: :func:`encode_image`.

JPEG by default (quality configurable), PNG when lossless matters; an optional downscale keeps
the longer side at most ``max_side`` pixels (aspect ratio kept). Pillow is imported on first use
(extra ``edge``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from curator._optional import require
from curator.errors import InvalidInputError
from curator.wire import ImageFormat

__all__ = ["EncodedImage", "encode_image"]

_MAX_SIDE: dict[str, int] = {"jpeg": 65_500, "png": 65_535}
"""Largest side per format: libjpeg's limit, and the wire contract's for PNG."""


@dataclass(frozen=True)
class EncodedImage:
    """Encoded image bytes with the size and format a :class:`curator.wire.FrameRecord` needs."""

    data: bytes
    width: int
    height: int
    image_format: ImageFormat


def encode_image(
    pixels: Any,
    *,
    image_format: ImageFormat = "jpeg",
    quality: int = 85,
    max_side: int | None = None,
) -> EncodedImage:
    """Encode a ``uint8`` frame, downscaled first when it is larger than ``max_side``.

    Args:
        pixels: ``(H, W)`` grey or ``(H, W, 3)`` RGB ``uint8`` array.
        image_format: ``"jpeg"`` or ``"png"``.
        quality: JPEG quality, 1 to 95 (ignored for PNG).
        max_side: the longest side after downscaling, or None to keep the size.

    Raises:
        InvalidInputError: not a ``uint8`` ``(H, W)`` / ``(H, W, 3)`` array, an empty one, an
            unknown format, an out-of-range option, or a side (after downscaling) larger than
            the format allows (JPEG 65,500; PNG 65,535, the wire contract's limit).
        MissingDependencyError: Pillow is not installed.
    """
    try:
        arr = np.asarray(pixels)
    except ValueError as exc:  # ragged nested sequences
        raise InvalidInputError(f"pixels must be a (H, W) or (H, W, 3) uint8 array: {exc}") from exc
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise InvalidInputError(
            f"pixels must be a (H, W) or (H, W, 3) uint8 array, got {arr.dtype} {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInputError(f"pixels must not be empty, got shape {arr.shape}")
    if not isinstance(image_format, str) or image_format not in _MAX_SIDE:
        raise InvalidInputError(f"image_format must be 'jpeg' or 'png', got {image_format!r}")
    quality = _int_option(quality, "quality", "an integer from 1 to 95", 1, 95)
    if max_side is not None:
        max_side = _int_option(max_side, "max_side", "a positive integer or None", 1, None)
    height, width = int(arr.shape[0]), int(arr.shape[1])
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    if max(width, height) > _MAX_SIDE[image_format]:
        raise InvalidInputError(
            f"a {image_format} image has at most {_MAX_SIDE[image_format]} pixels a side, "
            f"got {width}x{height}; pass a smaller max_side"
        )
    pil = require("PIL.Image", extra="edge")
    image = pil.fromarray(np.ascontiguousarray(arr))
    if image.size != (width, height):
        image = image.resize((width, height), pil.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    if image_format == "jpeg":
        image.save(out, format="JPEG", quality=quality)
    else:
        image.save(out, format="PNG")
    return EncodedImage(out.getvalue(), image.width, image.height, image_format)


def _int_option(value: object, name: str, expected: str, low: int, high: int | None) -> int:
    """``value`` as an int in ``[low, high]`` (numpy integers accepted, bools refused).

    Raises:
        InvalidInputError: not an integer, or out of range; the message says ``expected``.
    """
    problem = InvalidInputError(f"{name} must be {expected}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise problem
    number = int(value)
    if number < low or (high is not None and number > high):
        raise problem
    return number
