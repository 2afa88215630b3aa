"""``FleetDedup``: one vector index per embedding model version, its lock, snapshot and restore.

Recovery: :meth:`FleetDedup.snapshot` saves each index and a manifest with its watermark (the
highest id it holds, :mod:`server.dedup.snapshot`); :meth:`FleetDedup.restore` loads them and
asks ``catch_up`` for every accepted frame past each watermark, so after a ``kill -9`` the
indexes hold exactly the accepted frames again. That needs ids that grow in commit order per
model version (the catalog's ``ingest_seq`` assigned under the version's lock): a frame
committed with an id below a saved watermark would not be caught up. ``accept`` logs a warning
when it sees one.

Threads: each model version has a re-entrant lock, :meth:`FleetDedup.lock`. ``check`` and
``accept`` take it; the server holds it across check -> catalog commit -> accept, so two batches
of one version never both accept near-identical frames. Versions do not block each other;
``snapshot`` holds each version's lock while it writes that version's index. ``check`` searches
with one OpenMP thread (:func:`curator.index.openmp_threads`): concurrent requests are the
parallelism, and idle OpenMP workers spinning between searches took the cores they needed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from curator.errors import InvalidInputError
from curator.index import FAISS_KINDS, FaissIndex, VectorIndex, load_index, openmp_threads
from server.dedup.decisions import (
    DedupDecision,
    check_ids,
    check_threshold,
    decide_batch,
    search_accepted,
    stored_among,
    unit_rows,
)
from server.dedup.snapshot import (
    NO_WATERMARK,
    Manifest,
    index_file_name,
    read_manifest,
    remove_unnamed_files,
    write_manifest,
)

__all__ = ["DEDUP_HNSW", "CatchUp", "FleetDedup", "IndexFactory", "index_factory"]

logger = logging.getLogger("server.dedup")

IndexFactory = Callable[[int], VectorIndex]
"""``dim -> empty index`` for a new model version."""

CatchUp = Callable[[str, int], Iterable[tuple[int, Any]]]
"""``(model_version, watermark) -> (id, embedding)`` of every accepted frame with id > watermark."""

_CATCH_UP_CHUNK = 4096


@dataclass
class _Space:
    """One embedding space: its index (None before the first frame), watermark and lock."""

    index: VectorIndex | None = None
    watermark: int = NO_WATERMARK
    lock: threading.RLock = field(default_factory=threading.RLock)


DEDUP_HNSW = {"m": 32, "ef_construction": 40, "ef_search": 64}
"""The server's HNSW settings: at 100k clustered 128-d vectors, 1-NN recall on near duplicates
(cosine ~0.98) 0.999, a 64-frame batch searched in ~9 ms and added in ~12 ms on one core
(docs/dedup.md, "Which index")."""


def index_factory(kind: str = "hnsw", *, hnsw_threshold: int = 100_000) -> IndexFactory:
    """``dim -> empty FaissIndex`` of ``kind`` with the server's HNSW settings.

    Args:
        kind: ``"hnsw"`` (the server's default: approximate, cost per batch nearly flat in the
            index size, grows one vector at a time), ``"flat"`` (exact, cost linear in the
            size) or ``"auto"`` (flat, rebuilt as HNSW in one go above ``hnsw_threshold``:
            ingest of that version waits for the rebuild, about a minute at 100k).
        hnsw_threshold: the ``"auto"`` switch point.

    Raises:
        ValueError: ``kind`` is not one of ``curator.index.FAISS_KINDS``.
    """
    if kind not in FAISS_KINDS:
        raise ValueError(f"unknown dedup index kind {kind!r}; valid kinds: {FAISS_KINDS}")

    def make(dim: int) -> VectorIndex:
        return FaissIndex(
            dim,
            kind=cast(Literal["auto", "flat", "hnsw"], kind),
            hnsw_threshold=hnsw_threshold,
            m=DEDUP_HNSW["m"],
            ef_construction=DEDUP_HNSW["ef_construction"],
            ef_search=DEDUP_HNSW["ef_search"],
        )

    return make


_default_index = index_factory()


class FleetDedup:
    """Near-duplicate decisions across the fleet, one index per embedding model version.

    Args:
        threshold: cosine similarity in ``[-1, 1]`` at or above which a frame is a duplicate.
        index_factory: ``dim -> empty VectorIndex`` for a new model version; default
            :func:`index_factory` ``("hnsw")``.

    Raises:
        InvalidInputError: ``threshold`` outside ``[-1, 1]``.
    """

    def __init__(self, threshold: float = 0.95, *, index_factory: IndexFactory | None = None):
        self._threshold = check_threshold(threshold)
        self._factory = index_factory or _default_index
        self._spaces: dict[str, _Space] = {}
        self._spaces_lock = threading.Lock()

    @property
    def threshold(self) -> float:
        """The similarity at or above which a frame is a duplicate."""
        return self._threshold

    def __repr__(self) -> str:
        return f"FleetDedup(threshold={self._threshold}, model_versions={sorted(self._spaces)})"

    def _space(self, model_version: Any) -> _Space:
        if not isinstance(model_version, str) or not model_version:
            raise InvalidInputError(
                f"model_version must be a non-empty string, got {model_version!r}"
            )
        with self._spaces_lock:
            return self._spaces.setdefault(model_version, _Space())

    def lock(self, model_version: str) -> threading.RLock:
        """The re-entrant lock of ``model_version``'s index; hold it across check and accept.

        Raises:
            InvalidInputError: ``model_version`` is not a non-empty string.
        """
        return self._space(model_version).lock

    def check(self, model_version: str, embeddings: Any, *, ids: Any = None) -> list[DedupDecision]:
        """Decide a batch in order; changes nothing.

        Frame ``i`` is a duplicate of the most similar frame among those already accepted for
        ``model_version`` (any device) and the frames before it in this batch that were decided
        accepted, when that similarity is ``>= threshold`` (less ``SIMILARITY_TOLERANCE``). On
        equal similarity a stored frame wins over a batch frame. A frame whose id is already
        stored was accepted before: it is accepted again and does not match its own vector.

        Args:
            model_version: the embedding space.
            embeddings: ``(N, D)`` finite, non-zero rows.
            ids: optional ``(N,)`` ids of the frames, to name in-batch originals by id.

        Returns:
            One :class:`DedupDecision` per frame, in order.

        Raises:
            InvalidInputError: malformed embeddings or ids, or ``D`` differs from the version's
                index.
        """
        space = self._space(model_version)
        x = unit_rows(embeddings)
        id_arr = None if ids is None else check_ids(ids, len(x))
        with space.lock, openmp_threads(1):  # the requests are the parallelism
            self._check_dim(model_version, space, x.shape[1])
            stored_sim, stored_id = search_accepted(space.index, x, id_arr)
            replayed = None if id_arr is None else stored_among(space.index, id_arr)
        return decide_batch(
            x, stored_sim, stored_id, self._threshold, ids=id_arr, replayed=replayed
        )

    def accept(self, model_version: str, ids: Any, embeddings: Any) -> int:
        """Add accepted frames to ``model_version``'s index; ids already stored are skipped.

        Args:
            model_version: the embedding space.
            ids: ``(N,)`` unique non-negative int64 ids (the catalog's ``ingest_seq``).
            embeddings: ``(N, D)`` finite, non-zero rows.

        Returns:
            How many frames were added.

        Raises:
            InvalidInputError: malformed ids or embeddings, or ``D`` differs from the version's
                index.
        """
        space = self._space(model_version)
        x = unit_rows(embeddings)
        id_arr = check_ids(ids, len(x))
        with space.lock:
            self._check_dim(model_version, space, x.shape[1])
            if not len(x):
                return 0
            if space.index is None:
                space.index = self._new_index(x.shape[1])
            new = ~stored_among(space.index, id_arr)
            late = id_arr[new & (id_arr <= space.watermark)]
            if len(late):
                logger.warning(
                    "model version %r: %d new id(s) at or below the watermark %d (e.g. %d); ids "
                    "must grow in commit order or a restore can miss frames",
                    model_version,
                    len(late),
                    space.watermark,
                    int(late[0]),
                )
            space.index.add(id_arr[new], x[new])
            space.watermark = max(space.watermark, int(id_arr.max()))
            return int(new.sum())

    def _new_index(self, dim: int) -> VectorIndex:
        index = self._factory(dim)
        if index.dim != dim or len(index):
            raise InvalidInputError(f"index_factory({dim}) made {index!r}, not an empty index")
        return index

    @staticmethod
    def _check_dim(model_version: str, space: _Space, dim: int) -> None:
        if space.index is not None and space.index.dim != dim:
            raise InvalidInputError(
                f"embeddings have dimension {dim} but model version {model_version!r} has "
                f"dimension {space.index.dim}"
            )

    def stats(self) -> dict[str, Any]:
        """JSON-able counts for /metrics and /readyz; takes no index lock.

        Returns:
            ``{"threshold": float, "vectors": total, "model_versions": {version: {"vectors",
            "dim", "watermark"}}}``; versions without an index yet are left out.
        """
        with self._spaces_lock:
            spaces = sorted(self._spaces.items())
        versions = {
            mv: {"vectors": len(s.index), "dim": s.index.dim, "watermark": s.watermark}
            for mv, s in spaces
            if s.index is not None
        }
        total = sum(v["vectors"] for v in versions.values())
        return {"threshold": self._threshold, "vectors": total, "model_versions": versions}

    def snapshot(self, directory: str | os.PathLike[str]) -> dict[str, int]:
        """Save every index, then commit them with the manifest (one writer per directory).

        An index unchanged since the snapshot already in ``directory`` is not written again.
        Each version's lock is held while its index is written; the layout and crash
        behaviour are in :mod:`server.dedup.snapshot`.

        Returns:
            The watermark saved for each model version.

        Raises:
            OSError: a file cannot be written; the previous snapshot stays usable.
        """
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        previous = read_manifest(target, warn=False) or {}
        with self._spaces_lock:
            spaces = sorted(self._spaces.items())
        entries: Manifest = {}
        for mv, space in spaces:
            with space.lock:
                if space.index is None:
                    continue
                name = index_file_name(mv, space.watermark, len(space.index))
                if previous.get(mv, {}).get("file") != name or not (target / name).is_file():
                    space.index.save(target / name)
                entries[mv] = {
                    "file": name,
                    "watermark": space.watermark,
                    "vectors": len(space.index),
                    "dim": space.index.dim,
                }
        write_manifest(target, entries)
        remove_unnamed_files(target, entries)
        return {mv: e["watermark"] for mv, e in entries.items()}

    @classmethod
    def restore(
        cls,
        directory: str | os.PathLike[str],
        catch_up: CatchUp,
        *,
        model_versions: Iterable[str] | Callable[[], Iterable[str]] = (),
        threshold: float = 0.95,
        index_factory: IndexFactory | None = None,
    ) -> FleetDedup:
        """Load the snapshot in ``directory``, then catch every version up from the catalog.

        A missing or unusable manifest or index file is logged as a warning, never raised: that
        version starts empty (watermark ``NO_WATERMARK``) and ``catch_up`` returns all its
        frames. ``catch_up`` is called once for every version in the snapshot or in
        ``model_versions``, so versions first seen after the snapshot come back too.

        Args:
            directory: where :meth:`snapshot` wrote (it may not exist).
            catch_up: ``(model_version, watermark) -> iterable of (id, embedding)``, every
                accepted frame of that version with id > watermark; ids already held are
                skipped, so returning more is harmless.
            model_versions: the versions the catalog knows, or a callable listing them.
            threshold: as in the constructor.
            index_factory: as in the constructor; loaded indexes keep their saved settings.

        Raises:
            InvalidInputError: ``catch_up`` yields malformed ids or embeddings, embeddings of
                another dimension than the version's index, or a bad model version is listed.
        """
        dedup = cls(threshold, index_factory=index_factory)
        dedup._load_snapshot(Path(directory))
        listed = model_versions() if callable(model_versions) else model_versions
        for mv in list(listed):
            dedup._space(mv)
        with dedup._spaces_lock:
            versions = sorted(dedup._spaces)
        for mv in versions:
            dedup._catch_up(mv, catch_up)
        return dedup

    def _load_snapshot(self, directory: Path) -> None:
        manifest = read_manifest(directory)
        for mv, entry in (manifest or {}).items():
            space = self._space(mv)  # caught up even when its file is unusable
            try:
                index = load_index(directory / entry["file"])
                if index.dim != entry["dim"] or len(index) != entry["vectors"]:
                    raise InvalidInputError(
                        f"it holds {len(index)} vectors of dimension {index.dim}, the manifest "
                        f"says {entry['vectors']} of dimension {entry['dim']}"
                    )
            except Exception as exc:  # any damage: rebuild this version from the catalog
                logger.warning("dedup snapshot of %r is unusable (%s); full catch-up", mv, exc)
                continue
            space.index, space.watermark = index, entry["watermark"]

    def _catch_up(self, model_version: str, catch_up: CatchUp) -> None:
        space = self._space(model_version)
        with space.lock:
            try:
                self._add_caught_up(model_version, catch_up)
            except InvalidInputError as exc:
                if space.watermark == NO_WATERMARK:
                    raise  # the catalog's own frames are malformed
                logger.warning(
                    "dedup snapshot of %r disagrees with the catalog (%s); full catch-up",
                    model_version,
                    exc,
                )
                space.index, space.watermark = None, NO_WATERMARK
                self._add_caught_up(model_version, catch_up)

    def _add_caught_up(self, model_version: str, catch_up: CatchUp) -> None:
        ids: list[int] = []
        vectors: list[Any] = []
        for id_, vector in catch_up(model_version, self._space(model_version).watermark):
            ids.append(id_)
            vectors.append(vector)
            if len(ids) == _CATCH_UP_CHUNK:
                self.accept(model_version, ids, vectors)
                ids, vectors = [], []
        if ids:
            self.accept(model_version, ids, vectors)
