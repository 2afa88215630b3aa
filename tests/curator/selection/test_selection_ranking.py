"""Random selection and top-k uncertainty (mirrors curator/selection/ranking.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from curator.selection import select
from curator.selection.ranking import random_order, top_k
from curator.uncertainty import SCORES, softmax

scores_arrays = hnp.arrays(
    np.float64,
    st.integers(1, 60),
    elements=st.floats(0.0, 1.0, allow_nan=False).map(lambda v: round(v, 2)),
)


@settings(max_examples=60)
@given(scores=scores_arrays, k=st.integers(0, 70), seed=st.integers(0, 1000), data=st.data())
def test_top_k_returns_the_k_highest_scores(
    scores: np.ndarray, k: int, seed: int, data: st.DataObject
) -> None:
    available = np.array(
        data.draw(st.lists(st.booleans(), min_size=len(scores), max_size=len(scores)))
    )
    picks = top_k(scores, k, available=available, rng=seed)
    candidates = np.flatnonzero(available)
    assert len(picks) == min(k, len(candidates))
    assert set(picks.tolist()) <= set(candidates.tolist())
    # in order, and nothing left behind scores higher than what was taken
    assert (np.diff(scores[picks]) <= 0).all()
    if len(picks):
        rest = np.setdiff1d(candidates, picks)
        assert (scores[rest] <= scores[picks].min()).all()
    # the multiset of chosen scores is the top of the sorted available scores
    expected = np.sort(scores[candidates])[::-1][: len(picks)]
    np.testing.assert_array_equal(scores[picks], expected)


def test_ties_are_broken_by_the_seed_not_by_index() -> None:
    scores = np.zeros(200)
    a = top_k(scores, 10, rng=1)
    b = top_k(scores, 10, rng=2)
    assert a.tolist() != b.tolist()
    assert a.tolist() != list(range(10))
    np.testing.assert_array_equal(a, top_k(scores, 10, rng=1))


@pytest.mark.parametrize("name", sorted(SCORES))
def test_uncertainty_strategies_rank_by_their_score(name: str) -> None:
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(300, 6)) * 3
    expected_scores = SCORES[name](softmax(logits))
    picks = select(name, k=25, logits=logits, rng=0, exclude=[0, 1, 2])
    assert not {0, 1, 2} & set(picks.tolist())
    top = np.argsort(-np.where(np.isin(np.arange(300), [0, 1, 2]), -1, expected_scores))[:25]
    np.testing.assert_array_equal(np.sort(picks), np.sort(top))


def test_the_three_scores_disagree_somewhere() -> None:
    # a pool where least confidence, margin and entropy pick different items
    probs = np.array(
        [
            [0.5, 0.5, 0.0, 0.0],  # margin's favourite
            [0.4, 0.2, 0.2, 0.2],  # entropy's favourite
            [0.34, 0.33, 0.33, 0.0],  # least confidence's favourite
            [0.9, 0.1, 0.0, 0.0],
        ]
    )
    picks = {name: select(name, k=1, probs=probs, rng=0)[0] for name in SCORES}
    assert picks == {"margin": 0, "entropy": 1, "least_confidence": 2}


def test_random_order_is_uniform_enough() -> None:
    available = np.ones(10, dtype=bool)
    available[3] = False
    counts = np.zeros(10)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        counts[random_order(available, 3, rng)] += 1
    assert counts[3] == 0
    share = counts[available] / counts.sum()
    np.testing.assert_allclose(share, 1 / 9, atol=0.02)
