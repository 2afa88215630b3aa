"""Frames going into and out of the buffer: :class:`KeptFrame` and :class:`BufferedFrame`.

A :class:`KeptFrame` is what the selector decided to keep: the encoded image, its embedding,
scores and why it was kept. :func:`check_frame` validates it once, against the wire contract
(:meth:`curator.wire.FrameRecord.from_image`), so the buffer never holds a frame it could not
send. A :class:`BufferedFrame` is a stored frame with its ``device_seq``;
:meth:`BufferedFrame.to_record` builds the :class:`curator.wire.FrameRecord` the uploader puts
in a :class:`curator.wire.BatchUpload`.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from curator._validate import float_array
from curator.errors import InvalidInputError
from curator.wire import FrameRecord, ImageFormat

__all__ = [
    "COLUMNS",
    "BufferedFrame",
    "KeptFrame",
    "check_frame",
    "cost_bytes",
    "frame_from_row",
    "meta_json",
    "row_values",
]

_ROW_FIXED_BYTES = 96
"""Bytes a row takes beyond its image, embedding and JSON: header, numbers, short texts."""

COLUMNS = (
    "device_seq",
    "frame_id",
    "value",
    "cost_bytes",
    "captured_at",
    "buffered_at",
    "model_version",
    "image_format",
    "width",
    "height",
    "keep_reason",
    "keep_threshold",
    "predicted_class",
    "meta",
    "embedding",
    "image",
)


@dataclass(frozen=True)
class KeptFrame:
    """A frame the selector kept, as handed to :meth:`FrameBuffer.add`.

    Attributes:
        image: the encoded image bytes (see :func:`edge_selector.encode.encode_image`).
        width, height: the encoded image's size in pixels.
        embedding: ``(D,)`` embedding; stored as little-endian float32.
        model_version: version of the model that made the embedding and scores.
        scores: named scores at decision time (finite).
        value: the frame's value; the buffer uploads high values first and evicts low ones.
            It travels as the record's ``keep_value``.
        captured_at: timezone-aware capture time.
        keep_reason: why it was kept, e.g. ``"value_above_threshold"``.
        image_format: ``"jpeg"`` (default) or ``"png"``.
        quality: named quality measures (finite).
        predicted_class, class_probabilities: ``(K,)`` probabilities when the model has logits.
        keep_threshold: the threshold ``value`` was compared with, if any.
    """

    image: bytes
    width: int
    height: int
    embedding: npt.ArrayLike
    model_version: str
    scores: Mapping[str, float]
    value: float
    captured_at: datetime
    keep_reason: str
    image_format: ImageFormat = "jpeg"
    quality: Mapping[str, float] = field(default_factory=dict)
    predicted_class: int | None = None
    class_probabilities: npt.ArrayLike | None = None
    keep_threshold: float | None = None


@dataclass(frozen=True)
class BufferedFrame:
    """A frame in the buffer, as :meth:`FrameBuffer.claim` returns it.

    Attributes:
        device_seq: its per-device sequence number (from 1, never reused).
        frame_id: sha256 of the image bytes, 64 hex digits.
        buffered_at: when it entered the buffer (the buffer's clock).
        cost_bytes: the bytes the buffer's budget counts for it.
        frame: the frame as it was added (embedding as a float32 array).
    """

    device_seq: int
    frame_id: str
    buffered_at: datetime
    cost_bytes: int
    frame: KeptFrame

    def to_record(self, device_id: str) -> FrameRecord:
        """The wire record of this frame from device ``device_id``.

        Raises:
            WireFormatError: ``device_id`` is not a valid device id.
        """
        f = self.frame
        return FrameRecord.from_image(
            f.image,
            f.embedding,
            device_id=device_id,
            device_seq=self.device_seq,
            captured_at=f.captured_at,
            model_version=f.model_version,
            width=f.width,
            height=f.height,
            scores=dict(f.scores),
            keep_reason=f.keep_reason,
            image_format=f.image_format,
            quality=dict(f.quality),
            predicted_class=f.predicted_class,
            class_probabilities=f.class_probabilities,
            keep_value=f.value,
            keep_threshold=f.keep_threshold,
        )


def check_frame(frame: KeptFrame) -> FrameRecord:
    """Validate ``frame`` against the wire contract; return it as a record (``device_seq=1``).

    Raises:
        InvalidInputError: not a KeptFrame, a non-finite value or embedding.
        WireFormatError: a field the wire contract refuses (the message names it).
    """
    if not isinstance(frame, KeptFrame):
        raise InvalidInputError(f"expected a KeptFrame, got {type(frame).__name__}")
    if isinstance(frame.value, bool) or not isinstance(frame.value, int | float | np.floating):
        raise InvalidInputError(f"value must be a real number, got {frame.value!r}")
    if not math.isfinite(float(frame.value)):
        raise InvalidInputError(f"value must be finite, got {frame.value!r}")
    float_array(frame.embedding, "embedding", 1, dtype=np.float32)
    return BufferedFrame(1, "0" * 64, frame.captured_at, 1, frame).to_record("edge-buffer")


def cost_bytes(record: FrameRecord, meta: str, page_size: int) -> int:
    """Bytes the budget counts for a row: whole pages, enough for its cells and overflow chain.

    A row of ``n`` bytes takes at most ``ceil(n / (page_size - 4))`` overflow pages plus part
    of one leaf page, so ``(ceil(n / (page_size - 4)) + 1) * page_size`` bounds it.
    """
    n = len(record.image) + len(record.embedding) + len(meta) + _ROW_FIXED_BYTES
    return (math.ceil(n / (page_size - 4)) + 1) * page_size


def meta_json(record: FrameRecord) -> str:
    """Scores, quality and probabilities of ``record`` as one JSON object."""
    return json.dumps(
        {
            "scores": record.scores,
            "quality": record.quality,
            "class_probabilities": record.class_probabilities,
        },
        separators=(",", ":"),
        allow_nan=False,
    )


def row_values(
    record: FrameRecord, *, device_seq: int, value: float, buffered_at: datetime, cost: int
) -> tuple[Any, ...]:
    """The ``frames`` row of ``record`` in :data:`COLUMNS` order."""
    return (
        device_seq,
        record.frame_id,
        float(value),
        cost,
        record.captured_at.isoformat(timespec="microseconds"),
        buffered_at.isoformat(timespec="microseconds"),
        record.model_version,
        record.image_format,
        record.width,
        record.height,
        record.keep_reason,
        record.keep_threshold,
        record.predicted_class,
        meta_json(record),
        record.embedding,
        record.image,
    )


def frame_from_row(row: sqlite3.Row | tuple[Any, ...]) -> BufferedFrame:
    """A :class:`BufferedFrame` from a ``frames`` row selected in :data:`COLUMNS` order."""
    v = dict(zip(COLUMNS, row, strict=True))
    meta = json.loads(v["meta"])
    probs = meta["class_probabilities"]
    frame = KeptFrame(
        image=bytes(v["image"]),
        width=v["width"],
        height=v["height"],
        embedding=np.frombuffer(v["embedding"], dtype="<f4").astype(np.float32),
        model_version=v["model_version"],
        scores=meta["scores"],
        value=v["value"],
        captured_at=datetime.fromisoformat(v["captured_at"]),
        keep_reason=v["keep_reason"],
        image_format=v["image_format"],
        quality=meta["quality"],
        predicted_class=v["predicted_class"],
        class_probabilities=None if probs is None else tuple(probs),
        keep_threshold=v["keep_threshold"],
    )
    return BufferedFrame(
        device_seq=v["device_seq"],
        frame_id=v["frame_id"],
        buffered_at=datetime.fromisoformat(v["buffered_at"]),
        cost_bytes=v["cost_bytes"],
        frame=frame,
    )
