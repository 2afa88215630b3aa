"""Boundary checks for arrays: dtype, shape and finiteness, checked once with a clear error."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from curator.errors import InvalidInputError

FloatArray = npt.NDArray[np.floating[Any]]


def float_array(x: Any, name: str, ndim: int, *, dtype: type = np.float64) -> FloatArray:
    """Return ``x`` as a finite float array with ``ndim`` dimensions.

    Raises:
        InvalidInputError: ``x`` is not numeric, has another number of dimensions, or holds
            NaN or inf.
    """
    try:
        arr: FloatArray = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a numeric array, got {type(x).__name__}") from exc
    if arr.ndim != ndim:
        raise InvalidInputError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise InvalidInputError(f"{name} holds {bad} NaN or inf value(s)")
    return arr


def check_k(k: int, n: int, name: str = "k") -> int:
    """Check that ``k`` is a non-negative integer; return ``min(k, n)``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise InvalidInputError(f"{name} must be a non-negative integer, got {k!r}")
    return min(int(k), n)
