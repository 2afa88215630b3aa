from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from curator.diversity import l2_normalize, max_similarity, novelty
from curator.errors import InvalidInputError

vectors = arrays(
    np.float32,
    st.tuples(st.integers(1, 20), st.just(8)),
    elements=st.floats(-100, 100, allow_nan=False, width=32),
)


@given(vectors)
def test_l2_normalize_gives_unit_rows_or_zero(x: np.ndarray) -> None:
    y = l2_normalize(x)
    norms = np.linalg.norm(y, axis=1)
    zero = np.linalg.norm(x.astype(np.float64), axis=1) < 1e-6
    np.testing.assert_allclose(norms[~zero], 1.0, rtol=1e-4)
    assert y.dtype == np.float32


def test_l2_normalize_single_vector_and_zero_vector() -> None:
    np.testing.assert_allclose(l2_normalize(np.array([3.0, 4.0])), [0.6, 0.8])
    np.testing.assert_array_equal(l2_normalize(np.zeros((2, 3))), np.zeros((2, 3)))


def test_novelty_of_empty_reference_is_one() -> None:
    np.testing.assert_array_equal(novelty(np.eye(4), np.empty((0, 4))), np.ones(4))


@given(vectors, vectors)
def test_novelty_matches_brute_force(q: np.ndarray, r: np.ndarray) -> None:
    qn, rn = l2_normalize(q).astype(np.float64), l2_normalize(r).astype(np.float64)
    expected = 1.0 - (qn @ rn.T).max(axis=1)
    if (np.linalg.norm(r, axis=1) < 1e-6).all():
        return  # an all-zero reference set has similarity 0 everywhere; covered below
    np.testing.assert_allclose(novelty(q, r), expected, atol=1e-5)
    assert ((novelty(q, r) >= -1e-6) & (novelty(q, r) <= 2 + 1e-6)).all()


def test_copy_has_zero_novelty_and_reports_where_it_matched() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    sim, idx = max_similarity(np.array([[0.0, 2.0], [-1.0, 0.0]]), ref)
    np.testing.assert_allclose(sim, [1.0, 0.0], atol=1e-7)
    assert idx[0] == 1
    assert novelty(np.array([[0.0, 5.0]]), ref)[0] == pytest.approx(0.0, abs=1e-7)


def test_chunked_search_covers_every_query() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 16))
    queries = np.vstack([ref[rng.integers(0, 50, 5000)], rng.normal(size=(10, 16))])
    sim, _ = max_similarity(queries, ref)
    assert len(sim) == 5010
    np.testing.assert_allclose(sim[:5000], 1.0, atol=1e-5)


def test_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="dimension 3 but reference has 2"):
        novelty(np.ones((1, 3)), np.ones((2, 2)))
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        novelty(np.array([[np.nan, 1.0]]), np.ones((1, 2)))
    with pytest.raises(InvalidInputError, match="dimensions"):
        l2_normalize(np.ones((2, 2, 2)))


@pytest.mark.parametrize("scale", [1e-20, 1e-10, 1e19, 3e38])
def test_normalisation_survives_extreme_magnitudes(scale: float) -> None:
    x = np.full((1, 2), scale, np.float32)
    np.testing.assert_allclose(np.linalg.norm(l2_normalize(x), axis=1), 1.0, rtol=1e-6)
    assert novelty(x, x)[0] == pytest.approx(0.0, abs=1e-6)


def test_empty_reference_of_another_dimension_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="dimension 3 but reference has 2"):
        novelty(np.ones((1, 3)), np.empty((0, 2)))
