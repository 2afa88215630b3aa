"""Shared fixtures for the vector index tests: every implementation, and test data."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from curator.index import BruteForceIndex, FaissIndex, VectorIndex

IndexFactory = Callable[[int], VectorIndex]

IMPLEMENTATIONS: dict[str, IndexFactory] = {
    "brute": BruteForceIndex,
    "faiss-flat": lambda dim: FaissIndex(dim, kind="flat"),
    "faiss-hnsw": lambda dim: FaissIndex(dim, kind="hnsw"),
    # auto with a tiny threshold, so the contract is also checked across a switch
    "faiss-auto": lambda dim: FaissIndex(dim, kind="auto", hnsw_threshold=40),
}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def make_index(request: pytest.FixtureRequest) -> IndexFactory:
    """Each implementation of the VectorIndex contract, as ``dim -> empty index``."""
    return IMPLEMENTATIONS[request.param]


def _clustered_unit_vectors(
    n: int, dim: int, *, centres: int, spread: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A mixture of Gaussians on the unit sphere: ``(base (n, dim), queries (n // 20, dim))``.

    Queries are fresh draws from the same mixture, not base points. Noise has norm ~``spread``
    around unit-norm centres.
    """
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim))
    c /= np.linalg.norm(c, axis=1, keepdims=True)

    def draw(m: int) -> np.ndarray:
        x = c[rng.integers(centres, size=m)] + rng.standard_normal((m, dim)) * spread / dim**0.5
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return np.asarray(x, dtype=np.float32)

    return draw(n), draw(max(1, n // 20))


@pytest.fixture
def clustered() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """``(n, dim, *, centres, spread, seed) -> (base, queries)`` from a mixture on the sphere."""
    return _clustered_unit_vectors
