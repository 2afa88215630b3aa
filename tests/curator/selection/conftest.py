"""Shared pools for the selection tests: clustered embeddings with logits that fit them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest


def clustered_pool(
    n: int = 60, dim: int = 8, n_classes: int = 4, n_blobs: int = 5, seed: int = 0
) -> dict[str, Any]:
    """A pool of ``n`` items in ``n_blobs`` Gaussian blobs, logits loosely tied to the blob."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_blobs, dim)) * 3.0
    blob = rng.integers(0, n_blobs, n)
    embeddings = centres[blob] + rng.normal(size=(n, dim))
    logits = rng.normal(size=(n, n_classes)) * 1.5
    logits[np.arange(n), blob % n_classes] += 2.0
    return {"embeddings": embeddings, "logits": logits, "blob": blob}


@pytest.fixture(scope="session")
def make_pool() -> Callable[..., dict[str, Any]]:
    """The :func:`clustered_pool` factory (session-scoped, so hypothesis tests may use it)."""
    return clustered_pool


@pytest.fixture
def pool() -> dict[str, Any]:
    """60 items, 8-d embeddings in 5 blobs, 4-class logits."""
    return clustered_pool()
