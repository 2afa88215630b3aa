"""Nearest-centre distances, exact and lazy (mirrors curator/selection/coverage.py)."""

from __future__ import annotations

import numpy as np
import pytest

from curator.diversity import l2_normalize
from curator.selection import coverage
from curator.selection.coverage import CoverageTracker, FarthestPointSearch, nearest_sq_distance


def brute_sq(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    x64, c64 = x.astype(np.float64), centres.astype(np.float64)
    out: np.ndarray = ((x64[:, None, :] - c64[None, :, :]) ** 2).sum(axis=2).min(axis=1)
    return out


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    return l2_normalize(centres[rng.integers(0, 20, n)] + 0.4 * rng.normal(size=(n, dim)))


def plain_greedy(x: np.ndarray, k: int, centres: np.ndarray) -> tuple[list[int], list[float]]:
    tracker = CoverageTracker(x, centres)
    picks, sq = [], []
    for _ in range(k):
        j = int(np.argmax(tracker.sq_dist))
        picks.append(j)
        sq.append(float(tracker.sq_dist[j]))
        tracker.add(j)
    return picks, sq


@pytest.mark.parametrize("chunk", [7, 1 << 22])
def test_nearest_sq_distance_matches_brute_force(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(coverage, "_CHUNK_ELEMENTS", chunk)
    x = clustered(500, 12, 0)
    centres = x[[3, 50, 400]]
    np.testing.assert_allclose(nearest_sq_distance(x, centres), brute_sq(x, centres), atol=1e-5)


def test_tracker_matches_brute_force_as_centres_grow() -> None:
    x = clustered(300, 6, 1)
    tracker = CoverageTracker(x, np.array([10]))
    chosen = [10]
    for i in [20, 200, 33]:
        tracker.add(i)
        chosen.append(i)
        expected = brute_sq(x, x[chosen])
        expected[chosen] = -1
        np.testing.assert_allclose(tracker.sq_dist, expected, atol=1e-5)
    assert tracker.radius() == pytest.approx(np.sqrt(expected.max()), abs=1e-5)


@pytest.mark.parametrize("n_labeled", [0, 3, 5000])
def test_lazy_search_gives_the_plain_greedy(n_labeled: int) -> None:
    # 20,000 points: above the active-set size (4096), so refreshes really happen
    x = clustered(20_000, 16, 2)
    centres = np.arange(0, 20_000, 20_000 // n_labeled) if n_labeled else np.empty(0, np.int64)
    search = FarthestPointSearch(x, centres)
    lazy = [search.pop_farthest() for _ in range(300)]
    assert np.isfinite(search.tau)  # the active set was a strict subset
    picks, sq = plain_greedy(x, 300, centres)
    lazy_sq = [s for _, s in lazy]
    np.testing.assert_allclose(lazy_sq[1:], sq[1:], atol=1e-5)
    if n_labeled == 0:
        assert lazy_sq[0] == np.inf
        assert lazy[0][0] == 0  # ties (all inf) go to the lowest index
    same = len({j for j, _ in lazy} & set(picks))
    assert same >= 0.95 * len(picks)
    tracker = CoverageTracker(x, np.concatenate([centres, [j for j, _ in lazy]]).astype(np.int64))
    assert search.radius() == pytest.approx(tracker.radius(), abs=1e-5)


def test_radius_without_centres_and_of_an_empty_pool() -> None:
    x = clustered(10, 3, 3)
    assert FarthestPointSearch(x, np.empty(0, np.int64)).radius() == np.inf
    assert CoverageTracker(x, np.empty(0, np.int64)).radius() == np.inf
    empty = np.empty((0, 3), np.float32)
    assert FarthestPointSearch(empty, np.empty(0, np.int64)).radius() == 0.0
