"""Fixtures for the dedup tests: embeddings with near duplicates, and an in-memory catalog."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from server.dedup import FleetDedup


def clustered_embeddings(
    n: int, dim: int, *, centres: int, spread: float, rng: np.random.Generator
) -> np.ndarray:
    """``n`` float32 rows: a random centre on the sphere each, plus noise of norm ~``spread``."""
    c = rng.standard_normal((centres, dim))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    noise = rng.standard_normal((n, dim)) * spread / np.sqrt(dim)
    return np.asarray(c[rng.integers(centres, size=n)] + noise, np.float32)


@pytest.fixture
def clustered() -> Callable[..., np.ndarray]:
    """``clustered(n, dim, centres=..., spread=..., rng=...)``, see above."""
    return clustered_embeddings


class FakeCatalog:
    """The catalog's part in dedup: accepted frames per model version, ids in commit order.

    ``ingest`` does what the server does under the version's lock: check, commit the accepted
    frames (giving them the next ids), then accept them into the dedup index.
    """

    def __init__(self) -> None:
        self.frames: dict[str, list[tuple[int, np.ndarray]]] = {}
        self.next_id = 1
        self.catch_up_calls: list[tuple[str, int]] = []

    def ingest(self, dedup: FleetDedup, model_version: str, embeddings: Any) -> list[Any]:
        x = np.asarray(embeddings, np.float32)
        with dedup.lock(model_version):
            decisions = dedup.check(model_version, x)
            kept = [i for i, d in enumerate(decisions) if not d.is_duplicate]
            ids = self.commit(model_version, x[kept])
            dedup.accept(model_version, ids, x[kept])
        return decisions

    def commit(self, model_version: str, rows: np.ndarray) -> list[int]:
        ids = list(range(self.next_id, self.next_id + len(rows)))
        self.next_id += len(rows)
        self.frames.setdefault(model_version, []).extend(zip(ids, rows, strict=True))
        return ids

    def catch_up(self, model_version: str, watermark: int) -> Iterator[tuple[int, np.ndarray]]:
        self.catch_up_calls.append((model_version, watermark))
        for id_, row in self.frames.get(model_version, []):
            if id_ > watermark:
                yield id_, row

    def versions(self) -> list[str]:
        return sorted(self.frames)


@pytest.fixture
def catalog() -> FakeCatalog:
    """An empty :class:`FakeCatalog`."""
    return FakeCatalog()


def holds_exactly(dedup: FleetDedup, catalog: FakeCatalog) -> None:
    """Assert ``dedup`` holds exactly the catalog's accepted frames: counts, ids and vectors."""
    stats = dedup.stats()["model_versions"]
    assert {mv: s["vectors"] for mv, s in stats.items()} == {
        mv: len(rows) for mv, rows in catalog.frames.items() if rows
    }
    for mv, rows in catalog.frames.items():
        ids = np.array([i for i, _ in rows])
        x = np.stack([r for _, r in rows])
        found = dedup.check(mv, x, ids=ids + 10**12)  # fresh ids: every row matches its original
        assert [d.duplicate_of_id for d in found] == ids.tolist()
        assert all(abs(d.similarity - 1.0) < 1e-5 for d in found if d.similarity is not None)


@pytest.fixture
def assert_holds_exactly() -> Callable[[FleetDedup, FakeCatalog], None]:
    """:func:`holds_exactly` as a fixture."""
    return holds_exactly
