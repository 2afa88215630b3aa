"""The ``VectorIndex`` interface: cosine top-k search over embeddings with caller-chosen ids.

Every implementation (:class:`~curator.index.BruteForceIndex`, the exact oracle, and
:class:`~curator.index.FaissIndex`, the one the server runs) shares this contract:

- Vectors have a fixed dimension ``dim``. They are L2-normalised on the way in
  (:func:`curator.diversity.l2_normalize`), so the inner product of stored vectors and queries is
  their cosine similarity. Rows with zero (or underflowing) norm are refused: their cosine is
  undefined.
- Ids are non-negative 64-bit integers chosen by the caller; ``-1`` marks padding in results.
  Adding an id that is already stored raises :class:`~curator.errors.InvalidInputError` (no
  upsert: call :meth:`VectorIndex.remove` first to replace a vector), and so does an id repeated
  within one call. A removed id may be added again.
- :meth:`VectorIndex.search` returns ``(similarities, ids)``, both ``(Q, k)``, each row sorted by
  similarity descending, similarities clipped to ``[-1, 1]``; rows are padded with ``-inf`` and
  ``-1`` when fewer than ``k`` vectors are stored.
- Inputs are checked here, once, and implementations receive clean arrays: float32 vectors of
  the right width with unit norm, int64 ids.

Indexes are not thread-safe: guard one with a lock if several threads mutate it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Self

import numpy as np
import numpy.typing as npt

from curator.diversity import l2_normalize
from curator.errors import InvalidInputError

__all__ = [
    "FloatMatrix",
    "IdArray",
    "VectorIndex",
    "atomic_write",
    "check_dim",
    "open_index_file",
]

IdArray = npt.NDArray[np.int64]
FloatMatrix = npt.NDArray[np.float32]

_INT64_MAX = np.iinfo(np.int64).max
_NORM_TOLERANCE = 1e-3


def check_dim(dim: Any) -> int:
    """Return ``dim`` as an int after checking it is a positive integer.

    Raises:
        InvalidInputError: ``dim`` is not a positive integer.
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
        raise InvalidInputError(f"dim must be a positive integer, got {dim!r}")
    return int(dim)


