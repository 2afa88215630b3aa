"""Frames for the labeling tests, ingested through the real IngestService (real SQLite, real
FAISS, real JPEGs), and a fake clock."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from testkit.images import jpeg

from curator.wire import BatchUpload, FrameRecord
from server.auth import Principal, Role
from server.ingest import IngestService
from server.labeling import LabelStore

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DIM = 16


@dataclass
class FakeClock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def centre(cluster: int) -> np.ndarray:
    v = np.random.default_rng(1000 + cluster).standard_normal(DIM)
    return v / np.linalg.norm(v)


def near(cluster: int, n: int, scale: float = 0.05) -> np.ndarray:
    """A near copy of ``cluster``'s centre (cosine ~0.98: kept apart by a 0.999 dedup)."""
    return (centre(cluster) + scale * np.random.default_rng(n).standard_normal(DIM)).astype(
        np.float32
    )


def record(
    n: int,
    embedding: np.ndarray,
    probs: Sequence[float] | None,
    *,
    model: str = "m1",
    device: str = "cam-1",
) -> FrameRecord:
    """Frame ``n``: image ``jpeg(n)``, device_seq ``n``."""
    p = None if probs is None else np.asarray(probs, dtype=np.float64)
    return FrameRecord.from_image(
        jpeg(n),
        embedding,
        device_id=device,
        device_seq=n,
        captured_at=T0,
        model_version=model,
        width=16,
        height=12,
        scores={"entropy": 0.5},
        keep_reason="uncertain",
        predicted_class=None if p is None else int(p.argmax()),
        class_probabilities=p,
    )


def ingest(svc: IngestService, *records: FrameRecord, device: str = "cam-1") -> list[str]:
    """Upload ``records`` in one batch; the accepted frame ids (all must be accepted)."""
    batch = BatchUpload(batch_id=f"b{records[0].device_seq}", device_id=device, frames=records)
    result = svc.ingest(batch, Principal(f"tok-{device}", Role.DEVICE, device))
    assert [r.status for r in result.results] == ["accepted"] * len(records), result
    return [r.frame_id for r in records]


def uncertain(n: int, classes: int = 3, level: float = 0.4) -> list[float]:
    """Probabilities with the top class at ``level`` (+ a little per n), rest spread."""
    top = level + 0.001 * (n % 7)
    rest = (1 - top) / (classes - 1)
    return [top] + [rest] * (classes - 1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(tmp_path: Path, clock: FakeClock) -> Iterator[IngestService]:
    svc = IngestService.open(tmp_path / "data", threshold=0.999, clock=clock)
    yield svc
    svc.close()


@pytest.fixture
def store(service: IngestService, clock: FakeClock) -> LabelStore:
    return LabelStore(service.catalog, service.outbox, clock=clock, rng=0)


@pytest.fixture
def frames(service: IngestService) -> list[str]:
    """20 accepted frames of model m1 (3 classes), each its own scene."""
    return ingest(service, *(record(n, near(n, n), uncertain(n)) for n in range(1, 21)))


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above, for test modules (conftest cannot be imported by name here)."""
    return SimpleNamespace(
        T0=T0, centre=centre, near=near, record=record, ingest=ingest, uncertain=uncertain
    )
