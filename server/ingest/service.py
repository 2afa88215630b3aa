"""``IngestService``: a decoded upload batch in, one ``FrameResult`` per frame out.

The order of the checks, what is written where and what a crash leaves are in docs/ingest.md.
In short, per batch: authorise; answer re-sent frames from the catalog; content checks
(:func:`curator.wire.frame_problems`, :func:`server.images.inspect_image`); ``BlobStore.put_many``
of every image that passed and is new to the catalog (durable together, content-addressed, so
nothing waits on disk under the lock); then, holding the dedup lock of every model version in
the batch: exact duplicates (the frame id is stored), near duplicates (:meth:`FleetDedup.check`
on the rest, in upload order), ONE catalog transaction with the answers and their warehouse
outbox rows, and :meth:`FleetDedup.accept` of the accepted frames' ``ingest_seq``. Last, the
staged images of frames this batch stored as near duplicates are deleted again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from curator.errors import InvalidInputError
from curator.wire import MAX_IMAGE_BYTES, BatchResult, BatchUpload, FrameRecord, frame_problems
from server.auth import Principal, Role, require
from server.blobs import BlobStore, LocalBlobStore
from server.catalog import Catalog, FrameRow
from server.dedup import FleetDedup, IndexFactory
from server.images import ImageChecker
from server.ingest.warehouse_rows import dedup_decision_row, frame_row
from server.warehouse.outbox import Outbox

__all__ = ["IngestService"]

ExpectedDims = Callable[[str], int | None]
logger = logging.getLogger("server.ingest")
_MAX_REASON = 1000


def _utc_now() -> datetime:
    return datetime.now(UTC)


class IngestService:
    """Turns upload batches into answers, storing each frame exactly once.

    Args:
        catalog: the frame catalog (the authority on answers, :meth:`Catalog.record`).
        blobs: where accepted images go, content-addressed.
        dedup: the fleet's near-duplicate indexes, ids = the catalog's ``ingest_seq``.
        outbox: the warehouse outbox; it must live in the catalog's SQLite file, so that the
            answers and their warehouse rows commit together.
        expected_dims: ``model_version -> embedding dimension`` or None when unknown; default
            :meth:`Catalog.embedding_dim`.
        max_pixels: the most pixels an image may have (:func:`server.images.inspect_image`).
        max_image_bytes: the largest encoded image accepted.
        check_workers: processes that check images (:class:`server.images.ImageChecker`);
            0 checks them in the request's thread.
        clock: the time stamped as ``received_at`` (timezone-aware).
        snapshot_dir: where :meth:`snapshot` saves the dedup indexes, if anywhere.
    """

    def __init__(
        self,
        catalog: Catalog,
        blobs: BlobStore,
        dedup: FleetDedup,
        outbox: Outbox,
        *,
        expected_dims: ExpectedDims | None = None,
        max_pixels: int = 40_000_000,
        max_image_bytes: int = MAX_IMAGE_BYTES,
        check_workers: int = 0,
        clock: Callable[[], datetime] = _utc_now,
        snapshot_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.catalog = catalog
        self.blobs = blobs
        self.dedup = dedup
        self.outbox = outbox
        self._expected_dims = expected_dims or catalog.embedding_dim
        self._max_image_bytes = max_image_bytes
        self.images = ImageChecker(
            workers=check_workers, max_pixels=max_pixels, max_bytes=max_image_bytes
        )
        self._clock = clock
        self._snapshot_dir = None if snapshot_dir is None else Path(snapshot_dir)

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        threshold: float = 0.95,
        index_factory: IndexFactory | None = None,
        expected_dims: ExpectedDims | None = None,
        max_pixels: int = 40_000_000,
        max_image_bytes: int = MAX_IMAGE_BYTES,
        check_workers: int = 0,
        clock: Callable[[], datetime] = _utc_now,
    ) -> IngestService:
        """Open every store under ``data_dir`` and restore the dedup indexes.

        Layout: ``catalog.sqlite`` (catalog and warehouse outbox, one file), ``blobs/``,
        ``dedup/`` (the snapshot). The indexes are loaded from the snapshot, if any, then caught
        up from the catalog's accepted frames past each snapshot's watermark.

        Raises:
            InvalidInputError: ``threshold`` outside ``[-1, 1]``.
            Unavailable: the outbox cannot be opened.
        """
        root = Path(data_dir)
        root.mkdir(parents=True, exist_ok=True)
        catalog = Catalog(root / "catalog.sqlite")
        try:
            outbox = Outbox(root / "catalog.sqlite")
            dedup = restore_dedup(
                catalog, root / "dedup", threshold=threshold, index_factory=index_factory
            )
        except BaseException:
            catalog.close()
            raise
        return cls(
            catalog,
            LocalBlobStore(root / "blobs"),
            dedup,
            outbox,
            expected_dims=expected_dims,
            max_pixels=max_pixels,
            max_image_bytes=max_image_bytes,
            check_workers=check_workers,
            clock=clock,
            snapshot_dir=root / "dedup",
        )

    def ingest(self, batch: BatchUpload, principal: Principal) -> BatchResult:
        """Answer every frame of ``batch``, in upload order, storing what is new.

        Sending the same batch again returns the same results and stores nothing more
        (rejected frames, which are not stored, are checked and logged to the warehouse again).

        Raises:
            Forbidden: ``principal`` may not upload for ``batch.device_id``; nothing is stored.
            Unavailable: the outbox's file is locked past its timeout.
        """
        require(principal, Role.DEVICE, batch.device_id)
        now = self._clock()
        frames = batch.frames
        answers: list[FrameRow | None] = [None] * len(frames)
        answered = self.catalog.uploads(batch.device_id, (f.device_seq for f in frames))
        for i, reason in self._content_problems(frames, answered).items():
            answers[i] = FrameRow.from_record(
                frames[i],
                status="rejected",
                received_at=now,
                batch_id=batch.batch_id,
                reason=reason[:_MAX_REASON],
            )
        versions = sorted(
            {f.model_version for f, a in zip(frames, answers, strict=True) if a is None}
        )
        staged = self._stage_blobs(frames, answers, answered)
        with contextlib.ExitStack() as locks:
            for mv in versions:  # sorted: two batches never wait on each other's locks
                locks.enter_context(self.dedup.lock(mv))
            self._decide_and_commit(batch, answers, now, staged)
        self._discard_staged(staged, answers)
        return BatchResult(
            batch_id=batch.batch_id,
            results=tuple(a.to_result() for a in answers if a is not None),
        )

    def _content_problems(
        self, frames: Sequence[FrameRecord], answered: dict[int, str]
    ) -> dict[int, str]:
        """position -> the first content problem (``"code: detail"``) of each new frame that
        has one, in the order of the checks: the wire checks (:func:`frame_problems`), then the
        image checks (:class:`ImageChecker`, perhaps in worker processes). For a model version
        the catalog does not know yet, the wire checks hold each frame to the embedding
        dimension of the batch's first earlier frame of that version that passed every check.
        The images are checked together first; the answers are then replayed in upload order.
        """
        catalog_dims = {mv: self._expected_dims(mv) for mv in {f.model_version for f in frames}}
        wire: dict[int, str | None] = {
            i: frame_problems(
                frame,
                expected_dim=catalog_dims[frame.model_version],
                max_image_bytes=self._max_image_bytes,
            )
            for i, frame in enumerate(frames)
            if frame.device_seq not in answered  # re-sent: the catalog answers it, unchecked
        }
        todo = [i for i, reason in wire.items() if reason is None]
        images = [
            (frames[i].image, frames[i].image_format, (frames[i].width, frames[i].height))
            for i in todo
        ]
        image = dict(zip(todo, self.images.reasons(images), strict=True))
        problems: dict[int, str] = {}
        batch_dims: dict[str, int] = {}  # versions new to the catalog: the first good frame's
        for i, reason in wire.items():
            frame = frames[i]
            mv = frame.model_version
            if reason is None and mv in batch_dims:
                reason = frame_problems(
                    frame, expected_dim=batch_dims[mv], max_image_bytes=self._max_image_bytes
                )
            reason = reason or image[i]
            if reason is not None:
                problems[i] = reason
            elif catalog_dims[mv] is None:
                batch_dims.setdefault(mv, frame.embedding_dim)
        return problems

    def _stage_blobs(
        self,
        frames: Sequence[FrameRecord],
        answers: Sequence[FrameRow | None],
        answered: dict[int, str],
    ) -> dict[int, str]:
        """Store the images that may be accepted, before the locks: position -> blob key.

        Those are the frames that passed the checks, were not answered before and whose image
        the catalog does not hold; the catalog only grows, so every frame the locked step
        accepts is among them. A blob is durable before any row names it, and one no row names
        is never read (docs/server-storage.md, "Blobs").
        """
        candidates = [
            i
            for i, (frame, answer) in enumerate(zip(frames, answers, strict=True))
            if answer is None and frame.device_seq not in answered
        ]
        known = self.catalog.known([frames[i].frame_id for i in candidates])
        positions = [i for i in candidates if frames[i].frame_id not in known]
        keys = self.blobs.put_many((frames[i].image, frames[i].image_format) for i in positions)
        return dict(zip(positions, keys, strict=True))

    def _discard_staged(self, staged: dict[int, str], answers: Sequence[FrameRow | None]) -> None:
        """Delete the staged images of the frames this batch stored as near duplicates.

        Safe against other batches: the catalog now holds those frame ids as duplicates for
        good, so no batch can accept them and name the blob. Other staged images not accepted
        (a frame the catalog rejected, or one another batch stored first) are left: a batch
        that found the blob already there may still be about to accept it. A failed delete
        only leaves a blob no row names.
        """
        for i, key in staged.items():
            if _is_new(answers[i], "duplicate"):
                try:
                    self.blobs.delete(key)
                except OSError:
                    logger.warning("could not delete the unused blob %s", key, exc_info=True)

    def _decide_and_commit(
        self,
        batch: BatchUpload,
        answers: list[FrameRow | None],
        now: datetime,
        staged: dict[int, str],
    ) -> None:
        """Exact and near dedup, blobs, one transaction, then the index; under the locks."""
        frames = batch.frames
        answered = self.catalog.uploads(batch.device_id, (f.device_seq for f in frames))
        known = self.catalog.known(f.frame_id for f in frames)
        stored_here: set[str] = set()  # frame ids this batch stores first
        near: dict[str, list[int]] = {}
        rows: dict[int, FrameRow] = {}
        for i, frame in enumerate(frames):
            if answers[i] is not None:
                continue
            if frame.device_seq in answered or frame.frame_id in known | stored_here:
                # Catalog.record decides: the stored answer, an exact duplicate, or a reuse.
                rows[i] = FrameRow.from_record(
                    frame,
                    status="duplicate",
                    received_at=now,
                    batch_id=batch.batch_id,
                    duplicate_of=frame.frame_id,
                    similarity=1.0,
                    dedup_method="exact",
                )
            else:
                stored_here.add(frame.frame_id)
                near.setdefault(frame.model_version, []).append(i)
        for mv, positions in near.items():
            rows.update(self._near_rows(batch, mv, positions, now, staged))
        order = sorted(rows)
        with self.catalog.atomic() as conn:
            recorded = self.catalog.record([rows[i] for i in order], conn=conn)
            for i, answer in zip(order, recorded, strict=True):
                answers[i] = answer
            self._enqueue(conn, frames, answers, answered, now)
            self.catalog.touch_device(
                batch.device_id, max(f.device_seq for f in frames), now, conn=conn
            )
        for mv, positions in near.items():
            fresh = [i for i in positions if _is_new(answers[i], "accepted")]
            if fresh:
                self.dedup.accept(
                    mv,
                    np.array([answers[i].ingest_seq for i in fresh], dtype=np.int64),  # type: ignore[union-attr]
                    np.stack([frames[i].embedding_array() for i in fresh]),
                )

    def _near_rows(
        self,
        batch: BatchUpload,
        mv: str,
        positions: Sequence[int],
        now: datetime,
        staged: dict[int, str],
    ) -> dict[int, FrameRow]:
        """Accepted (blob stored) or near-duplicate rows for new frames of one model version."""
        frames = batch.frames
        decisions = self.dedup.check(mv, np.stack([frames[i].embedding_array() for i in positions]))
        originals = self.catalog.frame_id_for_seq(
            d.duplicate_of_id for d in decisions if d.duplicate_of_id is not None
        )
        rows: dict[int, FrameRow] = {}
        fresh: list[tuple[int, float]] = []
        for i, decision in zip(positions, decisions, strict=True):
            frame = frames[i]
            if not decision.is_duplicate:
                fresh.append((i, decision.threshold))
                continue
            if decision.batch_position_of_original is not None:
                original = frames[positions[decision.batch_position_of_original]].frame_id
            else:
                original = originals[decision.duplicate_of_id]  # type: ignore[index]
            rows[i] = FrameRow.from_record(
                frame,
                status="duplicate",
                received_at=now,
                batch_id=batch.batch_id,
                duplicate_of=original,
                similarity=min(1.0, max(-1.0, float(decision.similarity or 0.0))),
                dedup_method="near",
                dedup_threshold=decision.threshold,
            )
        for i, threshold in fresh:  # staged: the catalog only grows (see _stage_blobs)
            rows[i] = FrameRow.from_record(
                frames[i],
                status="accepted",
                received_at=now,
                batch_id=batch.batch_id,
                blob_key=staged[i],
                dedup_threshold=threshold,
            )
        return rows

    def _enqueue(
        self,
        conn: sqlite3.Connection,
        frames: Sequence[FrameRecord],
        answers: Sequence[FrameRow | None],
        answered: dict[int, str],
        now: datetime,
    ) -> None:
        """Outbox rows for the uploads this batch decided, in the caller's transaction.

        The warehouse keys ``frames`` and ``dedup_decisions`` by upload (``device_id``,
        ``device_seq``), so every upload decided here gets its rows: accepted, near or exact
        duplicates (an image another device sent first included) and rejections. An upload the
        catalog had answered before (``answered``) gets none: its rows were written when it was
        decided, and a reused ``device_seq`` must not overwrite them.
        """
        frame_rows, dup_rows = [], []
        for frame, answer in zip(frames, answers, strict=True):
            assert answer is not None  # every position was answered above
            if frame.device_seq in answered:
                continue
            frame_rows.append(frame_row(answer))
            if answer.status == "duplicate":
                dup_rows.append(dedup_decision_row(answer, now))
        self.outbox.enqueue("frames", frame_rows, conn=conn)
        self.outbox.enqueue("dedup_decisions", dup_rows, conn=conn)

    def snapshot(self) -> dict[str, int]:
        """Save the dedup indexes to the snapshot folder; returns each version's watermark.

        Raises:
            InvalidInputError: the service was built without ``snapshot_dir``.
        """
        if self._snapshot_dir is None:
            raise InvalidInputError("this IngestService has no snapshot_dir")
        return self.dedup.snapshot(self._snapshot_dir)

    def close(self) -> None:
        """Stop the image checkers, close the outbox and the catalog (blobs and dedup hold no
        open files)."""
        self.images.close()
        self.outbox.close()
        self.catalog.close()

    def __enter__(self) -> IngestService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_new(answer: FrameRow | None, *statuses: str) -> bool:
    """Whether ``answer`` is a row this batch stored with one of ``statuses`` (not exact)."""
    return (
        answer is not None
        and answer.status in statuses
        and answer.ingest_seq is not None
        and answer.dedup_method != "exact"
    )


def restore_dedup(
    catalog: Catalog,
    snapshot_dir: str | os.PathLike[str],
    *,
    threshold: float = 0.95,
    index_factory: IndexFactory | None = None,
) -> FleetDedup:
    """The dedup indexes from the snapshot in ``snapshot_dir`` (if any), caught up from every
    frame the catalog accepted past each snapshot's watermark: after a crash the indexes hold
    exactly the accepted frames.

    Raises:
        InvalidInputError: ``threshold`` outside ``[-1, 1]``.
    """
    return FleetDedup.restore(
        snapshot_dir,
        lambda mv, after: ((r.ingest_seq, r.embedding) for r in catalog.accepted_since(mv, after)),
        model_versions=lambda: _model_versions(catalog),
        threshold=threshold,
        index_factory=index_factory,
    )


def _model_versions(catalog: Catalog) -> list[str]:
    """Every model version with an embedding in the catalog."""
    rows = catalog.db.connection.execute("SELECT DISTINCT model_version FROM embeddings")
    return [str(r[0]) for r in rows]
