"""A device's periodic report of its counters: :class:`DeviceHeartbeat` and the answer.

The edge selector sends one every ``heartbeat_interval_s`` (JSON, ``POST /v1/heartbeats``).
Counters count since the process started (``started_at``), as Prometheus counters do, so a
reader takes differences within one ``started_at`` and starts over when it changes. The natural
key is (``device_id``, ``sent_at``): sending the same heartbeat again stores nothing more.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
)

from curator.wire.batch import _SchemaVersion
from curator.wire.records import SCHEMA_VERSION, _Id, _no_timestamps, _Text, _to_utc

__all__ = ["COUNTER_PATTERN", "DeviceHeartbeat", "HeartbeatAck"]

COUNTER_PATTERN = r"^[a-z][a-z0-9_.]{0,63}$"
"""Counter names: lowercase, digits, ``_`` and ``.`` (e.g. ``dropped.black``)."""

_MAX_COUNTERS = 128

_Time = Annotated[AwareDatetime, BeforeValidator(_no_timestamps), AfterValidator(_to_utc)]
_Count = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]
_CounterName = Annotated[str, Field(strict=True, pattern=COUNTER_PATTERN)]


class DeviceHeartbeat(BaseModel):
    """What a device reports about itself: its counters and its buffer."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    schema_version: _SchemaVersion = Field(
        default=SCHEMA_VERSION, description="Record schema version; must be SCHEMA_VERSION."
    )
    device_id: _Id = Field(description="The reporting device, [A-Za-z0-9._-]{1,64}.")
    sent_at: _Time = Field(description="When the device sent it; timezone-aware, UTC.")
    started_at: _Time = Field(
        description="When the device's selector process started; the counters count from here."
    )
    model_version: _Text | None = Field(
        default=None, description="The model the device scores frames with; null before one."
    )
    software_version: _Text = Field(description="The device's curator version.")
    counters: dict[_CounterName, _Count] = Field(
        max_length=_MAX_COUNTERS,
        description="Counters since started_at by name, e.g. frames.seen, frames.kept, "
        "dropped.black, evicted, uploaded, rejected.",
    )
    buffer_frames: _Count = Field(description="Frames waiting in the device's buffer.")
    buffer_bytes: _Count = Field(description="Bytes the buffer's files take on disk.")
    buffer_max_bytes: _Count = Field(description="The buffer's byte cap.")
    last_device_seq: _Count = Field(
        description="The highest device_seq the device has given a frame (0 before any)."
    )


class HeartbeatAck(BaseModel):
    """The server's answer to a heartbeat."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: _Id = Field(description="The device the heartbeat was stored for.")
    received_at: _Time = Field(description="When the server first stored this heartbeat.")
    duplicate: bool = Field(
        description="True when this (device_id, sent_at) had been stored before (a retry)."
    )
