"""``BruteForceIndex``: exact cosine search in numpy, the oracle every other index is tested
against.

Vectors are kept sorted by id, so ties are broken deterministically: on equal similarity the
smaller id ranks first. Search costs ``O(Q * N * D)``; adding or removing re-sorts, ``O(N log N)``
per call. Meant for tests, notebooks and small sets (up to ~100k vectors).
"""

from __future__ import annotations

import os
from typing import IO, Any, Self

import numpy as np

from curator.errors import InvalidInputError
from curator.index.base import (
    FloatMatrix,
    IdArray,
    VectorIndex,
    atomic_write,
    check_dim,
    open_index_file,
)

__all__ = ["BruteForceIndex"]

_FORMAT = "curator.index.BruteForceIndex/1"
_CHUNK_ELEMENTS = 1 << 24  # similarities computed at most this many at a time (64 MiB float32)


class BruteForceIndex(VectorIndex):
    """Exact cosine top-k by a full matrix product; ties broken by ascending id.

    Args:
        dim: dimension ``D`` of the vectors.

    Raises:
        InvalidInputError: ``dim`` is not a positive integer.
    """

    def __init__(self, dim: int) -> None:
        self._dim = check_dim(dim)
        self._ids: IdArray = np.empty(0, np.int64)
        self._vectors: FloatMatrix = np.empty((0, self._dim), np.float32)

    @property
    def dim(self) -> int:
        """Dimension ``D`` of every stored vector."""
        return self._dim

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"BruteForceIndex(dim={self._dim}, len={len(self)})"

    def _has(self, id_: int) -> bool:
        pos = int(np.searchsorted(self._ids, id_))
        return pos < len(self._ids) and int(self._ids[pos]) == id_

    def _stored_among(self, ids: IdArray) -> IdArray:
        return ids[np.isin(ids, self._ids)]

    def _add(self, ids: IdArray, vectors: FloatMatrix) -> None:
        all_ids = np.concatenate([self._ids, ids])
        order = np.argsort(all_ids, kind="stable")
        self._ids = all_ids[order]
        self._vectors = np.concatenate([self._vectors, vectors])[order]

    def _remove(self, ids: IdArray) -> int:
        gone = np.isin(self._ids, ids)
        self._ids = self._ids[~gone]
        self._vectors = self._vectors[~gone]
        return int(gone.sum())

    def _search(self, queries: FloatMatrix, k: int) -> tuple[FloatMatrix, IdArray]:
        sims_out = np.empty((len(queries), k), np.float32)
        ids_out = np.empty((len(queries), k), np.int64)
        chunk = max(1, _CHUNK_ELEMENTS // len(self._ids))
        for start in range(0, len(queries), chunk):
            sims = queries[start : start + chunk] @ self._vectors.T
            for row, row_sims in enumerate(sims, start=start):
                top = _top_k_by_similarity_then_position(row_sims, k)
                sims_out[row] = row_sims[top]
                ids_out[row] = self._ids[top]
        return sims_out, ids_out

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ids and vectors to the ``.npz`` file ``path`` atomically.

        Raises:
            OSError: the file cannot be written.
        """

        def write(f: IO[bytes]) -> None:
            np.savez(
                f,
                format=np.array(_FORMAT),
                dim=np.array(self._dim),
                ids=self._ids,
                vectors=self._vectors,
            )

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read an index written by :meth:`save`.

        Raises:
            InvalidInputError: the file is missing, unreadable or not a saved
                ``BruteForceIndex``.
        """
        with open_index_file(path, "BruteForceIndex") as f:
            try:
                with np.load(f, allow_pickle=False) as data:
                    fmt = str(data["format"])
                    dim = int(data["dim"])
                    ids = np.asarray(data["ids"], np.int64)
                    vectors = np.asarray(data["vectors"], np.float32)
            except (ValueError, KeyError, OSError) as exc:
                raise InvalidInputError(
                    f"{os.fspath(path)!r} is not a saved BruteForceIndex: {exc}"
                ) from exc
        if fmt != _FORMAT or vectors.shape != (len(ids), dim):
            raise InvalidInputError(
                f"{os.fspath(path)!r} is not a saved BruteForceIndex (format {fmt!r}, "
                f"vectors {vectors.shape}, ids {ids.shape}); expected format {_FORMAT!r}"
            )
        index = cls(dim)
        index._ids, index._vectors = ids, vectors
        return index


def _top_k_by_similarity_then_position(sims: Any, k: int) -> Any:
    """Positions of the ``k`` largest ``sims``, ties broken by smaller position first."""
    n = len(sims)
    if k >= n:
        return np.argsort(-sims, kind="stable")[:k]
    kth_largest = np.partition(sims, n - k)[n - k]
    candidates = np.flatnonzero(sims >= kth_largest)  # ascending positions
    return candidates[np.argsort(-sims[candidates], kind="stable")[:k]]
