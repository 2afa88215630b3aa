"""Near-duplicate decisions for one batch: pure functions over arrays and a read-only index.

Frame ``i`` of a batch is compared with two sets: the frames already accepted for its model
version (the index; its best match comes from one batched search) and the frames before it in
the batch that were themselves decided accepted (an exact ``(N, N)`` Gram matrix, computed
``_GRAM_ROWS`` rows at a time). It is a duplicate of the most similar of them when that
similarity is at least ``threshold - SIMILARITY_TOLERANCE``. On equal similarity a stored frame
wins over a batch frame, and an earlier batch frame over a later one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from curator._validate import float_array
from curator.dedup import SIMILARITY_TOLERANCE
from curator.diversity import l2_normalize
from curator.errors import InvalidInputError
from curator.index import VectorIndex

__all__ = [
    "SIMILARITY_TOLERANCE",
    "DedupDecision",
    "check_ids",
    "check_threshold",
    "decide_batch",
    "search_accepted",
    "stored_among",
    "unit_rows",
]


_GRAM_ROWS = 1024
Ids = npt.NDArray[np.int64]
Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class DedupDecision:
    """The near-dedup decision for one frame.

    Attributes:
        duplicate_of_id: id of the accepted frame this one duplicates, or None (accepted, or a
            duplicate of a batch frame when ``check`` got no ids).
        similarity: cosine similarity to the most similar accepted frame (the original, for a
            duplicate); None when there was nothing to compare with.
        batch_position_of_original: position in the same batch of the frame this one
            duplicates, or None.
        threshold: the threshold the decision used.
    """

    duplicate_of_id: int | None
    similarity: float | None
    batch_position_of_original: int | None
    threshold: float

    @property
    def is_duplicate(self) -> bool:
        """Whether the frame duplicates an accepted frame (stored or earlier in its batch)."""
        return self.duplicate_of_id is not None or self.batch_position_of_original is not None


def check_threshold(threshold: Any) -> float:
    """``threshold`` as a float after checking it lies in ``[-1, 1]``.

    Raises:
        InvalidInputError: not a number, or outside ``[-1, 1]``.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
        raise InvalidInputError(f"threshold must be a number in [-1, 1], got {threshold!r}")
    if not -1.0 <= float(threshold) <= 1.0:
        raise InvalidInputError(f"threshold must lie in [-1, 1], got {threshold}")
    return float(threshold)


def unit_rows(embeddings: Any) -> Matrix:
    """``(N, D)`` embeddings as L2-normalised float32 rows.

    Raises:
        InvalidInputError: not a finite 2-D numeric array, or a row of zero norm.
    """
    x = float_array(embeddings, "embeddings", 2, dtype=np.float32)
    unit = np.asarray(l2_normalize(x), dtype=np.float32)
    zero = np.abs(np.einsum("ij,ij->i", unit, unit) - 1.0) > 1e-3
    if zero.any():
        raise InvalidInputError(
            f"embeddings row {int(np.argmax(zero))} has zero norm; cosine similarity needs a "
            "non-zero vector"
        )
    return unit


def check_ids(ids: Any, n: int) -> Ids:
    """``ids`` as ``(n,)`` int64 after checking they are unique non-negative integers.

    Raises:
        InvalidInputError: another shape or length, not integers, negative, over int64, or
            repeated.
    """
    arr = np.asarray(ids)
    if arr.ndim != 1 or len(arr) != n:
        raise InvalidInputError(f"ids must be a 1-D array of {n} integers, got shape {arr.shape}")
    if n and (arr.dtype.kind not in "iu" or int(arr.min()) < 0 or int(arr.max()) >= 2**63):
        raise InvalidInputError(f"ids must be non-negative int64 values, got {arr[:5].tolist()}")
    out = arr.astype(np.int64)
    if len(np.unique(out)) != n:
        raise InvalidInputError("ids must be unique within a call")
    return out


def stored_among(index: VectorIndex | None, ids: Ids) -> npt.NDArray[np.bool_]:
    """``(N,)`` whether each id is stored in ``index``."""
    if index is None or not len(index):
        return np.zeros(len(ids), bool)
    return np.array([i in index for i in ids.tolist()], bool)


def search_accepted(
    index: VectorIndex | None, x: Matrix, ids: Ids | None
) -> tuple[npt.NDArray[np.float32], Ids]:
    """Best stored match of each unit row: ``(similarity (N,), id (N,))``, ``(-inf, -1)`` if none.

    A row whose id is stored does not match its own vector.
    """
    sims, found = np.full(len(x), -np.inf, np.float32), np.full(len(x), -1, np.int64)
    if index is None or not len(index) or not len(x):
        return sims, found
    if ids is None or not stored_among(index, ids).any():
        s, i = index.search(x, 1)
        return s[:, 0], i[:, 0]
    s, i = index.search(x, 2)  # a stored frame's own vector is its first match: skip it
    s[i == ids[:, None]] = -np.inf
    best = np.argmax(s, axis=1)[:, None]
    sims, found = np.take_along_axis(s, best, 1)[:, 0], np.take_along_axis(i, best, 1)[:, 0]
    found[np.isneginf(sims)] = -1
    return sims, found


def decide_batch(
    x: Matrix,
    stored_sim: npt.NDArray[np.float32],
    stored_id: Ids,
    threshold: float,
    *,
    ids: Ids | None = None,
    replayed: npt.NDArray[np.bool_] | None = None,
) -> list[DedupDecision]:
    """Decide each frame of a batch in order.

    Args:
        x: ``(N, D)`` unit rows.
        stored_sim: ``(N,)`` similarity of each row's best stored match (``-inf``: none).
        stored_id: ``(N,)`` id of that match (``-1``: none).
        threshold: the duplicate threshold.
        ids: optional ``(N,)`` ids of the batch frames, to name in-batch originals.
        replayed: optional ``(N,)`` frames already stored, accepted again whatever they match.

    Returns:
        One :class:`DedupDecision` per row.
    """
    decisions: list[DedupDecision] = []
    accepted: list[int] = []
    cutoff = threshold - SIMILARITY_TOLERANCE
    gram = np.empty((0, 0), np.float32)
    for i in range(len(x)):
        if i % _GRAM_ROWS == 0:  # similarities of the next rows to every frame before them
            gram = x[i : i + _GRAM_ROWS] @ x[: i + _GRAM_ROWS].T
        sim, original_id, position = float(stored_sim[i]), int(stored_id[i]), None
        if accepted:
            row = gram[i % _GRAM_ROWS, accepted]
            j = int(np.argmax(row))
            if row[j] > sim:
                sim, position = float(np.clip(row[j], -1.0, 1.0)), accepted[j]
                original_id = int(ids[position]) if ids is not None else -1
        found = sim != -np.inf
        if found and sim >= cutoff and not (replayed is not None and replayed[i]):
            original = original_id if original_id >= 0 else None
            decisions.append(DedupDecision(original, sim, position, threshold))
        else:
            accepted.append(i)
            decisions.append(DedupDecision(None, sim if found else None, None, threshold))
    return decisions
