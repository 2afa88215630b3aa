"""Class balance (mirrors curator/selection/balance.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curator.errors import InvalidInputError
from curator.selection import select
from curator.selection.balance import balanced_picks, target_distribution
from curator.uncertainty import entropy, softmax


def sq_distance(counts: np.ndarray, target: np.ndarray) -> float:
    return float(((counts - target * counts.sum()) ** 2).sum())


def best_allocation(start: np.ndarray, avail: np.ndarray, k: int, target: np.ndarray) -> float:
    """Brute force: the smallest squared distance to the target over every feasible allocation."""
    total = start.sum() + k
    best = np.inf
    for alloc in itertools.product(*(range(int(a) + 1) for a in avail)):
        if sum(alloc) == k:
            best = min(best, float(((start + alloc - target * total) ** 2).sum()))
    return best


@settings(max_examples=60)
@given(
    n_classes=st.integers(2, 4),
    seed=st.integers(0, 10_000),
    k=st.integers(0, 8),
    data=st.data(),
)
def test_greedy_allocation_is_the_closest_to_the_target(
    n_classes: int, seed: int, k: int, data: st.DataObject
) -> None:
    rng = np.random.default_rng(seed)
    sizes = data.draw(st.lists(st.integers(0, 5), min_size=n_classes, max_size=n_classes))
    predicted = np.repeat(np.arange(n_classes), sizes)
    start = np.array(
        data.draw(st.lists(st.integers(0, 6), min_size=n_classes, max_size=n_classes)), float
    )
    weights = np.array(
        data.draw(st.lists(st.integers(0, 4), min_size=n_classes, max_size=n_classes)), float
    )
    if weights.sum() == 0:
        weights[0] = 1.0
    target = weights / weights.sum()
    picks = balanced_picks(
        predicted,
        k,
        target=target,
        start_counts=start,
        priority=rng.random(len(predicted)),
        available=np.ones(len(predicted), dtype=bool),
        rng=seed,
    )
    k_eff = min(k, len(predicted))
    assert len(picks) == k_eff
    after = start + np.bincount(predicted[picks], minlength=n_classes)
    total = after.sum()
    optimum = best_allocation(start, np.array(sizes), k_eff, target)
    assert float(((after - target * total) ** 2).sum()) == pytest.approx(optimum)
    # and so at least as close as a random choice of the same size
    random_pick = rng.choice(len(predicted), size=k_eff, replace=False)
    random_after = start + np.bincount(predicted[random_pick], minlength=n_classes)
    assert sq_distance(after, target) <= sq_distance(random_after, target) + 1e-9


def test_fills_the_missing_classes_first() -> None:
    predicted = np.repeat([0, 1, 2], 30)
    picks = select(
        "class_balance", k=20, predicted=predicted, exclude=np.arange(10), within="random", rng=0
    )
    counts = np.bincount(predicted[picks], minlength=3)
    # 10 of class 0 already labeled: the 20 picks go to classes 1 and 2, 10 each
    assert counts.tolist() == [0, 10, 10]
    # the neediest classes alternate from the start
    assert set(predicted[picks[:2]].tolist()) == {1, 2}


def test_target_and_true_label_counts() -> None:
    predicted = np.repeat([0, 1], 50)
    picks = select(
        "class_balance",
        k=30,
        predicted=predicted,
        target={0: 1.0, 1: 2.0},
        labeled_counts=[0, 0],
        within="random",
        rng=0,
    )
    assert np.bincount(predicted[picks], minlength=2).tolist() == [10, 20]
    # labeled_counts override the predictions on the excluded items
    picks = select(
        "class_balance",
        k=10,
        predicted=predicted,
        exclude=np.arange(50, 60),
        labeled_counts=[10, 0],
        within="random",
        rng=0,
    )
    assert np.bincount(predicted[picks], minlength=2).tolist() == [0, 10]


def test_most_uncertain_first_within_a_class() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 3)) * 2
    predicted = softmax(logits).argmax(axis=1)
    picks = select("class_balance", k=30, logits=logits, rng=0)
    scores = entropy(softmax(logits))
    for cls in range(3):
        chosen = picks[predicted[picks] == cls]
        assert (np.diff(scores[chosen]) <= 0).all()
        others = np.setdiff1d(np.flatnonzero(predicted == cls), chosen)
        assert scores[others].max() <= scores[chosen].min()


def test_uncertainty_needs_probabilities() -> None:
    with pytest.raises(InvalidInputError, match="within='random'"):
        select("class_balance", k=3, predicted=[0, 1, 1, 0])
    picks = select("class_balance", k=3, predicted=[0, 1, 1, 0], within="random", rng=0)
    assert len(picks) == 3


def test_target_distribution_forms() -> None:
    np.testing.assert_allclose(target_distribution(None, 4), [0.25] * 4)
    np.testing.assert_allclose(target_distribution([1, 3], 2), [0.25, 0.75])
    np.testing.assert_allclose(target_distribution({2: 1.0}, 3), [0.0, 0.0, 1.0])
    for bad in ([1.0], [-1.0, 2.0], [0.0, 0.0], {3: 1.0}, {"cat": 1.0}, [np.nan, 1.0]):
        with pytest.raises(InvalidInputError):
            target_distribution(bad, 2)
