"""Fixtures for curator.wire: real PNG bytes and factories for valid frames and batches."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from curator.wire import BatchUpload, FrameRecord


def png(width: int, height: int, seed: int = 0) -> bytes:
    """A real 8-bit RGB PNG of random pixels, written with the standard library."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def make_frame() -> Callable[..., FrameRecord]:
    """``make_frame(seq=1, dim=8, **fields)``: a valid PNG frame from device ``cam-1``."""

    def make(seq: int = 1, dim: int = 8, **fields: Any) -> FrameRecord:
        rng = np.random.default_rng(seq)
        args: dict[str, Any] = {
            "image": png(6, 4, seed=seq),
            "embedding": rng.standard_normal(dim).astype(np.float32),
            "device_id": "cam-1",
            "device_seq": seq,
            "captured_at": datetime(2024, 5, 1, 12, 0, seq % 60, tzinfo=UTC),
            "model_version": "fmnist-small@3",
            "width": 6,
            "height": 4,
            "image_format": "png",
            "scores": {"entropy": 0.71, "novelty": 0.42, "value": 0.66},
            "quality": {"blur": 120.5, "exposure": 0.48},
            "predicted_class": 2,
            "class_probabilities": [0.1, 0.2, 0.7],
            "keep_reason": "value_above_threshold",
            "keep_value": 0.66,
            "keep_threshold": 0.6,
        }
        args.update(fields)
        return FrameRecord.from_image(args.pop("image"), args.pop("embedding"), **args)

    return make


@pytest.fixture
def make_batch(make_frame: Callable[..., FrameRecord]) -> Callable[..., BatchUpload]:
    """``make_batch(n=3, **frame_fields)``: a valid batch of ``n`` frames from ``cam-1``."""

    def make(n: int = 3, **fields: Any) -> BatchUpload:
        frames = tuple(make_frame(seq=i + 1, **fields) for i in range(n))
        return BatchUpload(batch_id="batch-0001", device_id="cam-1", frames=frames)

    return make
