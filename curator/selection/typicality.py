"""TypiClust (Hacohen, Dekel & Weinshall 2022): the most typical item of each uncovered cluster.

For a low labeling budget the most useful items are typical ones, not the hardest. The pool,
labeled items included, is clustered into ``min(#labeled + k, max_clusters)`` clusters by
:func:`curator.selection.clustering.kmeans` on L2-normalised embeddings. Clusters holding no
labeled or selected item are visited first, largest first, and from each the available item with
the highest typicality is taken::

    typicality(x) = 1 / mean(|x - y| for y among the n_neighbours nearest other items of x's
                             cluster)

Clusters smaller than ``min_cluster_size`` are visited only when nothing else is left, as in the
reference implementation, which also uses 20 neighbours and at most 500 clusters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from curator._validate import FloatArray, float_array
from curator.selection.clustering import kmeans, pick_round_robin
from curator.selection.inputs import BoolArray, IntArray, PoolInputs, as_generator, check_count

__all__ = ["typicality", "typicality_strategy"]

_CHUNK_ELEMENTS = 1 << 22


def typicality(
    embeddings: Any,
    n_neighbours: int = 20,
    *,
    max_reference: int = 5000,
    rng: Any = None,
) -> FloatArray:
    """Inverse mean Euclidean distance of each row to its ``n_neighbours`` nearest other rows.

    Exact while ``N <= max_reference``; above that the neighbours are searched among
    ``max_reference`` rows drawn by ``rng``, which keeps the cost linear in ``N``.

    Args:
        embeddings: ``(N, D)`` finite floats (used as given; normalise first if wanted).
        n_neighbours: neighbours to average over; clipped to ``N - 1``.
        max_reference: the most rows searched for neighbours.
        rng: Generator, int seed or None; draws the reference rows when ``N > max_reference``.

    Returns:
        ``(N,)`` float64, higher is more typical; 1.0 for a single row, very large (1e12) for a
        row whose neighbours all coincide with it.

    Raises:
        InvalidInputError: malformed embeddings or non-positive counts.
    """
    x = float_array(embeddings, "embeddings", 2, dtype=np.float32)
    n_neighbours = check_count(n_neighbours, "n_neighbours")
    max_reference = check_count(max_reference, "max_reference", minimum=2)
    m = len(x)
    if m <= 1:
        return np.ones(m, np.float64)
    if m <= max_reference:
        ref = np.arange(m)
    else:
        ref = np.sort(as_generator(rng).choice(m, size=max_reference, replace=False))
    nn = min(n_neighbours, len(ref) - 1)
    xr = x[ref]
    r_sq = np.einsum("ij,ij->i", xr, xr)
    x_sq = np.einsum("ij,ij->i", x, x)
    position = np.full(m, -1, np.int64)
    position[ref] = np.arange(len(ref))
    mean_dist = np.empty(m, np.float64)
    step = max(1, _CHUNK_ELEMENTS // len(ref))
    for start in range(0, m, step):
        rows = np.arange(start, min(start + step, m))
        d2 = np.maximum(x_sq[rows, None] + r_sq[None, :] - 2.0 * (x[rows] @ xr.T), 0.0)
        in_ref = position[rows] >= 0
        d2[np.flatnonzero(in_ref), position[rows][in_ref]] = np.inf
        nearest = np.partition(d2, nn - 1, axis=1)[:, :nn]
        mean_dist[rows] = np.sqrt(nearest.astype(np.float64)).mean(axis=1)
    return 1.0 / np.maximum(mean_dist, 1e-12)


def typicality_strategy(
    pool: PoolInputs,
    k: int,
    rng: np.random.Generator,
    *,
    n_neighbours: int = 20,
    max_clusters: int = 500,
    min_cluster_size: int = 5,
    max_iter: int = 20,
) -> IntArray:
    """Registry adapter for TypiClust.

    Args:
        pool: the validated pool; needs embeddings.
        k: how many to select.
        rng: seeds k-means++ and the neighbour sample of very large clusters.
        n_neighbours: neighbours in the typicality estimate.
        max_clusters: cap on the number of clusters.
        min_cluster_size: clusters smaller than this are visited last.
        max_iter: k-means iterations (a rough clustering is enough to spread the picks).

    Raises:
        InvalidInputError: no embeddings, or a parameter out of range.
    """
    x = pool.require_embeddings("typicality")
    n_neighbours = check_count(n_neighbours, "n_neighbours")
    max_clusters = check_count(max_clusters, "max_clusters")
    min_cluster_size = check_count(min_cluster_size, "min_cluster_size")
    max_iter = check_count(max_iter, "max_iter")
    if k == 0:
        return np.empty(0, np.int64)
    n_clusters = min(len(pool.excluded) + k, max_clusters, pool.size)
    labels = kmeans(x, n_clusters, rng=rng, max_iter=max_iter).labels
    cache: dict[int, FloatArray] = {}

    def most_typical(cluster: int, members: IntArray, selectable: BoolArray) -> int:
        if cluster not in cache:
            cache[cluster] = typicality(x[members], n_neighbours, rng=rng)
        return int(members[np.argmax(np.where(selectable, cache[cluster], -np.inf))])

    return pick_round_robin(
        labels, pool.available, k, most_typical, min_cluster_size=min_cluster_size
    )
