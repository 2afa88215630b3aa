"""Builders for catalog tests (the ``frames`` fixture) and a catalog on a real file.

Frame ``n`` is a distinct fake JPEG whose id is its real sha256; rows default to device
``cam-1`` uploading frame ``n`` as device_seq ``n``.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.blobs import blob_key
from server.catalog import Catalog, FrameRow

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Frames:
    """Factories for frames, rows and file dumps."""

    T0 = T0

    @staticmethod
    def image(n: int) -> bytes:
        """A distinct fake JPEG for each ``n``."""
        return b"\xff\xd8\xff" + f"frame-{n}".encode()

    @staticmethod
    def frame_id(n: int) -> str:
        return hashlib.sha256(Frames.image(n)).hexdigest()

    @staticmethod
    def vector(n: int, dim: int = 8) -> bytes:
        """A deterministic float32 embedding for frame ``n``, as little-endian bytes."""
        rng = np.random.default_rng(n)
        return rng.standard_normal(dim).astype("<f4").tobytes()

    @staticmethod
    def row(
        n: int,
        *,
        device: str = "cam-1",
        seq: int | None = None,
        status: str = "accepted",
        model: str = "m1",
        dim: int = 8,
        at: datetime = T0,
        **extra: Any,
    ) -> FrameRow:
        """A row for frame ``n`` (image ``n``) uploaded by ``device`` as ``seq`` (default ``n``)."""
        fields: dict[str, Any] = {
            "frame_id": Frames.frame_id(n),
            "device_id": device,
            "device_seq": n if seq is None else seq,
            "status": status,
            "received_at": at,
            "batch_id": "batch-1",
            "captured_at": at - timedelta(minutes=5),
            "model_version": model,
            "image_format": "jpeg",
            "width": 32,
            "height": 24,
            "image_bytes": len(Frames.image(n)),
            "embedding": Frames.vector(n, dim),
            "scores": {"entropy": 0.25 * n, "novelty": 1.0 / (n + 1)},
            "quality": {"blur": 3.5},
            "predicted_class": 1,
            "class_probabilities": (0.125, 0.875),
            "keep_reason": "value_above_threshold",
            "keep_value": 0.75,
            "keep_threshold": 0.5,
        }
        if status == "accepted":
            fields["blob_key"] = blob_key(Frames.image(n), "jpeg")
        if status == "rejected":
            fields["reason"] = "image_format_mismatch: test"
        fields.update(extra)
        return FrameRow(**fields)

    @staticmethod
    def near_duplicate(n: int, of: int, **kw: Any) -> FrameRow:
        return Frames.row(
            n,
            status="duplicate",
            duplicate_of=Frames.frame_id(of),
            similarity=0.97,
            dedup_method="near",
            dedup_threshold=0.95,
            **kw,
        )

    @staticmethod
    def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table of the file, for before/after comparisons."""
        conn = sqlite3.connect(path)
        try:
            tables = [
                name
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                )
            ]
            return {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables}
        finally:
            conn.close()


@pytest.fixture
def frames() -> Frames:
    return Frames()


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with Catalog(tmp_path / "catalog.db") as cat:
        yield cat
