"""k-means and the cluster round-robin (mirrors curator/selection/clustering.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curator.errors import InvalidInputError
from curator.selection.clustering import kmeans, kmeans_plus_plus, pick_round_robin


def blobs(
    n_per: int, centres: np.ndarray, spread: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(centres)), n_per)
    x = centres[truth] + spread * rng.normal(size=(len(truth), centres.shape[1]))
    return x, truth


def brute_inertia(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, float]:
    d2 = ((x[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    return d2.argmin(axis=1), float(d2.min(axis=1).sum())


def test_recovers_well_separated_blobs() -> None:
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x, truth = blobs(50, centres, 0.5, 0)
    result = kmeans(x, 4, rng=0)
    # the same partition up to renaming the clusters
    pairs = {(int(t), int(lab)) for t, lab in zip(truth, result.labels, strict=True)}
    assert len(pairs) == 4
    assert sorted(np.bincount(result.labels).tolist()) == [50, 50, 50, 50]
    found = result.centroids[np.argsort(np.round(result.centroids / 10.0) @ [1.0, 10.0])]
    np.testing.assert_allclose(found, centres[[0, 1, 2, 3]], atol=0.3)


@settings(max_examples=25)
@given(n=st.integers(1, 60), n_clusters=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_labels_are_the_nearest_centroid_and_inertia_is_theirs(
    n: int, n_clusters: int, seed: int
) -> None:
    x = np.random.default_rng(seed).normal(size=(n, 3))
    n_clusters = min(n_clusters, n)
    result = kmeans(x, n_clusters, rng=seed, max_iter=30)
    _, inertia = brute_inertia(x, result.centroids)
    assert result.labels.dtype == np.int64
    assert result.centroids.shape == (n_clusters, 3)
    # each label is a nearest centroid (ties aside) and the inertia is the brute-force one
    d2 = ((x - result.centroids[result.labels]) ** 2).sum(axis=1)
    best = ((x[:, None, :] - result.centroids[None]) ** 2).sum(axis=2).min(axis=1)
    np.testing.assert_allclose(d2, best, atol=1e-4)
    assert result.inertia == pytest.approx(inertia, rel=1e-4, abs=1e-4)
    assert 1 <= result.n_iter <= 30
    np.testing.assert_array_equal(result.labels, kmeans(x, n_clusters, rng=seed).labels)


def test_more_iterations_never_hurt_much_and_beat_the_seeds() -> None:
    x, _ = blobs(40, np.random.default_rng(1).normal(size=(6, 5)) * 3, 1.0, 1)
    seeds_only = kmeans(x, 6, rng=2, max_iter=1).inertia
    converged = kmeans(x, 6, rng=2, max_iter=100).inertia
    assert converged <= seeds_only + 1e-6


def test_plus_plus_seeds_are_distinct_even_with_duplicates() -> None:
    x = np.vstack([np.zeros((10, 2)), np.ones((3, 2))]).astype(np.float32)
    seeds = kmeans_plus_plus(x, 5, np.random.default_rng(0))
    assert len(set(seeds.tolist())) == 5
    # the second seed is the other group: its squared-distance weight is all the mass
    for seed in range(10):
        first_two = kmeans_plus_plus(x, 2, np.random.default_rng(seed))
        assert {bool(x[i, 0] == 1.0) for i in first_two} == {True, False}


@pytest.mark.parametrize("n_clusters", [0, 6, True])
def test_bad_cluster_counts_are_rejected(n_clusters: int) -> None:
    with pytest.raises(InvalidInputError, match="n_clusters"):
        kmeans(np.zeros((5, 2)), n_clusters)


def test_round_robin_visits_uncovered_clusters_first_largest_first() -> None:
    labels = np.array([0] * 5 + [1] * 3 + [2] * 4 + [3] * 1)
    available = np.ones(len(labels), dtype=bool)
    available[8] = False  # cluster 2 already holds a labeled item
    visited: list[int] = []

    def first(cluster: int, members: np.ndarray, selectable: np.ndarray) -> int:
        visited.append(cluster)
        return int(members[selectable][0])

    picks = pick_round_robin(labels, available, 12, first, min_cluster_size=2)
    # uncovered first (0 then 1; 2 holds a labeled item), then every cluster with one item,
    # largest first (0: 5 items, 2: 4, 1: 3), ...; the small cluster 3 only at the very end
    assert visited[:5] == [0, 1, 0, 2, 1]
    assert visited[-1] == 3
    assert sorted(picks.tolist()) == sorted(set(range(len(labels))) - {8})


def test_large_pools_seed_from_a_sample_and_still_recover_the_blobs() -> None:
    # 16,000 points: more than the 10,000-point seeding sample
    centres = np.array([[0.0, 0.0, 0.0], [8.0, 0.0, 0.0], [0.0, 8.0, 0.0], [0.0, 0.0, 8.0]])
    x, truth = blobs(4000, centres, 0.5, 4)
    result = kmeans(x, 4, rng=1)
    pairs = {(int(t), int(lab)) for t, lab in zip(truth, result.labels, strict=True)}
    assert len(pairs) == 4
    np.testing.assert_array_equal(result.labels, kmeans(x, 4, rng=1).labels)
