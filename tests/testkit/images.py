"""Small real images for tests."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from server.images.checker import ImageCheck, check_images


def jpeg(n: int, size: tuple[int, int] = (16, 12)) -> bytes:
    """A real JPEG of ``size`` (width, height), quality 90, with pixels distinct for each ``n``."""
    pixels = np.random.default_rng(n).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


CRASH = b"CRASH"
"""Bytes that make :func:`check_or_crash` kill the process checking them."""

SLOW = b"SLOW"
"""Bytes that :func:`check_or_crash` takes two seconds over (then answers as usual)."""


def check_or_crash(
    images: Sequence[ImageCheck], max_pixels: int, max_bytes: int
) -> list[str | None]:
    """:func:`server.images.checker.check_images`, except that the process dies (as a decoder
    crash or the OOM killer would take it) when an image starts with :data:`CRASH`, and is slow
    over one that starts with :data:`SLOW`."""
    if any(data.startswith(CRASH) for data, _, _ in images):
        os._exit(70)
    if any(data.startswith(SLOW) for data, _, _ in images):
        time.sleep(2.0)
    return check_images(images, max_pixels, max_bytes)
