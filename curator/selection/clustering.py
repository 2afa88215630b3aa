"""A small seeded k-means (k-means++ init, Lloyd iterations) and a round-robin over clusters.

Cluster-based strategies (:mod:`curator.selection.typicality`, ``cluster_uncertainty`` in
:mod:`curator.selection.combined`) cluster the whole pool, labeled items included, then visit the
clusters that hold the fewest labeled or selected items first, largest first among equals, and
take one item from each with a strategy-specific rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from curator._validate import FloatArray, float_array
from curator.errors import InvalidInputError
from curator.selection.inputs import BoolArray, IntArray, as_generator

__all__ = ["KMeansResult", "kmeans", "kmeans_plus_plus", "pick_round_robin"]

_CHUNK_ELEMENTS = 1 << 22
_SEED_SAMPLE_MIN = 10_000
_SEED_SAMPLE_PER_CLUSTER = 20

ChooseInCluster = Callable[[int, IntArray, BoolArray], int]
"""``choose(cluster, members, selectable) -> index``: ``members`` are the cluster's indices in
ascending order, ``selectable`` the ``(len(members),)`` mask of those that may be picked."""


@dataclass(frozen=True)
class KMeansResult:
    """A k-means clustering.

    Attributes:
        centroids: ``(C, D)`` float64 cluster centres.
        labels: ``(N,)`` int64 cluster of each point.
        inertia: sum of squared distances of the points to their centre.
        n_iter: Lloyd iterations run.
    """

    centroids: FloatArray
    labels: IntArray
    inertia: float
    n_iter: int


def _sq_dist_to(x: FloatArray, c: FloatArray, x_sq: FloatArray) -> FloatArray:
    return np.maximum(x_sq - 2.0 * np.einsum("ij,j->i", x, c) + float(c @ c), 0.0)  # type: ignore[no-any-return]


def kmeans_plus_plus(x: FloatArray, n_clusters: int, rng: np.random.Generator) -> IntArray:
    """Indices of ``n_clusters`` distinct seeds by greedy k-means++.

    Each seed after the first is the best of ``2 + ln(n_clusters)`` candidates drawn with
    probability proportional to the squared distance to the nearest seed so far (Arthur &
    Vassilvitskii 2007; the greedy trials as in scikit-learn), which keeps two seeds from
    landing in one well-separated cluster far more reliably than a single draw.

    Args:
        x: ``(N, D)`` floats, ``N >= n_clusters >= 1``.
        n_clusters: how many seeds.
        rng: the generator that draws them.
    """
    n = len(x)
    trials = 2 + int(np.log(n_clusters))
    x_sq = np.einsum("ij,ij->i", x, x).astype(np.float64)
    chosen = np.zeros(n, dtype=bool)
    seeds = np.empty(n_clusters, np.int64)
    seeds[0] = rng.integers(n)
    chosen[seeds[0]] = True
    d2 = _sq_dist_to(x, x[seeds[0]], x_sq)
    for i in range(1, n_clusters):
        weights = np.where(chosen, 0.0, d2)
        cum = np.cumsum(weights)
        if cum[-1] > 0.0:
            draws = np.searchsorted(cum, rng.random(trials) * cum[-1], side="right")
            candidates = np.minimum(draws, n - 1)
            candidates = candidates[~chosen[candidates]]  # rounding at the end of cum
            if len(candidates) == 0:
                candidates = np.flatnonzero(~chosen)[-1:]
        else:  # every remaining point coincides with a seed
            candidates = np.array([rng.choice(np.flatnonzero(~chosen))])
        xc = x[candidates]
        dc = np.maximum(x_sq[:, None] - 2.0 * (x @ xc.T) + x_sq[candidates][None, :], 0.0)
        np.minimum(dc, d2[:, None], out=dc)
        best = int(np.argmin(dc.sum(axis=0)))
        seeds[i] = candidates[best]
        chosen[candidates[best]] = True
        d2 = dc[:, best]
    return seeds


def _assign(x: FloatArray, x_sq: FloatArray, centroids: FloatArray) -> tuple[IntArray, FloatArray]:
    c = centroids.astype(x.dtype)
    c_sq = np.einsum("ij,ij->i", c, c)
    labels = np.empty(len(x), np.int64)
    d2 = np.empty(len(x), np.float64)
    step = max(1, _CHUNK_ELEMENTS // max(1, len(c)))
    for start in range(0, len(x), step):
        part = c_sq - 2.0 * (x[start : start + step] @ c.T)
        lab = part.argmin(axis=1)
        labels[start : start + len(lab)] = lab
        d2[start : start + len(lab)] = part[np.arange(len(lab)), lab]
    d2 += x_sq
    return labels, np.maximum(d2, 0.0)


def kmeans(
    embeddings: Any,
    n_clusters: int,
    *,
    rng: Any = None,
    max_iter: int = 50,
    tol: float = 1e-4,
) -> KMeansResult:
    """Lloyd's k-means with k-means++ seeds, computed in float32 with float64 centroids.

    The seeds are drawn from a random sample of ``max(10000, 20 * n_clusters)`` points when the
    pool is larger, which keeps seeding cheap; Lloyd's iterations then use every point.
    An empty cluster is re-seeded with the point farthest from its centre. Iteration stops when
    the squared centroid shift falls below ``tol`` times the mean per-feature variance, or after
    ``max_iter`` iterations.

    Args:
        embeddings: ``(N, D)`` finite floats.
        n_clusters: ``1 <= n_clusters <= N``.
        rng: Generator, int seed or None; draws the seeds.
        max_iter: the most Lloyd iterations.
        tol: relative tolerance on the centroid shift.

    Returns:
        Centroids, labels, inertia and the iterations run.

    Raises:
        InvalidInputError: malformed embeddings or ``n_clusters`` out of range.
    """
    x = float_array(embeddings, "embeddings", 2, dtype=np.float32)
    if isinstance(n_clusters, bool) or not 1 <= n_clusters <= len(x):
        raise InvalidInputError(f"n_clusters must be in [1, {len(x)}], got {n_clusters!r}")
    gen = as_generator(rng)
    x_sq = np.einsum("ij,ij->i", x, x).astype(np.float64)
    seed_pool = x
    sample_size = max(_SEED_SAMPLE_MIN, _SEED_SAMPLE_PER_CLUSTER * n_clusters)
    if len(x) > sample_size:
        seed_pool = x[np.sort(gen.choice(len(x), size=sample_size, replace=False))]
    centroids = seed_pool[kmeans_plus_plus(seed_pool, n_clusters, gen)].astype(np.float64)
    threshold = tol * float(x.var(axis=0, dtype=np.float64).mean())
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is reported
        labels, d2 = _assign(x, x_sq, centroids)
        counts = np.bincount(labels, minlength=n_clusters)
        order = np.argsort(labels, kind="stable")
        nonempty = np.flatnonzero(counts)
        starts = np.concatenate(([0], np.cumsum(counts)))[nonempty]
        new = centroids.copy()
        new[nonempty] = np.add.reduceat(x[order], starts, axis=0)
        new[nonempty] /= counts[nonempty, None]
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            far = np.argsort(-d2, kind="stable")[: len(empty)]
            new[empty] = x[far]
        shift = float(((new - centroids) ** 2).sum())
        centroids = new
        if shift <= threshold and not len(empty):
            break
    labels, d2 = _assign(x, x_sq, centroids)
    return KMeansResult(centroids=centroids, labels=labels, inertia=float(d2.sum()), n_iter=n_iter)


def pick_round_robin(
    labels: IntArray,
    available: BoolArray,
    k: int,
    choose: ChooseInCluster,
    *,
    min_cluster_size: int = 1,
) -> IntArray:
    """Pick ``k`` available items, one cluster at a time.

    Each step takes the cluster with the fewest labeled or already-picked items, the largest
    among equals (then the lowest cluster id), and lets ``choose`` pick one of its available
    items. Clusters smaller than ``min_cluster_size`` are visited only when no larger cluster
    has items left, so ``min(k, available)`` items always come back.

    Args:
        labels: ``(N,)`` cluster id of each item.
        available: ``(N,)`` bool, True where an item may be picked.
        k: how many to pick.
        choose: the rule that picks within a cluster (see :data:`ChooseInCluster`).
        min_cluster_size: clusters smaller than this are visited last.

    Returns:
        ``(min(k, available),)`` int64 indices in the order picked.
    """
    n = len(labels)
    n_clusters = int(labels.max()) + 1 if n else 0
    sizes = np.bincount(labels, minlength=n_clusters)
    covered = np.bincount(labels[~available], minlength=n_clusters)
    remaining = np.bincount(labels[available], minlength=n_clusters)
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate(([0], np.cumsum(sizes)))
    big = sizes >= min_cluster_size
    selectable = available.copy()
    k = min(k, int(available.sum()))
    picks = np.empty(k, np.int64)
    for step in range(k):
        eligible = remaining > 0
        if (eligible & big).any():
            eligible &= big
        key = np.where(eligible, covered * float(n + 1) - sizes, np.inf)
        c = int(np.argmin(key))
        members = order[starts[c] : starts[c + 1]]
        item = choose(c, members, selectable[members])
        picks[step] = item
        selectable[item] = False
        remaining[c] -= 1
        covered[c] += 1
    return picks
