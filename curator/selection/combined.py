"""Strategies that weigh uncertainty against diversity, so a batch is not 50 copies of one scene.

``uncertainty_diversity`` (the default pool strategy) combines two normalised objectives as a
weighted sum with a strength per objective, in the manner of LightlyOne's selection config, and
applies diversity greedily as in k-center. At each step ``t`` it picks the available item with the
highest::

    value_i = s_u * u_i + s_d * d_i(t)

    u_i    = (score_i - min_A score) / (max_A score - min_A score)   # 0 when the scores are equal
    d_i(t) = dist(i, C_t) / max_{j in A_t} dist(j, C_t)             # 1 while C_t is empty

``score`` is the uncertainty score named by ``uncertainty`` (margin by default), ``A`` the items
available at the start, ``A_t`` those still available at step ``t``, ``C_t`` the labeled
(excluded) items plus the picks so far, and ``dist`` the Euclidean distance between L2-normalised
embeddings. ``s_u = uncertainty_strength`` and ``s_d = diversity_strength`` (both 1 by default).
After each pick the distances of the pool to ``C_t`` shrink, so a near-copy of an item already
picked loses up to ``s_d`` and the next pick moves elsewhere. With ``s_d = 0`` this is top-k
uncertainty; with ``s_u = 0`` it is k-center greedy (same picks for the same seed). Ties are broken
by a random order drawn from ``rng``.

``cluster_uncertainty`` clusters the pool (labeled items included) into ``#labeled + k`` clusters
(at most ``max_clusters``) and takes the most uncertain available item of each cluster, visiting
clusters with the fewest labeled or picked items first, largest first.
"""

from __future__ import annotations

import numpy as np

from curator._validate import FloatArray
from curator.errors import InvalidInputError
from curator.selection.clustering import kmeans, pick_round_robin
from curator.selection.coverage import CoverageTracker
from curator.selection.inputs import (
    BoolArray,
    IntArray,
    PoolInputs,
    check_choice,
    check_count,
    check_strength,
)
from curator.uncertainty import SCORES

__all__ = ["cluster_uncertainty_strategy", "normalised_scores", "uncertainty_diversity_strategy"]


def normalised_scores(scores: FloatArray, available: BoolArray) -> FloatArray:
    """Min-max scale ``scores`` over the available items to ``[0, 1]``; 0 where they are equal.

    Args:
        scores: ``(N,)`` finite floats.
        available: ``(N,)`` bool; the items whose range defines the scale.

    Returns:
        ``(N,)`` float64 (values of unavailable items may fall outside ``[0, 1]``).
    """
    s = np.asarray(scores, dtype=np.float64)
    if not available.any():
        return np.zeros_like(s)
    lo, hi = float(s[available].min()), float(s[available].max())
    if hi <= lo:
        return np.zeros_like(s)
    return (s - lo) / (hi - lo)


def _scores(pool: PoolInputs, uncertainty: str, strategy: str) -> FloatArray:
    name = check_choice(uncertainty, "uncertainty", tuple(sorted(SCORES)))
    return SCORES[name](pool.require_probs(strategy))


def uncertainty_diversity_strategy(
    pool: PoolInputs,
    k: int,
    rng: np.random.Generator,
    *,
    uncertainty: str = "margin",
    uncertainty_strength: float = 1.0,
    diversity_strength: float = 1.0,
) -> IntArray:
    """Registry adapter for the default strategy (formula in the module docstring).

    Args:
        pool: the validated pool; needs embeddings and probabilities.
        k: how many to select.
        rng: breaks ties.
        uncertainty: a name in :data:`curator.uncertainty.SCORES`.
        uncertainty_strength: ``s_u >= 0``.
        diversity_strength: ``s_d >= 0``; not both 0.

    Raises:
        InvalidInputError: a missing input or a parameter out of range.
    """
    x_all = pool.require_embeddings("uncertainty_diversity")
    scores = _scores(pool, uncertainty, "uncertainty_diversity")
    s_u = check_strength(uncertainty_strength, "uncertainty_strength")
    s_d = check_strength(diversity_strength, "diversity_strength")
    if s_u == 0 and s_d == 0:
        raise InvalidInputError("uncertainty_strength and diversity_strength are both 0")
    perm = rng.permutation(pool.size)
    available = pool.available[perm]
    weighted_u = s_u * normalised_scores(scores[perm], available)
    tracker = CoverageTracker(x_all[perm], np.flatnonzero(~available))
    sq = tracker.sq_dist
    value = np.empty(pool.size, np.float64)
    picks = np.empty(k, np.int64)
    for step in range(k):
        if tracker.n_centres == 0:
            np.add(weighted_u, s_d, out=value)
        else:
            far = float(sq.max())
            if far > 0:
                np.sqrt(np.maximum(sq, 0.0), out=value)
                value *= s_d / np.sqrt(far)
                value += weighted_u
            else:
                value[:] = weighted_u
            value[sq < 0] = -np.inf
        j = int(np.argmax(value))
        tracker.add(j)
        picks[step] = perm[j]
    return picks


def cluster_uncertainty_strategy(
    pool: PoolInputs,
    k: int,
    rng: np.random.Generator,
    *,
    uncertainty: str = "entropy",
    max_clusters: int = 500,
    min_cluster_size: int = 1,
    max_iter: int = 20,
) -> IntArray:
    """Registry adapter: k-means the pool, then the most uncertain item per cluster.

    Args:
        pool: the validated pool; needs embeddings and probabilities.
        k: how many to select.
        rng: seeds k-means++.
        uncertainty: a name in :data:`curator.uncertainty.SCORES`.
        max_clusters: cap on the number of clusters.
        min_cluster_size: clusters smaller than this are visited last.
        max_iter: k-means iterations (a rough clustering is enough to spread the picks).

    Raises:
        InvalidInputError: a missing input or a parameter out of range.
    """
    x = pool.require_embeddings("cluster_uncertainty")
    scores = _scores(pool, uncertainty, "cluster_uncertainty")
    max_clusters = check_count(max_clusters, "max_clusters")
    min_cluster_size = check_count(min_cluster_size, "min_cluster_size")
    max_iter = check_count(max_iter, "max_iter")
    if k == 0:
        return np.empty(0, np.int64)
    n_clusters = min(len(pool.excluded) + k, max_clusters, pool.size)
    labels = kmeans(x, n_clusters, rng=rng, max_iter=max_iter).labels

    def most_uncertain(cluster: int, members: IntArray, selectable: BoolArray) -> int:
        return int(members[np.argmax(np.where(selectable, scores[members], -np.inf))])

    return pick_round_robin(
        labels, pool.available, k, most_uncertain, min_cluster_size=min_cluster_size
    )
