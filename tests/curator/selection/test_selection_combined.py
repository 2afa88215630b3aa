"""Uncertainty + diversity strategies (mirrors curator/selection/combined.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curator.errors import InvalidInputError
from curator.selection import covering_radius, kcenter_greedy, select
from curator.uncertainty import SCORES, softmax


def brute_uncertainty_diversity(
    embeddings: np.ndarray,
    logits: np.ndarray,
    k: int,
    exclude: list[int],
    s_u: float,
    s_d: float,
    score: str,
) -> list[float]:
    """The documented formula in float64; returns the value of each pick, in order."""
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    u = SCORES[score](softmax(logits))
    n = len(x)
    available = np.ones(n, dtype=bool)
    available[exclude] = False
    lo, hi = u[available].min(), u[available].max()
    u_norm = (u - lo) / (hi - lo) if hi > lo else np.zeros(n)
    centres = list(exclude)
    values = []
    for _ in range(min(k, available.sum())):
        if centres:
            d = np.linalg.norm(x[:, None, :] - x[None, centres, :], axis=2).min(axis=1)
            far = d[available].max()
            div = d / far if far > 0 else np.zeros(n)
        else:
            div = np.ones(n)
        value = np.where(available, s_u * u_norm + s_d * div, -np.inf)
        j = int(np.argmax(value))
        values.append(float(value[j]))
        available[j] = False
        centres.append(j)
    return values


@settings(max_examples=40)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 30),
    k=st.integers(1, 10),
    n_labeled=st.integers(0, 3),
    s_u=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    s_d=st.sampled_from([0.0, 1.0, 2.0]),
    score=st.sampled_from(sorted(SCORES)),
)
def test_follows_the_documented_formula(
    make_pool: Callable[..., dict[str, Any]],
    seed: int,
    n: int,
    k: int,
    n_labeled: int,
    s_u: float,
    s_d: float,
    score: str,
) -> None:
    if s_u == 0 and s_d == 0:
        s_d = 1.0
    pool = make_pool(n=n, seed=seed)
    exclude = list(range(min(n_labeled, n - 1)))
    picks = select(
        "uncertainty_diversity",
        k=k,
        embeddings=pool["embeddings"],
        logits=pool["logits"],
        exclude=exclude,
        uncertainty=score,
        uncertainty_strength=s_u,
        diversity_strength=s_d,
        rng=seed,
    )
    expected = brute_uncertainty_diversity(
        pool["embeddings"], pool["logits"], k, exclude, s_u, s_d, score
    )
    # the same value at every step (the picks may differ only between exact ties)
    x = pool["embeddings"] / np.linalg.norm(pool["embeddings"], axis=1, keepdims=True)
    u = SCORES[score](softmax(pool["logits"]))
    available = np.ones(n, dtype=bool)
    available[exclude] = False
    lo, hi = u[available].min(), u[available].max()
    u_norm = (u - lo) / (hi - lo) if hi > lo else np.zeros(n)
    centres = list(exclude)
    for step, pick in enumerate(picks.tolist()):
        if centres:
            d = np.linalg.norm(x[:, None, :] - x[None, centres, :], axis=2).min(axis=1)
            far = d[available].max()
            div = d[pick] / far if far > 0 else 0.0
        else:
            div = 1.0
        assert s_u * u_norm[pick] + s_d * div == pytest.approx(expected[step], abs=2e-3)
        available[pick] = False
        centres.append(pick)


def hard_scene_pool() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """50 near-copies of one maximally uncertain scene and 200 diverse, fairly certain items."""
    rng = np.random.default_rng(0)
    scene = rng.normal(size=16)
    copies = scene + 0.01 * rng.normal(size=(50, 16))
    diverse = rng.normal(size=(200, 16))
    embeddings = np.vstack([copies, diverse])
    logits = np.vstack([np.zeros((50, 5)), rng.normal(size=(200, 5)) * 3])
    is_copy = np.arange(250) < 50
    return embeddings, logits, is_copy


def test_a_batch_is_not_fifty_copies_of_one_hard_scene() -> None:
    embeddings, logits, is_copy = hard_scene_pool()
    top = select("entropy", k=10, logits=logits, rng=0)
    assert is_copy[top].all()  # pure uncertainty takes only copies
    picks = select("uncertainty_diversity", k=10, embeddings=embeddings, logits=logits, rng=0)
    assert is_copy[picks[0]]  # the hardest scene still comes first
    assert is_copy[picks].sum() <= 2


def test_zero_diversity_is_top_k_uncertainty(pool: dict[str, Any]) -> None:
    picks = select(
        "uncertainty_diversity",
        k=15,
        embeddings=pool["embeddings"],
        logits=pool["logits"],
        diversity_strength=0.0,
        rng=0,
    )
    top = select("margin", k=15, logits=pool["logits"], rng=0)  # margin: the default score
    assert set(picks.tolist()) == set(top.tolist())
    by_entropy = select(
        "uncertainty_diversity",
        k=15,
        embeddings=pool["embeddings"],
        logits=pool["logits"],
        uncertainty="entropy",
        diversity_strength=0.0,
        rng=0,
    )
    assert set(by_entropy.tolist()) == set(select("entropy", k=15, logits=pool["logits"]).tolist())


def test_zero_uncertainty_is_k_center(pool: dict[str, Any]) -> None:
    picks = select(
        "uncertainty_diversity",
        k=15,
        embeddings=pool["embeddings"],
        logits=pool["logits"],
        uncertainty_strength=0.0,
        exclude=[4],
        rng=7,
    )
    greedy = kcenter_greedy(pool["embeddings"], 15, centres=[4], rng=7)
    assert picks.tolist() == greedy.indices.tolist()
    assert covering_radius(pool["embeddings"], [4, *picks.tolist()]) == pytest.approx(
        greedy.radius, abs=1e-5
    )


def test_both_strengths_zero_is_rejected(pool: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError, match="both 0"):
        select(
            "uncertainty_diversity",
            k=3,
            embeddings=pool["embeddings"],
            logits=pool["logits"],
            uncertainty_strength=0,
            diversity_strength=0,
        )


def test_cluster_uncertainty_takes_the_most_uncertain_of_each_blob() -> None:
    rng = np.random.default_rng(3)
    blob = np.repeat(np.arange(4), [30, 25, 20, 15])
    embeddings = np.eye(6)[blob] * 10 + rng.normal(size=(len(blob), 6))
    logits = rng.normal(size=(len(blob), 3)) * 2
    picks = select("cluster_uncertainty", k=4, embeddings=embeddings, logits=logits, rng=0)
    assert blob[picks].tolist() == [0, 1, 2, 3]
    scores = SCORES["entropy"](softmax(logits))
    for pick in picks:
        assert scores[pick] == scores[blob == blob[pick]].max()
    # a blob holding a labeled item is visited after the others
    later = select(
        "cluster_uncertainty", k=3, embeddings=embeddings, logits=logits, exclude=[0], rng=0
    )
    assert sorted(blob[later].tolist()) == [1, 2, 3]
