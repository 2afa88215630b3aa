"""The catalog's records: :class:`FrameRow` (one answered frame) and :class:`IndexedEmbedding`."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, NamedTuple, get_args

import numpy as np
import numpy.typing as npt

from curator.errors import InvalidInputError
from curator.wire import SCHEMA_VERSION, FrameMeta, FrameRecord, FrameResult
from server.blobs import check_key

__all__ = [
    "DEDUP_METHODS",
    "FRAME_STATUSES",
    "DedupMethod",
    "FrameRow",
    "FrameStatus",
    "IndexedEmbedding",
    "check_device_id",
]

FrameStatus = Literal["accepted", "duplicate", "rejected"]
DedupMethod = Literal["exact", "near"]
FRAME_STATUSES: tuple[FrameStatus, ...] = get_args(FrameStatus)
DEDUP_METHODS: tuple[DedupMethod, ...] = get_args(DedupMethod)

_DEVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # FrameMeta.device_id's pattern (curator.wire)
_FRAME_ID = re.compile(r"[0-9a-f]{64}")
_LE_F32 = np.dtype("<f4")


def check_device_id(device_id: str) -> str:
    """Return ``device_id`` if it is valid on the wire (``[A-Za-z0-9._-]{1,64}``), else raise.

    Raises:
        InvalidInputError: it is not a string of 1-64 letters, digits, ``.``, ``_`` or ``-``.
    """
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise InvalidInputError(
            f"device_id must be 1-64 characters from [A-Za-z0-9._-], got {device_id!r}"
        )
    return device_id


class IndexedEmbedding(NamedTuple):
    """One accepted frame's embedding with the id the vector index knows it by."""

    ingest_seq: int
    frame_id: str
    embedding: npt.NDArray[np.float32]


