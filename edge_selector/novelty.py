"""Novelty against the frames kept recently: :class:`RecentEmbeddings`.

A frame is novel when nothing kept lately looks like it: ``novelty = 1 - max cosine similarity``
to the last ``capacity`` kept embeddings of the same model version (1.0 while the set is empty).
The set is a ring: past ``capacity`` the oldest ``capacity // 64`` vectors are dropped at once,
so it always holds between ``capacity - capacity // 64`` and ``capacity`` of the newest.

Search has to stay far below the cost of inference at tens of thousands of vectors. Up to
``train_size`` vectors the search is exact (one matrix product). Past that the set moves to a
FAISS inverted-file index (``IndexIVFFlat``, inner product, ``nlist ~ sqrt(capacity)`` lists
trained on the vectors held then, ``nprobe`` lists searched): adds cost a few microseconds,
dropping the oldest block is one pass over the lists, and a query reads about
``nprobe / nlist`` of the set. Near-duplicates fall in the list of their original, so the
similarities that matter (the high ones) are found exactly; a far neighbour in an unvisited list
can be missed, which only makes an already novel frame look a little more novel. The test suite
checks novelty against brute force.

A different ``model_version`` starts an empty set: embeddings of two models are not comparable.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from curator._optional import require
from curator.diversity import l2_normalize
from curator.errors import InvalidInputError

__all__ = ["RecentEmbeddings"]

FloatArray = npt.NDArray[np.float32]

_TRAIN_POINTS_PER_LIST = 39  # FAISS warns below 39 training points per centroid


class RecentEmbeddings:
    """The last ``capacity`` kept embeddings of one model version, searched for novelty.

    Args:
        capacity: most vectors held (>= 1).
        nprobe: inverted lists searched per query once the set is indexed.
        train_size: vectors searched exactly before the inverted file is built; default
            ``39 * nlist`` (what FAISS asks for to train ``nlist`` centroids), at most
            ``capacity``.

    Not thread-safe: the selector's loop owns it.

    Raises:
        InvalidInputError: a parameter that is not a positive integer.
    """

    def __init__(
        self, capacity: int = 50_000, *, nprobe: int = 8, train_size: int | None = None
    ) -> None:
        self.capacity = _positive(capacity, "capacity")
        self.nprobe = _positive(nprobe, "nprobe")
        self.nlist = max(1, int(math.sqrt(self.capacity)))
        default_train = min(self.capacity, _TRAIN_POINTS_PER_LIST * self.nlist)
        self.train_size = (
            default_train if train_size is None else _positive(train_size, "train_size")
        )
        self.drop_block = max(1, self.capacity // 64)
        self.model_version: str | None = None
        self._reset(None)

    def _reset(self, model_version: str | None) -> None:
        self.model_version = model_version
        self._dim: int | None = None
        self._exact = np.empty((0, 0), np.float32)
        self._ivf: Any = None
        self._quantizer: Any = None  # the IVF index does not keep its quantizer alive
        self._oldest = 0  # id of the oldest vector held
        self._next = 0  # id the next vector gets

    def __len__(self) -> int:
        return self._next - self._oldest

    @property
    def indexed(self) -> bool:
        """Whether the set has moved to the inverted-file index."""
        return self._ivf is not None

    def use(self, model_version: str) -> None:
        """Score against ``model_version``'s embeddings; a new version empties the set."""
        if model_version != self.model_version:
            self._reset(model_version)

    def similarity(self, embeddings: Any) -> FloatArray:
        """Highest cosine similarity of each embedding to the set; ``-inf`` when it is empty.

        Args:
            embeddings: ``(N, D)`` finite embeddings (normalised here).

        Raises:
            InvalidInputError: a wrong shape, a dimension other than the set's, NaN or inf.
        """
        q = self._check(embeddings)
        if len(self) == 0 or len(q) == 0:
            return np.full(len(q), -np.inf, np.float32)
        if self._ivf is None:
            best = (q @ self._exact.T).max(axis=1)
        else:
            sims, ids = self._ivf.search(q, 1)
            best = np.where(ids[:, 0] >= 0, sims[:, 0], -np.inf)
        clipped: FloatArray = np.clip(best, -1.0, 1.0).astype(np.float32)
        return clipped

    def novelty(self, embeddings: Any) -> FloatArray:
        """``1 - similarity`` in ``[0, 2]``; 1.0 where the set is empty."""
        sim = self.similarity(embeddings)
        return np.where(np.isneginf(sim), 1.0, 1.0 - sim).astype(np.float32)

    def add(self, embeddings: Any) -> None:
        """Remember kept embeddings (newest last), dropping the oldest past ``capacity``.

        Raises:
            InvalidInputError: as :meth:`similarity`.
        """
        x = self._check(embeddings)
        if not len(x):
            return
        if self._ivf is None:
            self._exact = np.concatenate([self._exact, x]) if len(self._exact) else x
            if len(self._exact) >= self.train_size:
                self._build_ivf()
        else:
            ids = np.arange(self._next, self._next + len(x), dtype=np.int64)
            self._ivf.add_with_ids(x, ids)
        self._next += len(x)
        self._drop_oldest()

    def _drop_oldest(self) -> None:
        excess = len(self) - self.capacity
        if excess <= 0:
            return
        count = max(excess, self.drop_block)
        if self._ivf is None:
            self._exact = self._exact[count:]
        else:
            faiss = require("faiss", extra="edge")
            self._ivf.remove_ids(faiss.IDSelectorRange(self._oldest, self._oldest + count))
        self._oldest += count

    def _build_ivf(self) -> None:
        faiss = require("faiss", extra="edge")
        assert self._dim is not None
        quantizer = faiss.IndexFlatIP(self._dim)
        nlist = min(self.nlist, max(1, len(self._exact) // _TRAIN_POINTS_PER_LIST))
        ivf = faiss.IndexIVFFlat(quantizer, self._dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = 0
        ivf.train(self._exact)
        ivf.nprobe = min(self.nprobe, nlist)
        ivf.add_with_ids(
            self._exact, np.arange(self._oldest, self._oldest + len(self._exact), dtype=np.int64)
        )
        # one OpenMP thread in this (the selector's) thread: a search of a few queries gains
        # nothing from more, and the model's inference wants the other cores
        faiss.omp_set_num_threads(1)
        self._quantizer, self._ivf = quantizer, ivf
        self._exact = np.empty((0, 0), np.float32)

    def _check(self, embeddings: Any) -> FloatArray:
        x = np.asarray(embeddings)
        if x.ndim != 2:
            raise InvalidInputError(f"embeddings must be (N, D), got shape {x.shape}")
        if self._dim is None and len(x):
            self._dim = int(x.shape[1])
        if self._dim is not None and x.shape[1] != self._dim:
            raise InvalidInputError(
                f"embeddings have dimension {x.shape[1]}, the recent set of model "
                f"{self.model_version!r} holds dimension {self._dim}"
            )
        return np.ascontiguousarray(l2_normalize(x)) if len(x) else x.astype(np.float32)

    def __repr__(self) -> str:
        kind = "ivf" if self.indexed else "exact"
        return (
            f"RecentEmbeddings({len(self)}/{self.capacity}, {kind}, "
            f"model_version={self.model_version!r})"
        )


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return value
