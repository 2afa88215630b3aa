"""k-center greedy against brute force (mirrors curator/selection/kcenter.py)."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curator.errors import InvalidInputError
from curator.selection import covering_radius, kcenter_greedy, select


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def brute_greedy(x: np.ndarray, k: int, centres: list[int]) -> tuple[list[int], list[float]]:
    """Textbook k-center greedy in float64 over the full distance matrix."""
    u = unit(x)
    dist = np.linalg.norm(u[:, None, :] - u[None, :, :], axis=2)
    chosen = list(centres)
    picks, radii = [], []
    for _ in range(k):
        nearest = dist[:, chosen].min(axis=1)
        nearest[chosen] = -1
        j = int(np.argmax(nearest))
        picks.append(j)
        radii.append(float(nearest[j]))
        chosen.append(j)
    return picks, radii


def test_matches_the_textbook_greedy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    centres = [5, 77]
    result = kcenter_greedy(x, 40, centres=centres, rng=0)
    picks, radii = brute_greedy(x, 40, centres)
    assert result.indices.tolist() == picks
    np.testing.assert_allclose(result.radii, radii, atol=2e-3)
    assert result.radius**2 == pytest.approx(covering_radius(x, [*centres, *picks]) ** 2, abs=1e-6)


def test_covering_radius_by_hand() -> None:
    # four points on the unit circle, at 0, 90, 180 and 270 degrees
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    assert covering_radius(x, [0]) == pytest.approx(2.0, abs=1e-3)
    assert covering_radius(x, [0, 2]) == pytest.approx(np.sqrt(2.0), abs=1e-3)
    assert covering_radius(x, [0, 1, 2, 3]) == pytest.approx(0.0, abs=1e-3)
    assert covering_radius(x, []) == np.inf
    assert covering_radius(np.empty((0, 2)), []) == 0.0
    # scale does not matter: embeddings are L2-normalised
    assert covering_radius(5 * x, [0, 2]) == pytest.approx(np.sqrt(2.0), abs=1e-3)


def test_first_centre_is_drawn_by_the_rng() -> None:
    x = np.random.default_rng(1).normal(size=(50, 4))
    firsts = {int(kcenter_greedy(x, 1, rng=seed).indices[0]) for seed in range(20)}
    assert len(firsts) > 5
    assert kcenter_greedy(x, 1, rng=3).radii[0] == np.inf


def test_exact_duplicates_are_picked_once_each() -> None:
    x = np.tile([[1.0, 2.0, 3.0]], (10, 1))
    result = kcenter_greedy(x, 10, rng=0)
    assert sorted(result.indices.tolist()) == list(range(10))
    assert result.radius == pytest.approx(0.0, abs=1e-3)


@settings(max_examples=40)
@given(
    n=st.integers(2, 40),
    dim=st.integers(1, 5),
    n_labeled=st.integers(0, 3),
    seed=st.integers(0, 10_000),
)
def test_radius_never_grows_with_k_and_equals_the_greedy_radius(
    n: int, dim: int, n_labeled: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))
    labeled = sorted(rng.choice(n, size=min(n_labeled, n - 1), replace=False).tolist())
    full = kcenter_greedy(x, n, centres=labeled, rng=seed)
    assert sorted(full.indices.tolist()) == sorted(set(range(n)) - set(labeled))
    finite = full.radii[np.isfinite(full.radii)]
    assert (np.diff(finite**2) <= 1e-6).all()
    previous = np.inf
    for k in range(len(full.indices) + 1):
        partial = kcenter_greedy(x, k, centres=labeled, rng=seed)
        # the same seed gives a prefix of the same greedy order
        np.testing.assert_array_equal(partial.indices, full.indices[:k])
        radius = covering_radius(x, [*labeled, *partial.indices.tolist()])
        # equal up to float32 rounding of squared distances (2 - 2 a.b)
        assert partial.radius**2 == pytest.approx(radius**2, abs=1e-6)
        if k < len(full.indices):
            assert full.radii[k] ** 2 == pytest.approx(radius**2, abs=1e-6)
        assert radius**2 <= previous**2 + 1e-6
        previous = radius


@settings(max_examples=25)
@given(n=st.integers(3, 9), k=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_within_twice_the_optimal_radius(n: int, k: int, seed: int) -> None:
    x = np.random.default_rng(seed).normal(size=(n, 3))
    k = min(k, n)
    # the greedy starts from one random centre and adds k - 1 more
    greedy = kcenter_greedy(x, k, rng=seed)
    optimal = min(covering_radius(x, list(c)) for c in itertools.combinations(range(n), k))
    assert greedy.radius <= 2 * optimal + 1e-5


def test_labeled_items_act_as_centres() -> None:
    # two tight groups; with group A labeled, the first pick must come from group B
    rng = np.random.default_rng(2)
    a = np.array([1.0, 0.0, 0.0]) + 0.01 * rng.normal(size=(20, 3))
    b = np.array([0.0, 1.0, 0.0]) + 0.01 * rng.normal(size=(20, 3))
    x = np.vstack([a, b])
    for seed in range(5):
        picks = select("kcenter", k=1, embeddings=x, exclude=np.arange(20), rng=seed)
        assert picks[0] >= 20


@pytest.mark.parametrize(
    ("centres", "message"), [([5], "centres must index"), ([0.5], "integer index")]
)
def test_bad_centres_are_rejected(centres: list[float], message: str) -> None:
    x = np.eye(3)
    with pytest.raises(InvalidInputError, match=message):
        covering_radius(x, centres)
    with pytest.raises(InvalidInputError, match=message):
        kcenter_greedy(x, 1, centres=centres)


def test_bad_k_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="k must be"):
        kcenter_greedy(np.eye(3), -1)


@pytest.mark.slow
def test_chooses_1000_of_100000_within_the_goal() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 128)).astype(np.float32)
    x = centres[rng.integers(0, 50, 100_000)] + 0.3 * rng.normal(size=(100_000, 128))
    x = x.astype(np.float32)
    start = time.perf_counter()
    picks = select("kcenter", k=1000, embeddings=x, rng=0)
    elapsed = time.perf_counter() - start
    assert len(set(picks.tolist())) == 1000
    assert elapsed <= 10.0, f"took {elapsed:.1f} s"
