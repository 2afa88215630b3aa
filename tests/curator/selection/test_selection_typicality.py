"""TypiClust typicality (mirrors curator/selection/typicality.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curator.diversity import l2_normalize
from curator.errors import InvalidInputError
from curator.selection import select
from curator.selection.typicality import typicality


def brute_typicality(x: np.ndarray, n_neighbours: int) -> np.ndarray:
    x = x.astype(np.float64)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
    np.fill_diagonal(d, np.inf)
    nn = min(n_neighbours, len(x) - 1)
    out: np.ndarray = 1.0 / np.sort(d, axis=1)[:, :nn].mean(axis=1)
    return out


@settings(max_examples=30)
@given(n=st.integers(2, 50), n_neighbours=st.integers(1, 25), seed=st.integers(0, 10_000))
def test_matches_brute_force(n: int, n_neighbours: int, seed: int) -> None:
    x = np.random.default_rng(seed).normal(size=(n, 4))
    np.testing.assert_allclose(
        typicality(x, n_neighbours), brute_typicality(x, n_neighbours), rtol=1e-3
    )


def test_single_point_and_duplicates() -> None:
    np.testing.assert_array_equal(typicality(np.ones((1, 3))), [1.0])
    assert (typicality(np.ones((4, 3))) >= 1e11).all()


def test_sampled_reference_is_close_and_seeded() -> None:
    x = np.random.default_rng(0).normal(size=(3000, 4))
    exact = typicality(x, 20)
    approx = typicality(x, 20, max_reference=1500, rng=0)
    np.testing.assert_array_equal(approx, typicality(x, 20, max_reference=1500, rng=0))
    # half the reference points: neighbours are about 2^(1/4) farther in 4-d, ranks agree
    assert np.corrcoef(exact, approx)[0, 1] > 0.9


@pytest.mark.parametrize("kwargs", [{"n_neighbours": 0}, {"max_reference": 1}])
def test_bad_counts_are_rejected(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidInputError):
        typicality(np.zeros((5, 2)), **kwargs)


def blob_pool(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Five blobs in distinct directions, of sizes 40, 30, 25, 20, 15."""
    rng = np.random.default_rng(seed)
    directions = np.eye(8)[:5] * 10.0
    sizes = [40, 30, 25, 20, 15]
    blob = np.repeat(np.arange(5), sizes)
    x = directions[blob] + rng.normal(size=(len(blob), 8))
    return x, blob


def test_one_typical_pick_per_blob() -> None:
    x, blob = blob_pool(0)
    picks = select("typicality", k=5, embeddings=x, rng=0)
    # one per blob, largest blob first
    assert blob[picks].tolist() == [0, 1, 2, 3, 4]
    unit = l2_normalize(x)
    for pick in picks:
        members = np.flatnonzero(blob == blob[pick])
        best = members[np.argmax(brute_typicality(unit[members], 20))]
        assert pick == best


def test_blobs_holding_labeled_items_come_last() -> None:
    x, blob = blob_pool(1)
    labeled = np.array([0, 40])  # one item in blob 0, one in blob 1
    picks = select("typicality", k=3, embeddings=x, exclude=labeled, rng=0)
    assert sorted(blob[picks].tolist()) == [2, 3, 4]
    more = select("typicality", k=5, embeddings=x, exclude=labeled, rng=0)
    assert sorted(blob[more].tolist()) == [0, 1, 2, 3, 4]
