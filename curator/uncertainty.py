"""Uncertainty scores: pure functions ``(N, K) -> (N,)`` in ``[0, 1]``, higher is more uncertain.

Every score takes class probabilities. Use :func:`softmax` to turn logits into probabilities (it
is stable for logits of any finite magnitude), or :func:`score` which accepts either.

- ``least_confidence``: ``(1 - max p) * K / (K - 1)``.
- ``margin``: ``1 - (p_top1 - p_top2)``.
- ``entropy``: Shannon entropy divided by ``log K``.
- ``bald``: mutual information between prediction and model parameters estimated from
  Monte-Carlo samples ``(T, N, K)`` (Houlsby et al. 2011), divided by ``log K``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from curator._validate import FloatArray, float_array
from curator.errors import InvalidInputError

__all__ = [
    "SCORES",
    "bald",
    "entropy",
    "least_confidence",
    "margin",
    "probabilities",
    "score",
    "softmax",
]

_SUM_TOLERANCE = 1e-3


def softmax(logits: Any) -> FloatArray:
    """Class probabilities from logits, stable for any finite magnitude.

    Args:
        logits: ``(N, K)`` finite floats.

    Returns:
        ``(N, K)`` float64 probabilities; rows sum to 1.

    Raises:
        InvalidInputError: not 2-D, or holds NaN/inf.
    """
    z = float_array(logits, "logits", 2)
    with np.errstate(over="ignore"):  # a spread beyond float range gives exactly 0 after exp
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def _check_probs(probs: Any, name: str = "probs", ndim: int = 2) -> FloatArray:
    p = float_array(probs, name, ndim)
    if p.shape[-1] < 2:
        raise InvalidInputError(f"{name} needs at least 2 classes, got shape {p.shape}")
    if (p < 0).any() or (p > 1 + _SUM_TOLERANCE).any():
        raise InvalidInputError(f"{name} must lie in [0, 1]; use softmax() on logits")
    sums = p.sum(axis=-1)
    if np.abs(sums - 1.0).max(initial=0.0) > _SUM_TOLERANCE:
        worst = sums.flat[np.abs(sums - 1.0).argmax()]
        raise InvalidInputError(
            f"{name} rows must sum to 1 (worst row sums to {worst:.4g}); use softmax() on logits"
        )
    return p / sums[..., None]  # type: ignore[no-any-return]


def _entropy(p: FloatArray) -> FloatArray:
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -plogp.sum(axis=-1)  # type: ignore[no-any-return]


def least_confidence(probs: Any) -> FloatArray:
    """``(1 - max p) * K / (K - 1)``: 0 for a one-hot prediction, 1 for a uniform one.

    Args:
        probs: ``(N, K)`` class probabilities, rows summing to 1.

    Returns:
        ``(N,)`` scores in ``[0, 1]``.

    Raises:
        InvalidInputError: malformed probabilities.
    """
    p = _check_probs(probs)
    k = p.shape[1]
    return np.clip((1.0 - p.max(axis=1)) * k / (k - 1), 0.0, 1.0)  # type: ignore[no-any-return]


def margin(probs: Any) -> FloatArray:
    """``1 - (p_top1 - p_top2)``: 1 when the two best classes tie.

    Args:
        probs: ``(N, K)`` class probabilities, rows summing to 1.

    Returns:
        ``(N,)`` scores in ``[0, 1]``.

    Raises:
        InvalidInputError: malformed probabilities.
    """
    p = _check_probs(probs)
    top2 = np.partition(p, -2, axis=1)[:, -2:]
    return np.clip(1.0 - (top2[:, 1] - top2[:, 0]), 0.0, 1.0)


def entropy(probs: Any) -> FloatArray:
    """Shannon entropy normalised by ``log K``.

    Args:
        probs: ``(N, K)`` class probabilities, rows summing to 1.

    Returns:
        ``(N,)`` scores in ``[0, 1]``.

    Raises:
        InvalidInputError: malformed probabilities.
    """
    p = _check_probs(probs)
    return np.clip(_entropy(p) / np.log(p.shape[1]), 0.0, 1.0)  # type: ignore[no-any-return]


def bald(mc_probs: Any) -> FloatArray:
    """BALD: entropy of the mean prediction minus the mean entropy of the samples.

    Args:
        mc_probs: ``(T, N, K)`` probabilities from ``T`` stochastic forward passes (MC dropout,
            an ensemble, ...).

    Returns:
        ``(N,)`` scores in ``[0, 1]``: 0 when all samples agree.

    Raises:
        InvalidInputError: not 3-D or malformed probabilities.
    """
    p = _check_probs(mc_probs, "mc_probs", ndim=3)
    if p.shape[0] == 0:
        raise InvalidInputError(f"mc_probs needs at least one sample, got shape {p.shape}")
    mean = p.mean(axis=0)
    mutual = _entropy(mean) - _entropy(p).mean(axis=0)
    return np.clip(mutual / np.log(p.shape[2]), 0.0, 1.0)  # type: ignore[no-any-return]


SCORES: dict[str, Callable[[Any], FloatArray]] = {
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
}
"""Single-pass uncertainty scores by name (``bald`` needs Monte-Carlo samples instead)."""


def probabilities(*, logits: Any = None, probs: Any = None) -> FloatArray:
    """Class probabilities from exactly one of ``logits`` or ``probs``.

    Raises:
        InvalidInputError: both or neither given, or malformed values.
    """
    if (logits is None) == (probs is None):
        raise InvalidInputError("give exactly one of logits or probs")
    return softmax(logits) if logits is not None else _check_probs(probs)


def score(name: str, *, logits: Any = None, probs: Any = None) -> FloatArray:
    """The uncertainty score ``name`` from logits or probabilities.

    Args:
        name: one of :data:`SCORES`.
        logits: ``(N, K)`` logits, or
        probs: ``(N, K)`` probabilities.

    Returns:
        ``(N,)`` scores in ``[0, 1]``.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        InvalidInputError: malformed input.
    """
    if name not in SCORES:
        raise ValueError(f"unknown uncertainty score {name!r}; valid: {', '.join(sorted(SCORES))}")
    return SCORES[name](probabilities(logits=logits, probs=probs))
