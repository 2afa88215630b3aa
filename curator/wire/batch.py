"""A device's upload: :class:`BatchUpload`, frames from one device under one schema version."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, model_validator

from curator.wire.records import SCHEMA_VERSION, FrameMeta, FrameRecord, _Id

__all__ = ["BatchUpload"]


def _check_batch_frames(device_id: str, frames: tuple[FrameMeta, ...]) -> None:
    """Every frame comes from the batch's device and no ``device_seq`` repeats.

    Raises:
        ValueError: a frame from another device, or a repeated sequence number.
    """
    seen: set[int] = set()
    for i, frame in enumerate(frames):
        if frame.device_id != device_id:
            raise ValueError(
                f"frames[{i}] has device_id {frame.device_id!r} but the batch is from {device_id!r}"
            )
        if frame.device_seq in seen:
            raise ValueError(f"frames[{i}] repeats device_seq {frame.device_seq} within the batch")
        seen.add(frame.device_seq)


def _check_schema_version(version: int) -> int:
    """``version`` if it is :data:`SCHEMA_VERSION`, else a ValueError naming both."""
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"unsupported schema version {version}; this build speaks schema version "
            f"{SCHEMA_VERSION}"
        )
    return version


_SchemaVersion = Annotated[StrictInt, AfterValidator(_check_schema_version)]


class BatchUpload(BaseModel):
    """A batch of kept frames from one device, the body of one upload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: _SchemaVersion = Field(
        default=SCHEMA_VERSION, description="Record schema version; must be SCHEMA_VERSION."
    )
    batch_id: _Id = Field(description="Id the device gives this upload, [A-Za-z0-9._-]{1,64}.")
    device_id: _Id = Field(description="The uploading device; every frame must carry it.")
    frames: tuple[FrameRecord, ...] = Field(min_length=1, description="The frames, in order.")

    @model_validator(mode="after")
    def _frames_belong(self) -> BatchUpload:
        _check_batch_frames(self.device_id, self.frames)
        return self
