"""The warehouse rows ingest writes: ``frames`` for every answer, ``dedup_decisions`` for
every duplicate, both keyed by upload (``device_id``, ``device_seq``); columns in
:mod:`server.warehouse.tables`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from server.catalog import FrameRow

__all__ = ["dedup_decision_row", "frame_row"]


def frame_row(answer: FrameRow) -> dict[str, Any]:
    """The ``frames`` warehouse row for one answered frame (rejected included)."""
    return {
        "frame_id": answer.frame_id,
        "device_id": answer.device_id,
        "device_seq": answer.device_seq,
        "captured_at": answer.captured_at,
        "received_at": answer.received_at,
        "model_version": answer.model_version,
        "status": answer.status,
        "duplicate_of": answer.duplicate_of,
        "similarity": answer.similarity,
        "dedup_threshold": answer.dedup_threshold,
        "reason": answer.reason,
        "keep_reason": answer.keep_reason,
        "scores": dict(answer.scores),
        "quality": dict(answer.quality),
        "predicted_class": answer.predicted_class,
        "width": answer.width,
        "height": answer.height,
        "image_bytes": answer.image_bytes,
        "schema_version": answer.schema_version,
    }


def dedup_decision_row(answer: FrameRow, decided_at: datetime) -> dict[str, Any]:
    """The ``dedup_decisions`` warehouse row for a frame answered ``duplicate``."""
    return {
        "frame_id": answer.frame_id,
        "device_id": answer.device_id,
        "device_seq": answer.device_seq,
        "duplicate_of": answer.duplicate_of,
        "similarity": answer.similarity,
        "threshold": answer.dedup_threshold,
        "model_version": answer.model_version,
        "method": answer.dedup_method,
        "decided_at": decided_at,
    }
