"""Embedding geometry: L2 normalisation, nearest cosine similarity, novelty.

Embeddings are compared by cosine similarity, i.e. the inner product of L2-normalised vectors.
Novelty of a frame is ``1 - max cosine similarity`` to a reference set (the frames already kept):
1.0 when the set is empty, 0.0 for an exact copy, up to 2.0 for an opposite vector.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from curator._validate import FloatArray, float_array
from curator.errors import InvalidInputError

__all__ = ["l2_normalize", "max_similarity", "novelty"]

_CHUNK = 4096


def l2_normalize(embeddings: Any, *, eps: float = 1e-12) -> FloatArray:
    """Scale each row to unit L2 norm; all-zero rows stay zero.

    Args:
        embeddings: ``(N, D)`` or ``(D,)`` finite floats.

    Returns:
        float32 array of the same shape.

    Raises:
        InvalidInputError: wrong number of dimensions or NaN/inf.
    """
    x = np.asarray(embeddings)
    x = float_array(x, "embeddings", 2 if x.ndim != 1 else 1, dtype=np.float32)
    # scale by the largest magnitude first so the norm neither overflows nor underflows
    scale = np.abs(x).max(axis=-1, keepdims=True)
    scaled = x / np.where(scale > 0, scale, 1.0)
    norms = np.linalg.norm(scaled, axis=-1, keepdims=True)
    normalized = scaled / np.maximum(norms, eps)
    return normalized.astype(np.float32, copy=False)  # type: ignore[no-any-return]


def max_similarity(queries: Any, reference: Any) -> tuple[FloatArray, np.ndarray]:
    """Highest cosine similarity of each query to the reference set, and which row it was.

    Computed in chunks so memory stays bounded for large sets.

    Args:
        queries: ``(N, D)`` embeddings.
        reference: ``(M, D)`` embeddings; ``M`` may be 0.

    Returns:
        ``(similarity, index)``: ``(N,)`` float32 in ``[-1, 1]`` and ``(N,)`` int64 rows of
        ``reference``; ``(-inf, -1)`` where the reference set is empty.

    Raises:
        InvalidInputError: shapes disagree or values are not finite.
    """
    q = l2_normalize(np.atleast_2d(np.asarray(queries)))
    r = np.asarray(reference)
    if r.size == 0:
        if r.ndim == 2 and r.shape[1] not in (0, q.shape[1]):
            raise InvalidInputError(
                f"queries have dimension {q.shape[1]} but reference has {r.shape[1]}"
            )
        return np.full(len(q), -np.inf, np.float32), np.full(len(q), -1, np.int64)
    r = l2_normalize(np.atleast_2d(r))
    if r.shape[1] != q.shape[1]:
        raise InvalidInputError(
            f"queries have dimension {q.shape[1]} but reference has {r.shape[1]}"
        )
    best = np.empty(len(q), np.float32)
    where = np.empty(len(q), np.int64)
    for start in range(0, len(q), _CHUNK):
        sims = q[start : start + _CHUNK] @ r.T
        idx = sims.argmax(axis=1)
        where[start : start + len(idx)] = idx
        best[start : start + len(idx)] = sims[np.arange(len(idx)), idx]
    return np.clip(best, -1.0, 1.0), where


def novelty(embeddings: Any, reference: Any) -> FloatArray:
    """``1 - max cosine similarity`` of each embedding to ``reference``.

    Args:
        embeddings: ``(N, D)`` embeddings to score.
        reference: ``(M, D)`` embeddings already kept; may be empty.

    Returns:
        ``(N,)`` float32 in ``[0, 2]``; 1.0 everywhere when ``reference`` is empty.

    Raises:
        InvalidInputError: shapes disagree or values are not finite.
    """
    sim, _ = max_similarity(embeddings, reference)
    if np.isneginf(sim).all():
        return np.ones(len(sim), np.float32)
    return (1.0 - sim).astype(np.float32)
