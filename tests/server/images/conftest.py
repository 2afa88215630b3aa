"""Fixtures for the image checks: real JPEG and PNG bytes made with Pillow."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

Encode = Callable[..., bytes]


def _picture(width: int, height: int, seed: int) -> Image.Image:
    """A camera-like RGB picture: smooth gradients plus noise, so JPEG scans hold 0xFF bytes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 127 / (width + height)], -1)
    noisy = base + rng.normal(0, 40, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="session")
def picture() -> Image.Image:
    """A 96x64 RGB picture."""
    return _picture(96, 64, seed=0)


@pytest.fixture(scope="session")
def encode(picture: Image.Image) -> Encode:
    """``encode(fmt="JPEG", image=None, mode=None, **save_options) -> bytes``."""

    def run(
        fmt: str = "JPEG", image: Image.Image | None = None, mode: str | None = None, **options: Any
    ) -> bytes:
        im = picture if image is None else image
        if mode is not None:
            im = im.convert(mode)
        out = io.BytesIO()
        im.save(out, fmt, **options)
        return out.getvalue()

    return run


@pytest.fixture(scope="session")
def jpeg(encode: Encode) -> bytes:
    """A baseline 96x64 RGB JPEG."""
    return encode("JPEG", quality=90)


@pytest.fixture(scope="session")
def png(encode: Encode) -> bytes:
    """A 96x64 RGB PNG."""
    return encode("PNG")