class VectorIndex(ABC):
    """Cosine similarity top-k search over L2-normalised float32 vectors with int64 ids.

    Subclasses implement the underscored hooks, which receive validated arrays; the public
    methods here do the checking.
    """

    @property
    @abstractmethod
    def dim(self) -> int:
        """Dimension ``D`` of every stored vector."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of vectors stored (removed ones not counted)."""

    @abstractmethod
    def _has(self, id_: int) -> bool:
        """Whether ``id_`` (a non-negative int) is stored."""

    def _stored_among(self, ids: IdArray) -> IdArray:
        """The entries of ``ids`` that are stored; override with a vectorised lookup."""
        return np.array([i for i in ids.tolist() if self._has(i)], np.int64)

    @abstractmethod
    def _add(self, ids: IdArray, vectors: FloatMatrix) -> None:
        """Store ``vectors`` ``(N, D)`` unit-norm float32 under new, unique ``ids`` ``(N,)``."""

    @abstractmethod
    def _search(self, queries: FloatMatrix, k: int) -> tuple[FloatMatrix, IdArray]:
        """Top-``k`` of unit-norm ``queries`` ``(Q, D)``, ``1 <= k <= len(self)``.

        Returns new ``(Q, k)`` float32 similarities and int64 ids, rows sorted descending, ties
        by ascending id; ``-inf`` / ``-1`` where fewer than ``k`` were found.
        """

    @abstractmethod
    def _remove(self, ids: IdArray) -> int:
        """Remove the stored ids among unique ``ids``; return how many were stored."""

    @abstractmethod
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to the file ``path`` atomically (temp file, then ``os.replace``)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read an index written by :meth:`save`.

        Raises:
            InvalidInputError: the file is missing or was not written by this class.
        """

    def __contains__(self, id_: object) -> bool:
        """Whether ``id_`` is stored; anything that is not an integer id is never stored."""
        if isinstance(id_, bool) or not isinstance(id_, (int, np.integer)):
            return False
        return 0 <= int(id_) <= _INT64_MAX and self._has(int(id_))

    def contains(self, id_: object) -> bool:
        """Same as ``id_ in index``."""
        return id_ in self

    def add(self, ids: Any, vectors: Any) -> None:
        """Store ``vectors`` under ``ids``.

        Args:
            ids: ``(N,)`` non-negative integers, unique within the call and not yet stored.
            vectors: ``(N, D)`` finite floats with non-zero norm; normalised before storing.

        Raises:
            InvalidInputError: ids not integer, negative, repeated or already stored; vectors
                of the wrong shape or dimension, non-numeric, NaN/inf or zero norm.
        """
        id_arr = _check_ids(ids, "ids", unique=True)
        vec = self._check_vectors(vectors, "vectors")
        if len(vec) != len(id_arr):
            raise InvalidInputError(
                f"ids has {len(id_arr)} entries but vectors has {len(vec)} rows; expected one id "
                "per vector"
            )
        stored = self._stored_among(id_arr)
        if len(stored):
            raise InvalidInputError(
                f"{len(stored)} id(s) already stored, e.g. {stored[:5].tolist()}; remove them "
                "first to replace their vectors"
            )
        if len(id_arr):
            self._add(id_arr, vec)

    def search(self, queries: Any, k: int) -> tuple[FloatMatrix, IdArray]:
        """The ``k`` stored vectors most cosine-similar to each query.

        Args:
            queries: ``(Q, D)`` finite floats with non-zero norm.
            k: positive number of neighbours per query.

        Returns:
            ``(similarities, ids)``: ``(Q, k)`` float32 in ``[-1, 1]`` sorted descending per
            row and ``(Q, k)`` int64, padded with ``-inf`` / ``-1`` past the stored count.

        Raises:
            InvalidInputError: ``k`` not a positive integer; queries of the wrong shape or
                dimension, non-numeric, NaN/inf or zero norm.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise InvalidInputError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        q = self._check_vectors(queries, "queries")
        found = min(k, len(self))
        if found and len(q):
            s, i = self._search(q, found)
            np.clip(s, -1.0, 1.0, out=s)
            if i.min() < 0:
                s[i < 0] = -np.inf
            if found == k:
                return s, i
        sims = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        if found and len(q):
            sims[:, :found], ids[:, :found] = s, i
        return sims, ids

    def remove(self, ids: Any) -> int:
        """Remove ``ids``; ids not stored (and repeats within the call) are ignored.

        Args:
            ids: ``(N,)`` non-negative integers.

        Returns:
            How many vectors were removed.

        Raises:
            InvalidInputError: ids not a 1-D array of non-negative integers.
        """
        id_arr = _check_ids(ids, "ids", unique=False)
        if not len(id_arr) or not len(self):
            return 0
        return self._remove(np.unique(id_arr))

    def _check_vectors(self, vectors: Any, name: str) -> FloatMatrix:
        arr = np.asarray(vectors)
        if arr.ndim != 2:
            raise InvalidInputError(
                f"{name} must have 2 dimensions (N, {self.dim}), got shape {arr.shape}"
            )
        if arr.shape[1] != self.dim:
            raise InvalidInputError(
                f"{name} have dimension {arr.shape[1]} but the index has dimension {self.dim}"
            )
        unit = np.ascontiguousarray(l2_normalize(arr), dtype=np.float32)
        norms = np.einsum("ij,ij->i", unit, unit)
        bad = np.abs(norms - 1.0) > _NORM_TOLERANCE
        if bad.any():
            raise InvalidInputError(
                f"{name} has {int(bad.sum())} row(s) with zero norm (first at row "
                f"{int(np.argmax(bad))}); cosine similarity needs a non-zero vector"
            )
        return unit


def _check_ids(ids: Any, name: str, *, unique: bool) -> IdArray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be a 1-D array of integers, got shape {arr.shape}")
    if arr.size == 0:
        return np.empty(0, np.int64)
    if arr.dtype.kind not in "iu":
        raise InvalidInputError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and int(arr.max()) > _INT64_MAX:
        raise InvalidInputError(f"{name} must fit in int64, got {int(arr.max())}")
    out = arr.astype(np.int64)
    if int(out.min()) < 0:
        raise InvalidInputError(
            f"{name} must be non-negative (-1 marks padding), got {int(out.min())}"
        )
    if unique:
        values, counts = np.unique(out, return_counts=True)
        if len(values) != len(out):
            repeated = values[counts > 1][:5].tolist()
            raise InvalidInputError(f"{name} must be unique within a call, repeated: {repeated}")
    return out


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temp file beside ``path``, fsync it, then ``os.replace`` it into place.

    A crash leaves either the old file or the new one, never a torn one.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def open_index_file(path: str | os.PathLike[str], kind: str) -> Iterator[IO[bytes]]:
    """Open a saved index for reading, turning a missing file into InvalidInputError."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InvalidInputError(f"cannot read {kind} file {os.fspath(path)!r}: {exc}") from exc
    with f:
        yield f
