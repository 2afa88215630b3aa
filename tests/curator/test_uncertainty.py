from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from curator import uncertainty as u
from curator.errors import InvalidInputError

logit_arrays = st.integers(2, 12).flatmap(
    lambda k: arrays(
        np.float64,
        st.tuples(st.integers(1, 16), st.just(k)),
        elements=st.floats(-1e4, 1e4, allow_nan=False),
    )
)


@pytest.mark.parametrize("name", sorted(u.SCORES))
@given(logits=logit_arrays)
def test_scores_are_bounded_and_finite(name: str, logits: np.ndarray) -> None:
    s = u.score(name, logits=logits)
    assert s.shape == (len(logits),)
    assert np.isfinite(s).all()
    assert (s >= 0).all() and (s <= 1).all()


@pytest.mark.parametrize("name", sorted(u.SCORES))
def test_uniform_is_most_and_one_hot_least_uncertain(name: str) -> None:
    k = 5
    probs = np.vstack([np.full(k, 1 / k), np.eye(k)[0]])
    s = u.SCORES[name](probs)
    assert s[0] == pytest.approx(1.0)
    assert s[1] == pytest.approx(0.0)


@pytest.mark.parametrize("name", sorted(u.SCORES))
@given(
    p=st.floats(0.5, 1.0, exclude_min=True),
    q=st.floats(0.5, 1.0, exclude_min=True),
)
def test_more_confident_binary_prediction_is_less_uncertain(name: str, p: float, q: float) -> None:
    # For two classes all three scores are monotone in the top probability.
    s = u.SCORES[name](np.array([[p, 1 - p], [q, 1 - q]]))
    if p > q + 1e-9:
        assert s[0] <= s[1] + 1e-12
    elif q > p + 1e-9:
        assert s[1] <= s[0] + 1e-12


def test_hand_computed_values() -> None:
    probs = np.array([[0.7, 0.2, 0.1]])
    assert u.least_confidence(probs)[0] == pytest.approx(0.3 * 3 / 2)
    assert u.margin(probs)[0] == pytest.approx(1 - 0.5)
    h = -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)) / np.log(3)
    assert u.entropy(probs)[0] == pytest.approx(h)


def test_softmax_is_stable_for_huge_logits() -> None:
    logits = np.array([[1e4, -1e4, 0.0], [1e4, 1e4, 1e4], [-1e4, -1e4, -1e4 + 1]])
    p = u.softmax(logits)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(p[1], [1 / 3] * 3)
    assert u.entropy(p)[1] == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused(bad: float) -> None:
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        u.softmax(np.array([[0.0, bad]]))
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        u.entropy(np.array([[0.5, bad]]))


@pytest.mark.parametrize(
    ("probs", "message"),
    [
        (np.array([[0.5, 0.6]]), "sum to 1"),
        (np.array([[-0.1, 1.1]]), r"\[0, 1\]"),
        (np.array([[1.0]]), "at least 2 classes"),
        (np.array([0.5, 0.5]), "2 dimensions"),
        ("not numbers", "numeric array"),
    ],
)
def test_malformed_probabilities_are_refused(probs: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        u.margin(probs)


def test_score_needs_exactly_one_input_and_a_known_name() -> None:
    with pytest.raises(InvalidInputError, match="exactly one"):
        u.score("entropy")
    with pytest.raises(InvalidInputError, match="exactly one"):
        u.score("entropy", logits=[[0, 1]], probs=[[0.5, 0.5]])
    with pytest.raises(ValueError, match="valid: entropy, least_confidence, margin"):
        u.score("variance", logits=[[0, 1]])


def test_bald_is_zero_when_samples_agree_and_high_when_they_disagree() -> None:
    agree = np.repeat(np.array([[[0.9, 0.1]]]), 8, axis=0)  # (T=8, N=1, K=2)
    disagree = np.array([[[1.0, 0.0]], [[0.0, 1.0]]] * 4)  # confident but contradictory
    assert u.bald(agree)[0] == pytest.approx(0.0, abs=1e-12)
    assert u.bald(disagree)[0] == pytest.approx(1.0)


@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(2, 6)),
        elements=st.floats(-30, 30, allow_nan=False),
    )
)
def test_bald_is_bounded_and_at_most_the_entropy_of_the_mean(logits: np.ndarray) -> None:
    t, n, k = logits.shape
    mc = u.softmax(logits.reshape(t * n, k)).reshape(t, n, k)
    b = u.bald(mc)
    assert ((b >= 0) & (b <= 1)).all()
    assert (b <= u.entropy(mc.mean(axis=0)) + 1e-9).all()


def test_bald_needs_three_dimensions() -> None:
    with pytest.raises(InvalidInputError, match="3 dimensions"):
        u.bald(np.array([[0.5, 0.5]]))


def test_bald_needs_at_least_one_sample() -> None:
    with pytest.raises(InvalidInputError, match="at least one sample"):
        u.bald(np.zeros((0, 3, 2)))


def test_softmax_of_a_spread_beyond_float_range_warns_nothing() -> None:
    np.testing.assert_array_equal(u.softmax([[1e308, -1e308]]), [[1.0, 0.0]])
