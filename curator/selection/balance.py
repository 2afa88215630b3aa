"""Class balance: pick items so the class histogram of labeled + selected approaches a target.

With ``c_j`` items of class ``j`` labeled, ``k`` to pick and ``T = sum(c) + k``, each step takes
the class with the largest remaining need ``target_j * T - c_j - s_j`` (``s_j`` picked so far)
among the classes that still have available items, lowest class id among equals, and within it
the most uncertain available item (or a random one). Adding one item to the neediest class is the
cheapest step for the separable convex cost ``sum_j (c_j + s_j - target_j * T)^2``, so the greedy
allocation minimises that squared distance to the target over every allocation of ``k`` items
the pool allows.

Classes come from the model's predictions (``predicted``, or the argmax of ``probs``/``logits``);
the labeled histogram defaults to the predictions on the excluded items, or pass the true label
counts as ``labeled_counts``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from curator._validate import FloatArray, float_array
from curator.errors import InvalidInputError
from curator.selection.inputs import (
    BoolArray,
    IntArray,
    PoolInputs,
    as_generator,
    check_choice,
)
from curator.uncertainty import SCORES

__all__ = ["balanced_picks", "class_balance_strategy", "target_distribution"]


def target_distribution(target: Any, n_classes: int) -> FloatArray:
    """The target class distribution as a ``(n_classes,)`` array summing to 1.

    Args:
        target: None (uniform), a mapping ``{class_id: weight}`` (unlisted classes weigh 0), or
            a sequence of ``n_classes`` non-negative weights.
        n_classes: the number of classes.

    Raises:
        InvalidInputError: negative, non-finite or all-zero weights, unknown class ids, or a
            sequence of the wrong length.
    """
    if target is None:
        return np.full(n_classes, 1.0 / n_classes)
    weights: FloatArray
    if isinstance(target, Mapping):
        weights = np.zeros(n_classes)
        for cls, w in target.items():
            if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)):
                raise InvalidInputError(f"target keys must be class ids, got {cls!r}")
            if not 0 <= cls < n_classes:
                raise InvalidInputError(f"target names class {cls}, outside 0..{n_classes - 1}")
            weights[int(cls)] = float_array(w, "target weight", 0)
    else:
        weights = float_array(target, "target", 1)
        if len(weights) != n_classes:
            raise InvalidInputError(
                f"target must have one weight per class ({n_classes}), got {len(weights)}"
            )
    if (weights < 0).any() or weights.sum() <= 0:
        raise InvalidInputError(f"target weights must be >= 0 and not all 0, got {weights}")
    return weights / weights.sum()  # type: ignore[no-any-return]


def balanced_picks(
    predicted: IntArray,
    k: int,
    *,
    target: FloatArray,
    start_counts: FloatArray,
    priority: FloatArray,
    available: BoolArray,
    rng: Any = None,
) -> IntArray:
    """The greedy class-balancing order (see the module docstring).

    Args:
        predicted: ``(N,)`` class id of each item, all ``< len(target)``.
        k: how many to pick; clipped to the available count.
        target: ``(C,)`` target distribution summing to 1.
        start_counts: ``(C,)`` items per class already labeled.
        priority: ``(N,)`` within a class, higher is picked first.
        available: ``(N,)`` bool, True where an item may be picked.
        rng: Generator, int seed or None; orders items of equal priority.

    Returns:
        ``(min(k, available),)`` int64 indices in the order picked.
    """
    n_classes = len(target)
    idx = np.flatnonzero(available)
    k = min(k, len(idx))
    cls = predicted[idx]
    ties = as_generator(rng).permutation(len(idx))
    order = np.lexsort((ties, -priority[idx], cls))
    queue = idx[order]
    bounds = np.searchsorted(cls[order], np.arange(n_classes + 1))
    head, end = bounds[:-1].copy(), bounds[1:]
    need = target * (float(start_counts.sum()) + k) - start_counts
    picks = np.empty(k, np.int64)
    for step in range(k):
        c = int(np.argmax(np.where(head < end, need, -np.inf)))
        picks[step] = queue[head[c]]
        head[c] += 1
        need[c] -= 1.0
    return picks


def class_balance_strategy(
    pool: PoolInputs,
    k: int,
    rng: np.random.Generator,
    *,
    target: Any = None,
    labeled_counts: Any = None,
    within: str = "uncertainty",
    uncertainty: str = "entropy",
) -> IntArray:
    """Registry adapter for class balance.

    Args:
        pool: the validated pool; needs predicted classes, and probabilities when
            ``within="uncertainty"``.
        k: how many to select.
        rng: orders items of equal priority.
        target: target distribution (see :func:`target_distribution`); uniform by default.
        labeled_counts: ``(C,)`` labeled items per class; by default the predicted classes of
            the excluded items.
        within: ``"uncertainty"`` (most uncertain first) or ``"random"``.
        uncertainty: the score used when ``within="uncertainty"``.

    Raises:
        InvalidInputError: a missing input or a malformed parameter.
    """
    predicted = pool.require_predicted("class_balance")
    within = check_choice(within, "within", ("uncertainty", "random"))
    if within == "uncertainty":
        uncertainty = check_choice(uncertainty, "uncertainty", tuple(sorted(SCORES)))
        if pool.probs is None:
            raise InvalidInputError(
                "strategy 'class_balance' with within='uncertainty' needs probs or logits; "
                "pass them, or within='random' to balance on predicted classes alone"
            )
        priority = SCORES[uncertainty](pool.probs)
    else:
        priority = np.zeros(pool.size)
    n_classes = _n_classes(pool, target, labeled_counts, predicted)
    goal = target_distribution(target, n_classes)
    start: FloatArray
    if labeled_counts is None:
        start = np.bincount(predicted[pool.excluded], minlength=n_classes).astype(np.float64)
    else:
        start = float_array(labeled_counts, "labeled_counts", 1)
        if len(start) != n_classes or (start < 0).any():
            raise InvalidInputError(
                f"labeled_counts must hold {n_classes} counts >= 0, got {start.tolist()}"
            )
    return balanced_picks(
        predicted,
        k,
        target=goal,
        start_counts=start,
        priority=priority,
        available=pool.available,
        rng=rng,
    )


def _n_classes(pool: PoolInputs, target: Any, labeled_counts: Any, predicted: IntArray) -> int:
    if pool.probs is not None:
        return int(pool.probs.shape[1])
    n = int(predicted.max()) + 1 if len(predicted) else 1
    if isinstance(target, Mapping):
        keys = [int(c) for c in target if isinstance(c, (int, np.integer)) and c >= 0]
        n = max([n, *(c + 1 for c in keys)])
    elif target is not None:
        n = max(n, len(np.atleast_1d(np.asarray(target))))
    if labeled_counts is not None:
        n = max(n, len(np.atleast_1d(np.asarray(labeled_counts))))
    return max(n, 1)
