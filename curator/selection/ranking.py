"""Random selection and top-k uncertainty: rank the available items once, take the first ``k``.

Ties between equal scores are broken by a random order drawn from ``rng``, so the same seed
always gives the same selection while equal items (for example every frame of an untrained
model) are not taken in pool order, which tends to be time order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from curator.selection.inputs import BoolArray, IntArray, PoolInputs, as_generator
from curator.uncertainty import SCORES

__all__ = ["random_order", "random_strategy", "top_k", "uncertainty_strategy"]


def random_order(available: BoolArray, k: int, rng: Any = None) -> IntArray:
    """``k`` distinct available indices drawn uniformly, in the order drawn.

    Args:
        available: ``(N,)`` bool, True where an item may be chosen.
        k: how many to draw; at most ``available.sum()``.
        rng: Generator, int seed or None.
    """
    idx = np.flatnonzero(available)
    k = min(k, len(idx))
    return as_generator(rng).choice(idx, size=k, replace=False).astype(np.int64)


def top_k(scores: Any, k: int, *, available: BoolArray | None = None, rng: Any = None) -> IntArray:
    """Indices of the ``k`` highest scores among the available items, highest first.

    Args:
        scores: ``(N,)`` finite floats, higher is chosen first.
        k: how many; clipped to the number of available items.
        available: ``(N,)`` bool mask of choosable items; all when None.
        rng: Generator, int seed or None; orders items with equal scores.

    Returns:
        ``(min(k, available),)`` int64 indices into ``scores``.
    """
    s = np.asarray(scores, dtype=np.float64)
    idx = np.arange(len(s)) if available is None else np.flatnonzero(available)
    ties = as_generator(rng).permutation(len(idx))
    order = np.lexsort((ties, -s[idx]))
    return idx[order[: min(k, len(idx))]].astype(np.int64)


def random_strategy(pool: PoolInputs, k: int, rng: np.random.Generator) -> IntArray:
    """Registry adapter: ``k`` available items uniformly at random."""
    return random_order(pool.available, k, rng)


def uncertainty_strategy(
    score_name: str,
) -> Callable[[PoolInputs, int, np.random.Generator], IntArray]:
    """Registry adapter for one score of :data:`curator.uncertainty.SCORES`: top-k by it.

    Args:
        score_name: a key of ``SCORES`` (``least_confidence``, ``margin``, ``entropy``).
    """
    score_fn = SCORES[score_name]

    def run(pool: PoolInputs, k: int, rng: np.random.Generator) -> IntArray:
        probs = pool.require_probs(score_name)
        return top_k(score_fn(probs), k, available=pool.available, rng=rng)

    run.__name__ = f"{score_name}_strategy"
    return run
