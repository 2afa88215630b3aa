"""What the server answers for an upload: one :class:`FrameResult` per frame, in order.

Plain JSON models; every field carries a description because they appear in the server's
OpenAPI schema. A device acks exactly the frames it got a result for.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from curator.wire.records import SCHEMA_VERSION

__all__ = ["BatchResult", "FrameResult", "FrameStatus"]

FrameStatus = Literal["accepted", "duplicate", "rejected"]

_FrameId = Annotated[str, Field(strict=True, pattern=r"^[0-9a-f]{64}$")]


class FrameResult(BaseModel):
    """The server's decision on one uploaded frame.

    ``accepted``: stored. ``duplicate``: not stored because it repeats an earlier frame
    (``duplicate_of``, ``similarity`` set). ``rejected``: not stored, ``reason`` says why.
    Sending the same frame again yields the same result.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    frame_id: _FrameId = Field(description="The frame's id (sha256 of its image bytes, hex).")
    device_seq: StrictInt = Field(ge=1, description="The frame's per-device sequence number.")
    status: FrameStatus = Field(description="accepted, duplicate or rejected.")
    duplicate_of: _FrameId | None = Field(
        default=None, description="For duplicate: id of the frame it duplicates; else null."
    )
    similarity: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="For duplicate: cosine similarity to duplicate_of (1.0 for identical "
        "bytes); else null.",
    )
    reason: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="For rejected: why, as 'code: detail'; else null.",
    )

    @model_validator(mode="after")
    def _fields_match_status(self) -> FrameResult:
        is_dup = self.status == "duplicate"
        if is_dup != (self.duplicate_of is not None) or is_dup != (self.similarity is not None):
            raise ValueError("duplicate_of and similarity are set exactly when status is duplicate")
        if (self.status == "rejected") != (self.reason is not None):
            raise ValueError("reason is set exactly when status is rejected")
        return self


class BatchResult(BaseModel):
    """The server's answer to one upload: one result per uploaded frame, in upload order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: StrictInt = Field(
        default=SCHEMA_VERSION, description="Record schema version the server applied."
    )
    batch_id: str = Field(description="The batch_id of the upload this answers.")
    results: tuple[FrameResult, ...] = Field(
        description="One result per uploaded frame, in the order the frames were sent."
    )

    def count(self, status: FrameStatus) -> int:
        """How many frames got ``status``."""
        return sum(r.status == status for r in self.results)
