"""Exact and near-duplicate grouping of frames.

- Exact duplicates share the sha256 of their encoded bytes (the wire ``frame_id``).
- Near duplicates have cosine similarity ``>= threshold`` (within :data:`SIMILARITY_TOLERANCE`)
  between their embeddings. Groups are the
  connected components of that relation, so grouping is symmetric (order of the input does not
  change the groups) and idempotent (the representatives of the groups never group again).

Each group has one representative: the member with the highest ``value`` (the frame's selection
value, e.g. uncertainty), ties broken by the lowest index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from curator._validate import float_array
from curator.diversity import l2_normalize
from curator.errors import InvalidInputError

__all__ = [
    "DuplicateGroup",
    "exact_groups",
    "near_duplicate_groups",
    "representatives",
    "sha256_hex",
]

_CHUNK = 2048
SIMILARITY_TOLERANCE = 1e-5
"""float32 cosine of a vector with itself can fall short of 1 by a few ulps; similarities within
this tolerance of the threshold count as reaching it, so copies group even at threshold 1.0.
The server's fleet dedup uses the same slack."""


def sha256_hex(data: bytes) -> str:
    """The sha256 of ``data`` as 64 lowercase hex characters (a frame's id)."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class DuplicateGroup:
    """Indices of frames that duplicate each other, and the one to keep.

    Attributes:
        representative: index of the member to keep.
        members: all indices in the group, ascending, the representative included.
    """

    representative: int
    members: tuple[int, ...]

    @property
    def duplicates(self) -> tuple[int, ...]:
        """Members other than the representative."""
        return tuple(m for m in self.members if m != self.representative)


def _groups_from_labels(labels: np.ndarray, values: np.ndarray) -> list[DuplicateGroup]:
    groups: list[DuplicateGroup] = []
    if len(labels) == 0:
        return groups
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for members in np.split(order, bounds):
        members = np.sort(members)
        # highest value first, then lowest index: lexsort keys are last-major
        best = members[np.lexsort((members, -values[members]))[0]]
        groups.append(DuplicateGroup(int(best), tuple(int(m) for m in members)))
    groups.sort(key=lambda g: g.members[0])
    return groups


def _values(values: Any, n: int) -> np.ndarray:
    if values is None:
        return np.zeros(n)
    v = float_array(values, "values", 1)
    if len(v) != n:
        raise InvalidInputError(f"values has {len(v)} entries for {n} frames")
    return v


def exact_groups(keys: Sequence[str | bytes], values: Any = None) -> list[DuplicateGroup]:
    """Group frames whose keys (sha256 ids or raw bytes) are equal.

    Args:
        keys: one hashable key per frame; raw ``bytes`` are hashed with sha256 first.
        values: optional ``(N,)`` value per frame, to choose representatives.

    Returns:
        Every group, singletons included, ordered by their first member.
    """
    ids = [sha256_hex(k) if isinstance(k, bytes) else k for k in keys]
    first: dict[str, int] = {}
    labels = np.array([first.setdefault(k, len(first)) for k in ids], dtype=np.int64)
    return _groups_from_labels(labels, _values(values, len(ids)))


def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root


def near_duplicate_groups(
    embeddings: Any, threshold: float, values: Any = None
) -> list[DuplicateGroup]:
    """Group frames whose embeddings have cosine similarity ``>= threshold`` (transitively).

    Exact pairwise comparison in chunks: ``O(N^2 D)`` time and ``O(chunk * N)`` memory. For
    fleet-scale sets use a :class:`curator.index.VectorIndex` instead.

    Args:
        embeddings: ``(N, D)`` embeddings of one embedding model version.
        threshold: similarity in ``[-1, 1]`` at or above which two frames are duplicates.
        values: optional ``(N,)`` value per frame, to choose representatives.

    Returns:
        Every group, singletons included, ordered by their first member.

    Raises:
        InvalidInputError: malformed embeddings or values, threshold outside ``[-1, 1]``.
    """
    if not -1.0 <= float(threshold) <= 1.0:
        raise InvalidInputError(f"threshold must lie in [-1, 1], got {threshold}")
    x = l2_normalize(float_array(embeddings, "embeddings", 2))
    n = len(x)
    v = _values(values, n)
    parent = np.arange(n)
    for start in range(0, n, _CHUNK):
        sims = x[start : start + _CHUNK] @ x.T
        rows, cols = np.nonzero(sims >= np.float32(threshold - SIMILARITY_TOLERANCE))
        for i, j in zip(rows + start, cols, strict=True):
            if i != j:
                ri, rj = _find(parent, int(i)), _find(parent, int(j))
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    labels = np.array([_find(parent, i) for i in range(n)], dtype=np.int64)
    return _groups_from_labels(labels, v)


def representatives(groups: Iterable[DuplicateGroup]) -> np.ndarray:
    """The representative index of each group, ascending, as int64."""
    return np.sort(np.array([g.representative for g in groups], dtype=np.int64))
