"""curator.wire: the versioned edge-to-server contract, the only code both sides share.

- :mod:`curator.wire.records`: :class:`FrameRecord` (and :class:`FrameMeta`, its fields without
  the blobs), validated with pydantic (unknown fields forbidden, ranges and charsets checked);
  ``SCHEMA_VERSION``.
- :mod:`curator.wire.batch`: :class:`BatchUpload`, the frames of one upload.
- :mod:`curator.wire.framing`: the binary body ``application/vnd.curator.batch``:
  :func:`encode_batch` and :func:`decode_batch`. Images travel as raw bytes, not base64.
- :mod:`curator.wire.checks`: :func:`frame_problems`, the per-frame content checks the server
  answers frame by frame.
- :mod:`curator.wire.results`: :class:`FrameResult` and :class:`BatchResult`, the JSON answer.
- :mod:`curator.wire.models`: :class:`ModelInfo`, a model version devices may download.
- :mod:`curator.wire.heartbeat`: :class:`DeviceHeartbeat`, a device's periodic counters, and
  :class:`HeartbeatAck`.

The byte layout, limits and versioning rules are in docs/wire.md. Importing this package loads
only numpy, pydantic and the standard library.
"""

from curator.wire.batch import BatchUpload
from curator.wire.checks import MAX_IMAGE_BYTES, PROBABILITY_SUM_TOLERANCE, frame_problems
from curator.wire.framing import (
    FRAMING_VERSION,
    MAGIC,
    MAX_EMBEDDING_DIM,
    MAX_FRAMES,
    MAX_HEADER_BYTES,
    MAX_IMAGE_BYTES_HARD,
    MEDIA_TYPE,
    batch_header_schema,
    decode_batch,
    encode_batch,
)
from curator.wire.heartbeat import COUNTER_PATTERN, DeviceHeartbeat, HeartbeatAck
from curator.wire.models import ModelInfo
from curator.wire.records import SCHEMA_VERSION, FrameMeta, FrameRecord, ImageFormat
from curator.wire.results import BatchResult, FrameResult, FrameStatus

__all__ = [
    "COUNTER_PATTERN",
    "FRAMING_VERSION",
    "MAGIC",
    "MAX_EMBEDDING_DIM",
    "MAX_FRAMES",
    "MAX_HEADER_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_BYTES_HARD",
    "MEDIA_TYPE",
    "PROBABILITY_SUM_TOLERANCE",
    "SCHEMA_VERSION",
    "BatchResult",
    "BatchUpload",
    "DeviceHeartbeat",
    "FrameMeta",
    "FrameRecord",
    "FrameResult",
    "FrameStatus",
    "HeartbeatAck",
    "ImageFormat",
    "ModelInfo",
    "batch_header_schema",
    "decode_batch",
    "encode_batch",
    "frame_problems",
]
