"""Accepted frames in a running app's catalog, ingested the way a device's upload is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from curator.wire import BatchUpload, FrameRecord
from server.auth import Principal, Role
from testkit.images import jpeg

__all__ = ["upload"]


def upload(services: Any, ns: range) -> list[str]:
    """Frames ``jpeg(n)`` of model ``m1`` with distinct 16-d embeddings and 3-class
    probabilities, ingested through ``services.ingest``; returns their frame ids."""
    records = []
    for n in ns:
        emb = np.random.default_rng(n).standard_normal(16).astype(np.float32)
        top = 0.4 + 0.01 * (n % 10)
        records.append(
            FrameRecord.from_image(
                jpeg(n),
                emb,
                device_id="cam-1",
                device_seq=n,
                captured_at=datetime(2026, 3, 1, tzinfo=UTC),
                model_version="m1",
                width=16,
                height=12,
                scores={"entropy": 0.5},
                keep_reason="uncertain",
                predicted_class=1,
                class_probabilities=[(1 - top) / 2, top, (1 - top) / 2],
            )
        )
    batch = BatchUpload(batch_id=f"b{ns.start}", device_id="cam-1", frames=records)
    result = services.ingest.ingest(batch, Principal("t", Role.DEVICE, "cam-1"))
    assert {r.status for r in result.results} == {"accepted"}
    return [r.frame_id for r in records]
