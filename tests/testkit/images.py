"""Small real images for tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def jpeg(n: int, size: tuple[int, int] = (16, 12)) -> bytes:
    """A real JPEG of ``size`` (width, height), quality 90, with pixels distinct for each ``n``."""
    pixels = np.random.default_rng(n).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()