@dataclass(frozen=True)
class FrameRow:
    """The server's answer for one uploaded frame, with what it knew about the frame.

    Built by the ingest code (usually with :meth:`from_record`) and stored by
    :meth:`server.catalog.Catalog.record`, which fills ``ingest_seq``. ``embedding`` holds the
    vector as little-endian float32 bytes, bit for bit as uploaded; read it with
    :meth:`embedding_array`. Times are aware and normalised to UTC.

    Raises:
        InvalidInputError: the fields contradict the status: ``duplicate`` needs
            ``duplicate_of``, ``similarity`` and ``dedup_method``, and only it may have them;
            ``rejected`` needs ``reason``, and only it may have one; ``accepted`` needs
            ``blob_key``, ``embedding`` and ``model_version``; an embedding needs a model
            version. Also malformed ids, naive times, or an embedding not a multiple of 4 bytes.
    """

    frame_id: str
    device_id: str
    device_seq: int
    status: FrameStatus
    received_at: datetime
    batch_id: str | None = None
    captured_at: datetime | None = None
    model_version: str | None = None
    duplicate_of: str | None = None
    similarity: float | None = None
    dedup_method: DedupMethod | None = None
    dedup_threshold: float | None = None
    reason: str | None = None
    blob_key: str | None = None
    image_format: str | None = None
    width: int | None = None
    height: int | None = None
    image_bytes: int | None = None
    embedding: bytes | None = field(default=None, repr=False)
    scores: Mapping[str, float] = field(default_factory=dict)
    quality: Mapping[str, float] = field(default_factory=dict)
    predicted_class: int | None = None
    class_probabilities: tuple[float, ...] | None = None
    keep_reason: str | None = None
    keep_value: float | None = None
    keep_threshold: float | None = None
    schema_version: int = SCHEMA_VERSION
    ingest_seq: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.frame_id, str) or not _FRAME_ID.fullmatch(self.frame_id):
            raise InvalidInputError(f"frame_id must be 64 lowercase hex digits: {self.frame_id!r}")
        check_device_id(self.device_id)
        if isinstance(self.device_seq, bool) or not isinstance(self.device_seq, int):
            raise InvalidInputError(f"device_seq must be an int, got {self.device_seq!r}")
        if not 1 <= self.device_seq < 2**63:
            raise InvalidInputError(f"device_seq must be in [1, 2**63), got {self.device_seq}")
        if self.status not in FRAME_STATUSES:
            raise InvalidInputError(f"status must be one of {FRAME_STATUSES}: {self.status!r}")
        object.__setattr__(self, "received_at", _utc(self.received_at, "received_at"))
        if self.captured_at is not None:
            object.__setattr__(self, "captured_at", _utc(self.captured_at, "captured_at"))
        self._check_status_fields()
        object.__setattr__(self, "scores", _finite_floats(self.scores, "scores"))
        object.__setattr__(self, "quality", _finite_floats(self.quality, "quality"))
        if self.embedding is not None:
            if isinstance(self.embedding, bytearray | memoryview):
                object.__setattr__(self, "embedding", bytes(self.embedding))
            if (
                not isinstance(self.embedding, bytes)
                or not self.embedding
                or len(self.embedding) % 4
            ):
                raise InvalidInputError("embedding must be non-empty float32 bytes (4 per value)")
            if self.model_version is None:
                raise InvalidInputError("an embedding needs the model_version that made it")
        if self.blob_key is not None:
            check_key(self.blob_key)
        if self.class_probabilities is not None:
            object.__setattr__(
                self, "class_probabilities", tuple(float(p) for p in self.class_probabilities)
            )

    def _check_status_fields(self) -> None:
        dup = (self.duplicate_of, self.similarity, self.dedup_method)
        if self.status == "duplicate":
            if any(v is None for v in dup):
                raise InvalidInputError(
                    "a duplicate needs duplicate_of, similarity and dedup_method"
                )
            if not _FRAME_ID.fullmatch(str(self.duplicate_of)):
                raise InvalidInputError(f"duplicate_of must be a frame id: {self.duplicate_of!r}")
            if self.dedup_method not in DEDUP_METHODS:
                raise InvalidInputError(
                    f"dedup_method must be one of {DEDUP_METHODS}: {self.dedup_method!r}"
                )
            similarity = float(self.similarity)  # type: ignore[arg-type]
            if not (math.isfinite(similarity) and -1.0 <= similarity <= 1.0):
                raise InvalidInputError(f"similarity must be in [-1, 1], got {similarity}")
        elif any(v is not None for v in dup):
            raise InvalidInputError(
                f"only a duplicate has duplicate_of/similarity/dedup_method ({self.status})"
            )
        if (self.status == "rejected") != bool(self.reason):
            raise InvalidInputError("reason is set exactly when status is rejected")
        if self.status == "accepted":
            missing = [
                n for n in ("blob_key", "embedding", "model_version") if getattr(self, n) is None
            ]
            if missing:
                raise InvalidInputError(f"an accepted frame needs {', '.join(missing)}")

    def with_ingest_seq(self, ingest_seq: int) -> FrameRow:
        """This row as stored under ``ingest_seq``: a copy, not validated again (only the
        catalog calls it, with the id SQLite gave the row)."""
        row = copy.copy(self)
        object.__setattr__(row, "ingest_seq", ingest_seq)
        return row

    @property
    def embedding_dim(self) -> int | None:
        """Dimension ``D`` of the embedding, or None without one."""
        return None if self.embedding is None else len(self.embedding) // 4

    def embedding_array(self) -> npt.NDArray[np.float32] | None:
        """The embedding as a read-only ``(D,)`` float32 array, or None without one."""
        if self.embedding is None:
            return None
        return np.frombuffer(self.embedding, dtype=_LE_F32).astype(np.float32, copy=False)

    def to_result(self) -> FrameResult:
        """The wire answer (:class:`curator.wire.FrameResult`) for this frame."""
        return FrameResult(
            frame_id=self.frame_id,
            device_seq=self.device_seq,
            status=self.status,
            duplicate_of=self.duplicate_of,
            similarity=None if self.similarity is None else float(self.similarity),
            reason=self.reason,
        )

    @classmethod
    def from_record(
        cls,
        record: FrameMeta,
        *,
        status: FrameStatus,
        received_at: datetime,
        batch_id: str | None = None,
        blob_key: str | None = None,
        duplicate_of: str | None = None,
        similarity: float | None = None,
        dedup_method: DedupMethod | None = None,
        dedup_threshold: float | None = None,
        reason: str | None = None,
    ) -> FrameRow:
        """The row for an uploaded ``record`` and the server's decision on it.

        A :class:`curator.wire.FrameRecord` also gives the embedding and the image's size in
        bytes; a :class:`curator.wire.FrameMeta` leaves them empty.

        Raises:
            InvalidInputError: the decision's fields contradict ``status`` (see the class).
        """
        full = record if isinstance(record, FrameRecord) else None
        return cls(
            frame_id=record.frame_id,
            device_id=record.device_id,
            device_seq=record.device_seq,
            status=status,
            received_at=received_at,
            batch_id=batch_id,
            captured_at=record.captured_at,
            model_version=record.model_version,
            duplicate_of=duplicate_of,
            similarity=similarity,
            dedup_method=dedup_method,
            dedup_threshold=dedup_threshold,
            reason=reason,
            blob_key=blob_key,
            image_format=record.image_format,
            width=record.width,
            height=record.height,
            image_bytes=None if full is None else len(full.image),
            embedding=None if full is None else full.embedding,
            scores=dict(record.scores),
            quality=dict(record.quality),
            predicted_class=record.predicted_class,
            class_probabilities=record.class_probabilities,
            keep_reason=record.keep_reason,
            keep_value=record.keep_value,
            keep_threshold=record.keep_threshold,
        )


def _finite_floats(named: Mapping[str, float], name: str) -> dict[str, float]:
    try:
        values = {str(k): float(v) for k, v in named.items()}
    except (AttributeError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must map names to numbers, got {named!r}") from exc
    bad = sorted(k for k, v in values.items() if not math.isfinite(v))
    if bad:
        raise InvalidInputError(f"{name} must be finite; NaN or inf at {bad}")
    return values


def _utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)
