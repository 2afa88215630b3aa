"""What the labeling store hands out and keeps: :class:`LabelTask`, :class:`Lease`,
:class:`LabelRow`. Times are aware UTC datetimes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = ["LabelRow", "LabelTask", "Lease", "ReleaseReason", "image_path"]

ReleaseReason = Literal["released", "labeled", "expired"]


def image_path(frame_id: str) -> str:
    """The server path of a frame's image: ``/v1/frames/<frame_id>/image``."""
    return f"/v1/frames/{frame_id}/image"


@dataclass(frozen=True)
class Lease:
    """One frame leased to one holder (a token id) until ``expires_at``.

    ``released_at``/``release_reason`` are None while the lease is open; an open lease past
    ``expires_at`` is expired all the same (it is marked so at the next lease).
    """

    lease_id: str
    frame_id: str
    holder: str
    leased_at: datetime
    expires_at: datetime
    strategy: str
    model_version: str | None
    released_at: datetime | None = None
    release_reason: ReleaseReason | None = None

    def is_open(self, now: datetime) -> bool:
        """Whether the lease still holds its frame at ``now``."""
        return self.released_at is None and now < self.expires_at


@dataclass(frozen=True)
class LabelTask:
    """A leased frame with what a labeler needs to label it.

    Attributes:
        lease: the frame's lease (its id is the task id).
        model_version: the model that scored the frame.
        class_names: that model's classes, in class-index order (see docs/labeling.md).
        predicted_index: the model's predicted class index, None for an embedding-only model.
        confidence: the predicted class's probability, or None.
    """

    lease: Lease
    model_version: str | None
    class_names: tuple[str, ...]
    predicted_index: int | None
    confidence: float | None

    @property
    def frame_id(self) -> str:
        return self.lease.frame_id

    @property
    def predicted_class(self) -> str | None:
        """The predicted class's name, when the index is within ``class_names``."""
        i = self.predicted_index
        return self.class_names[i] if i is not None and 0 <= i < len(self.class_names) else None

    @property
    def image_path(self) -> str:
        return image_path(self.frame_id)


@dataclass(frozen=True)
class LabelRow:
    """One label as stored: a correction is a new row whose ``supersedes`` is the label it
    replaces (its previous current label), never an update."""

    label_id: str
    frame_id: str
    class_name: str
    model_version: str | None
    labeler: str
    created_at: datetime
    supersedes: str | None = None
    lease_id: str | None = None

    def warehouse_row(self) -> dict[str, Any]:
        """The row of the warehouse table ``labels`` (:data:`server.warehouse.tables.LABELS`)."""
        return {
            "label_id": self.label_id,
            "frame_id": self.frame_id,
            "class_name": self.class_name,
            "labeler": self.labeler,
            "created_at": self.created_at,
            "supersedes": self.supersedes,
        }
