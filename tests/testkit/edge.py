"""Frames as the edge selector hands them to its buffer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
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


def kept_in_log(log: Path) -> dict[int, str]:
    """device_seq -> frame_id of the ``frame kept`` lines of an ``edge-selector run`` JSON log
    (``--log-level DEBUG --log-format json``); a torn last line is ignored."""
    kept: dict[int, str] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("message") == "frame kept":
            kept[int(entry["device_seq"])] = entry["frame_id"]
    return kept
