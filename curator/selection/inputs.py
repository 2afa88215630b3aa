"""The validated inputs of a pool strategy: arrays checked once, the selectable items, the rng.

:func:`curator.selection.pool.select` builds a :class:`PoolInputs` from the caller's arrays and
hands it to the strategy, which then trusts the data. Input names a strategy may require:

- ``"embeddings"``: ``(N, D)`` floats, stored L2-normalised as float32;
- ``"probs"``: ``(N, C)`` class probabilities, given as ``probs`` or as ``logits``;
- ``"predicted"``: ``(N,)`` predicted class ids, given as ``predicted`` or derived from the
  probabilities (argmax).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from curator._validate import FloatArray
from curator.diversity import l2_normalize
from curator.errors import InvalidInputError
from curator.uncertainty import probabilities

__all__ = [
    "BoolArray",
    "InputName",
    "IntArray",
    "PoolInputs",
    "as_generator",
    "build_pool_inputs",
    "check_choice",
    "check_count",
    "check_strength",
    "missing_input",
]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
InputName = Literal["embeddings", "probs", "predicted"]

_HOW_TO_GIVE: dict[str, str] = {
    "embeddings": "embeddings",
    "probs": "probs or logits",
    "predicted": "predicted (or probs/logits to derive it)",
}


def as_generator(rng: Any) -> np.random.Generator:
    """``rng`` as a numpy Generator: a Generator is used as is, an int seeds a new one.

    Raises:
        InvalidInputError: ``rng`` is neither None, an int, a SeedSequence nor a Generator.
    """
    if isinstance(rng, (bool, float)):
        raise InvalidInputError(f"rng must be a numpy Generator, an int seed or None, got {rng!r}")
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"rng must be a numpy Generator, an int seed or None, got {rng!r}"
        ) from exc


@dataclass(frozen=True)
class PoolInputs:
    """What a pool strategy sees: ``size`` items, which may be chosen, and their arrays.

    Attributes:
        size: ``N``, the number of items in the pool.
        available: ``(N,)`` bool, True where an item may be selected; the others are already
            selected or labeled (``exclude``).
        embeddings: ``(N, D)`` float32 L2-normalised embeddings, or None.
        probs: ``(N, C)`` float64 class probabilities, or None.
        predicted: ``(N,)`` int64 predicted class ids, or None.
    """

    size: int
    available: BoolArray
    embeddings: FloatArray | None = None
    probs: FloatArray | None = None
    predicted: IntArray | None = None

    @property
    def excluded(self) -> IntArray:
        """``(M,)`` int64 indices of the items already selected or labeled."""
        return np.flatnonzero(~self.available).astype(np.int64)

    @property
    def n_available(self) -> int:
        """How many items may still be selected."""
        return int(self.available.sum())

    def require_embeddings(self, strategy: str) -> FloatArray:
        """The embeddings, or an error naming them. Raises: InvalidInputError."""
        if self.embeddings is None:
            raise missing_input(strategy, "embeddings")
        return self.embeddings

    def require_probs(self, strategy: str) -> FloatArray:
        """The class probabilities, or an error naming them. Raises: InvalidInputError."""
        if self.probs is None:
            raise missing_input(strategy, "probs")
        return self.probs

    def require_predicted(self, strategy: str) -> IntArray:
        """The predicted classes, or an error naming them. Raises: InvalidInputError."""
        if self.predicted is None:
            raise missing_input(strategy, "predicted")
        return self.predicted


def missing_input(strategy: str, name: str) -> InvalidInputError:
    """The error for a strategy called without an input it needs."""
    return InvalidInputError(
        f"strategy {strategy!r} needs {name}: pass {_HOW_TO_GIVE.get(name, name)}"
    )


def check_count(value: Any, name: str, *, minimum: int = 1) -> int:
    """A strategy parameter that must be an integer ``>= minimum``. Raises: InvalidInputError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_strength(value: Any, name: str) -> float:
    """A strategy parameter that must be a finite float ``>= 0``. Raises: InvalidInputError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")
    out = float(value)
    if not np.isfinite(out) or out < 0:
        raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")
    return out


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """A strategy parameter that must be one of ``choices``. Raises: InvalidInputError."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidInputError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _predicted_array(predicted: Any, n_classes: int | None) -> IntArray:
    arr = np.asarray(predicted)
    if arr.ndim != 1:
        raise InvalidInputError(f"predicted must have 1 dimension, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(f"predicted must hold integer class ids, got dtype {arr.dtype}")
    out = arr.astype(np.int64)
    if out.size and out.min() < 0:
        raise InvalidInputError(f"predicted class ids must be >= 0, got {int(out.min())}")
    if n_classes is not None and out.size and out.max() >= n_classes:
        raise InvalidInputError(
            f"predicted holds class {int(out.max())} but probs have {n_classes} classes"
        )
    return out


def _available_mask(exclude: Any, n: int) -> BoolArray:
    available = np.ones(n, dtype=bool)
    if exclude is None:
        return available
    arr = np.asarray(exclude)
    if arr.dtype == np.bool_:
        if arr.shape != (n,):
            raise InvalidInputError(
                f"exclude as a boolean mask must have shape ({n},), got {arr.shape}"
            )
        return ~arr
    if arr.size == 0:
        return available
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(
            "exclude must be a boolean mask or a 1-D array of integer indices, "
            f"got dtype {arr.dtype} and shape {arr.shape}"
        )
    if arr.min() < 0 or arr.max() >= n:
        bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise InvalidInputError(f"exclude holds index {bad}, outside the pool of {n} items")
    available[arr] = False
    return available


def build_pool_inputs(
    *,
    embeddings: Any = None,
    probs: Any = None,
    logits: Any = None,
    predicted: Any = None,
    exclude: Any = None,
) -> PoolInputs:
    """Check every given array once and bundle them.

    Args:
        embeddings: ``(N, D)`` finite floats, or None.
        probs: ``(N, C)`` class probabilities, or None; not together with ``logits``.
        logits: ``(N, C)`` logits, or None.
        predicted: ``(N,)`` non-negative integer class ids, or None (then the argmax of the
            probabilities when they are given).
        exclude: indices already selected or labeled, as a ``(N,)`` bool mask or an index array.

    Raises:
        InvalidInputError: malformed arrays, arrays that disagree on ``N``, or no array at all.
    """
    sizes: dict[str, int] = {}
    emb: FloatArray | None = None
    if embeddings is not None:
        emb = l2_normalize(embeddings)
        if emb.ndim != 2:
            raise InvalidInputError(f"embeddings must have 2 dimensions, got shape {emb.shape}")
        sizes["embeddings"] = emb.shape[0]
    p: FloatArray | None = None
    if probs is not None and logits is not None:
        raise InvalidInputError("give probs or logits, not both")
    if probs is not None or logits is not None:
        p = probabilities(logits=logits, probs=probs)
        sizes["logits" if logits is not None else "probs"] = p.shape[0]
    pred: IntArray | None = None
    if predicted is not None:
        pred = _predicted_array(predicted, None if p is None else p.shape[1])
        sizes["predicted"] = pred.shape[0]
    elif p is not None:
        pred = p.argmax(axis=1).astype(np.int64)
    if not sizes:
        raise InvalidInputError(
            "the pool is empty of inputs: pass at least one of embeddings, probs, logits, predicted"
        )
    if len(set(sizes.values())) > 1:
        raise InvalidInputError(f"inputs disagree on the pool size: {sizes}")
    n = next(iter(sizes.values()))
    return PoolInputs(
        size=n,
        available=_available_mask(exclude, n),
        embeddings=emb,
        probs=p,
        predicted=pred,
    )
