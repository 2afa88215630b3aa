"""Frames as the edge selector hands them to its buffer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from edge_selector.buffer_frames import KeptFrame

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def kept_frame(value: float, size: int = 1000, seed: int = 0, **fields: Any) -> KeptFrame:
    """A kept frame of ``value`` with ``size`` random image bytes after a JPEG signature and an
    8-d embedding, both from ``seed``, captured ``seed`` seconds after ``T0``; ``fields``
    override any attribute (``dim`` sets the embedding's dimension)."""
    rng = np.random.default_rng(seed)
    image = b"\xff\xd8\xff" + rng.bytes(size)
    embedding = rng.standard_normal(fields.pop("dim", 8)).astype(np.float32)
    base: dict[str, Any] = {
        "image": image,
        "width": 32,
        "height": 24,
        "embedding": embedding,
        "model_version": "m-1",
        "scores": {"entropy": 0.25, "novelty": 0.5},
        "value": value,
        "captured_at": T0 + timedelta(seconds=seed),
        "keep_reason": "value_above_threshold",
    }
    base.update(fields)
    return KeptFrame(**base)
