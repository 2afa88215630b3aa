"""``FaissIndex``: the production vector index, exact (flat) when small, HNSW when large.

Structure:

- ``kind="flat"``: ``IndexFlatIP``, exact. ``kind="hnsw"``: ``IndexHNSWFlat`` with
  ``METRIC_INNER_PRODUCT``, approximate, tuned by ``m`` / ``ef_construction`` / ``ef_search``.
- ``kind="auto"`` (default) starts flat and rebuilds itself as HNSW from the stored vectors as
  soon as more than ``hnsw_threshold`` vectors are stored; each compaction picks the structure
  again from the live count, so an index shrunk far below the threshold goes back to flat.

Ids: FAISS stores vectors under sequential positions; this class keeps the position -> id array
(int64, any non-negative id up to ``2**63 - 1``) and an id -> position dict next to it (about
100 bytes per vector on top of FAISS's own ``4 * D`` per vector and the HNSW graph).

Removal: a flat index deletes in place at once (``remove_ids``, ``O(N)``). HNSW cannot delete
from its graph, so removed vectors become tombstones: they stay in the graph as stepping stones,
and searches pass an ``IDSelectorBitmap`` of live positions so tombstones are never returned
(no over-fetching needed; FAISS filters while it searches). When tombstones exceed
``compact_ratio`` of the stored vectors the index is compacted: rebuilt from the live vectors,
which for HNSW costs a full build. Call :meth:`FaissIndex.compact` to do that at a chosen time.

Ties: results are ordered by similarity, then ascending id, like the oracle; but when several
vectors tie for the k-th place, which of them FAISS keeps is its own choice.

Threads: FAISS parallelises over queries with OpenMP. A batch smaller than
``_SMALL_BATCH`` queries cannot use several threads usefully, and for flat search the idle threads
cost more than they give (at 100k x 128 one flat query took 6.2 ms with 2 threads, 2.2 ms with
1 on the 2-core dev box), so such batches run with one OpenMP thread. So do HNSW adds of fewer
than ``_SMALL_ADD`` vectors: adding 58 vectors to a 10k graph took 7 ms with one thread and
7-30 ms with two on a busy 2-core box (threads wait on each other's graph locks).
``omp_set_num_threads`` sets a per-thread OpenMP variable in libgomp, so this does not throttle
other Python threads. A service that calls an index from several threads at once (the server,
one request per thread) should wrap those calls in :func:`openmp_threads` ``(1)``: its threads
are the parallelism, and OpenMP's idle workers spin on the cores between calls (on the 2-core
box, 64-query HNSW searches from two request threads ran at half the throughput with two
OpenMP threads than with one).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, Literal, Self

import numpy as np

from curator._optional import require
from curator.errors import InvalidInputError
from curator.index.base import (
    FloatMatrix,
    IdArray,
    VectorIndex,
    atomic_write,
    check_dim,
)
from curator.index.faiss_file import read_faiss_file, write_faiss_file

__all__ = ["FAISS_KINDS", "FaissIndex", "openmp_threads"]

FAISS_KINDS = ("auto", "flat", "hnsw")
_SMALL_BATCH = 20
_SMALL_ADD = 1000


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class FaissIndex(VectorIndex):
    """Cosine top-k on FAISS: exact flat below ``hnsw_threshold`` vectors, HNSW above.

    Args:
        dim: dimension ``D`` of the vectors.
        kind: ``"auto"`` (flat, switching to HNSW above ``hnsw_threshold``), ``"flat"`` or
            ``"hnsw"``.
        hnsw_threshold: in ``"auto"`` mode, the stored count above which HNSW is used.
        m: HNSW neighbours per node (``M``); more is more accurate, slower and bigger.
        ef_construction: HNSW candidate list size while building.
        ef_search: HNSW candidate list size while searching (raised to ``k`` when smaller);
            can be changed later through the ``ef_search`` property.
        compact_ratio: compact an HNSW index once tombstones exceed this fraction of its
            vectors; ``None`` only compacts when :meth:`compact` is called.

    Raises:
        InvalidInputError: an argument is out of range.
        ValueError: ``kind`` is not one of ``FAISS_KINDS``.
        MissingDependencyError: faiss is not installed (extra ``server``).
    """

    def __init__(
        self,
        dim: int,
        *,
        kind: Literal["auto", "flat", "hnsw"] = "auto",
        hnsw_threshold: int = 100_000,
        m: int = 32,
        ef_construction: int = 160,
        ef_search: int = 64,
        compact_ratio: float | None = 0.25,
    ) -> None:
        if kind not in FAISS_KINDS:
            raise ValueError(f"unknown FaissIndex kind {kind!r}; valid kinds: {FAISS_KINDS}")
        if compact_ratio is not None and not (
            isinstance(compact_ratio, (int, float)) and 0.0 < compact_ratio <= 1.0
        ):
            raise InvalidInputError(f"compact_ratio must be in (0, 1] or None, got {compact_ratio}")
        self._dim = check_dim(dim)
        self._kind = kind
        self._hnsw_threshold = _positive_int(hnsw_threshold, "hnsw_threshold")
        self._m = _positive_int(m, "m")
        self._ef_construction = _positive_int(ef_construction, "ef_construction")
        self._ef_search = _positive_int(ef_search, "ef_search")
        self._compact_ratio = compact_ratio
        self._faiss = require("faiss", extra="server")
        self._structure: Literal["flat", "hnsw"] = "hnsw" if kind == "hnsw" else "flat"
        self._index: Any = self._new_faiss_index(self._structure)
        self._labels: IdArray = np.empty(1024, np.int64)  # position -> id, -1 = tombstone
        self._pos: dict[int, int] = {}
        self._n_dead = 0
        self._live_bitmap: np.ndarray | None = None

    @property
    def dim(self) -> int:
        """Dimension ``D`` of every stored vector."""
        return self._dim

    @property
    def kind(self) -> str:
        """The requested kind: ``"auto"``, ``"flat"`` or ``"hnsw"``."""
        return self._kind

    @property
    def structure(self) -> Literal["flat", "hnsw"]:
        """The FAISS structure in use now: ``"flat"`` or ``"hnsw"``."""
        return self._structure

    @property
    def description(self) -> str:
        """The structure and its parameters, e.g. ``"HNSW32,efConstruction=80,efSearch=64"``."""
        if self._structure == "flat":
            return "Flat"
        return f"HNSW{self._m},efConstruction={self._ef_construction},efSearch={self._ef_search}"

    @property
    def ef_search(self) -> int:
        """HNSW candidate list size at search time; settable without rebuilding."""
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._ef_search = _positive_int(value, "ef_search")
        if self._structure == "hnsw":
            self._index.hnsw.efSearch = self._ef_search

    @property
    def tombstones(self) -> int:
        """Removed vectors still held in the HNSW graph until the next compaction."""
        return self._n_dead

    def __len__(self) -> int:
        return len(self._pos)

    def __repr__(self) -> str:
        return (
            f"FaissIndex(dim={self._dim}, kind={self._kind!r}, {self.description}, len={len(self)})"
        )

    def _has(self, id_: int) -> bool:
        return id_ in self._pos

    def _add(self, ids: IdArray, vectors: FloatMatrix) -> None:
        growing_past_threshold = len(self) + len(ids) > self._hnsw_threshold
        if self._kind == "auto" and self._structure == "flat" and growing_past_threshold:
            self._rebuild("hnsw")
        start = int(self._index.ntotal)
        with self._threads(1 if len(ids) < _SMALL_ADD and self._structure == "hnsw" else None):
            self._index.add(vectors)
        self._ensure_capacity(start + len(ids))
        self._labels[start : start + len(ids)] = ids
        self._pos.update(zip(ids.tolist(), range(start, start + len(ids)), strict=True))
        self._live_bitmap = None

    def _remove(self, ids: IdArray) -> int:
        positions = []
        for id_ in ids.tolist():
            pos = self._pos.pop(id_, None)
            if pos is not None:
                positions.append(pos)
        if not positions:
            return 0
        self._labels[positions] = -1
        self._n_dead += len(positions)
        self._live_bitmap = None
        ratio = self._compact_ratio
        if self._structure == "flat" or (ratio is not None and self._n_dead > ratio * self._ntotal):
            self.compact()
        return len(positions)

    def _search(self, queries: FloatMatrix, k: int) -> tuple[FloatMatrix, IdArray]:
        params, _keep_alive = self._search_params(k)
        sims, positions = self._faiss_search(queries, k, params)
        if positions.min() >= 0:
            ids = self._labels[positions]
        else:
            missing = positions < 0
            ids = self._labels[np.maximum(positions, 0)]
            ids[missing] = -1
            sims[missing] = -np.inf
        if (sims[:, 1:] == sims[:, :-1]).any():  # ties: ascending id, as the oracle does
            order = np.lexsort((ids, -sims), axis=1)
            rows = np.arange(len(sims))[:, None]
            sims, ids = sims[rows, order], ids[rows, order]
        return sims, ids

    def _faiss_search(self, queries: FloatMatrix, k: int, params: Any) -> tuple[Any, Any]:
        """FAISS search, with one OpenMP thread for small batches (see the module docstring)."""
        with self._threads(1 if len(queries) < _SMALL_BATCH else None):
            return self._index.search(queries, k, params=params)  # type: ignore[no-any-return]

    def _threads(self, n: int | None) -> contextlib.AbstractContextManager[None]:
        """Run the block with ``n`` OpenMP threads in this thread (None: leave as it is)."""
        return contextlib.nullcontext() if n is None else openmp_threads(n)

    def compact(self) -> None:
        """Drop tombstones now, rebuilding the structure from the live vectors.

        In ``"auto"`` mode the structure is chosen again from the live count. For HNSW this is
        a full build: minutes at millions of vectors.
        """
        if not self._n_dead:
            return
        target = self._structure
        if self._kind == "auto":
            target = "hnsw" if len(self) > self._hnsw_threshold else "flat"
        if target == "flat" and self._structure == "flat":
            labels = self._labels[: self._ntotal]
            dead = np.flatnonzero(labels < 0).astype(np.int64)
            removed = self._index.remove_ids(self._faiss.IDSelectorBatch(dead))
            if removed != len(dead):  # pragma: no cover - a FAISS invariant
                raise RuntimeError(f"FAISS removed {removed} vectors, expected {len(dead)}")
            self._reset_labels(labels[labels >= 0])
        else:
            self._rebuild(target)

    def _rebuild(self, structure: Literal["flat", "hnsw"]) -> None:
        n = self._ntotal
        live = self._labels[:n] >= 0
        vectors = self._index.reconstruct_n(0, n)[live] if n else np.empty((0, self._dim))
        self._structure = structure
        self._index = self._new_faiss_index(structure)
        if len(vectors):
            self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self._reset_labels(self._labels[:n][live])

    def _reset_labels(self, ids: IdArray) -> None:
        self._labels = np.empty(max(1024, len(ids)), np.int64)
        self._labels[: len(ids)] = ids
        self._pos = dict(zip(ids.tolist(), range(len(ids)), strict=True))
        self._n_dead = 0
        self._live_bitmap = None

    @property
    def _ntotal(self) -> int:
        return int(self._index.ntotal)

    def _ensure_capacity(self, n: int) -> None:
        if n > len(self._labels):
            grown = np.empty(max(n, 2 * len(self._labels)), np.int64)
            grown[: len(self._labels)] = self._labels
            self._labels = grown

    def _new_faiss_index(self, structure: Literal["flat", "hnsw"]) -> Any:
        faiss = self._faiss
        if structure == "flat":
            return faiss.IndexFlatIP(self._dim)
        index = faiss.IndexHNSWFlat(self._dim, self._m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self._ef_construction
        index.hnsw.efSearch = self._ef_search
        return index

    def _search_params(self, k: int) -> tuple[Any, tuple[Any, ...]]:
        """FAISS search parameters (or None) and the objects that must outlive the search."""
        faiss = self._faiss
        hnsw = self._structure == "hnsw"
        if not self._n_dead and not (hnsw and k > self._ef_search):
            return None, ()
        params = faiss.SearchParametersHNSW() if hnsw else faiss.SearchParameters()
        if hnsw:
            params.efSearch = max(self._ef_search, k)
        keep: tuple[Any, ...] = (params,)
        if self._n_dead:
            if self._live_bitmap is None:
                live = self._labels[: self._ntotal] >= 0
                self._live_bitmap = np.packbits(live, bitorder="little")
            bitmap = self._live_bitmap
            selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
            params.sel = selector
            keep = (params, selector, bitmap)
        return params, keep

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index, its ids and settings to the single file ``path`` atomically.

        Tombstones are kept, so a saved HNSW index loads without a rebuild. The layout is in
        :mod:`curator.index.faiss_file`.

        Raises:
            OSError: the file cannot be written.
        """
        settings = {
            "dim": self._dim,
            "kind": self._kind,
            "structure": self._structure,
            "hnsw_threshold": self._hnsw_threshold,
            "m": self._m,
            "ef_construction": self._ef_construction,
            "ef_search": self._ef_search,
            "compact_ratio": self._compact_ratio,
        }
        labels = self._labels[: self._ntotal]
        atomic_write(path, lambda f: write_faiss_file(f, settings, labels, self._index))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read an index written by :meth:`save`.

        Raises:
            InvalidInputError: the file is missing, unreadable or not a saved ``FaissIndex``.
            MissingDependencyError: faiss is not installed (extra ``server``).
        """
        settings, labels, faiss_index = read_faiss_file(path)
        try:
            structure = settings.pop("structure")
            index = cls(settings.pop("dim"), **settings)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"{os.fspath(path)!r} has a malformed FaissIndex header: {exc}"
            ) from exc
        if structure not in ("flat", "hnsw"):
            raise InvalidInputError(f"{os.fspath(path)!r} names an unknown structure {structure!r}")
        live = labels[labels >= 0]
        if faiss_index.d != index.dim or len(np.unique(live)) != len(live):
            raise InvalidInputError(
                f"{os.fspath(path)!r} is inconsistent: header dim {index.dim}, FAISS dim "
                f"{faiss_index.d}, {len(live) - len(np.unique(live))} repeated id(s)"
            )
        index._structure = structure
        index._index = faiss_index
        index._labels = np.empty(max(1024, len(labels)), np.int64)
        index._labels[: len(labels)] = labels
        index._pos = {i: p for p, i in enumerate(labels.tolist()) if i >= 0}
        index._n_dead = len(labels) - len(index._pos)
        return index


@contextlib.contextmanager
def openmp_threads(n: int) -> Iterator[None]:
    """Run the block with at most ``n`` OpenMP threads for the FAISS calls of this thread.

    Other threads are not affected (the setting is per thread in libgomp). Nests.

    Raises:
        InvalidInputError: ``n`` is not a positive integer.
        MissingDependencyError: faiss is not installed (extra ``server``).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInputError(f"n must be a positive integer, got {n!r}")
    faiss = require("faiss", extra="server")
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(min(n, before))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
