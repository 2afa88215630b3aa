"""Frames uploaded by the demo itself through :mod:`curator.client`: the seed set, and the random
fleet's frames (kept uniformly at random, which ``edge-selector`` has no mode for: its value is
uncertainty and novelty, and both weights at 0 are refused).

Each frame is scored by the fleet's current model (embedding, probabilities), encoded as JPEG
like the edge does (quality 85) and sent as :mod:`curator.wire` batches with a device token, so
the server dedups and stores it exactly as a selector's upload.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from curator.client import CuratorClient
from curator.inference import OnnxModel
from curator.wire import BatchUpload, FrameRecord, encode_batch

__all__ = ["UploadOutcome", "encode_jpeg", "upload_frames"]

UInt8 = npt.NDArray[np.uint8]
BATCH_FRAMES = 32


def encode_jpeg(frame: UInt8, quality: int = 85) -> bytes:
    """``(H, W)`` uint8 gray -> JPEG bytes of its RGB image, as the edge encodes kept frames."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(frame).convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


@dataclass
class UploadOutcome:
    """What the server answered for the frames sent.

    Attributes:
        accepted: frame id -> index (into the frames given) of each accepted frame.
        duplicates: frames the server dropped as (near-)duplicates.
        rejected: frames refused.
        bytes_sent: request body bytes.
        next_seq: the device's next ``device_seq``.
    """

    accepted: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    rejected: int = 0
    bytes_sent: int = 0
    next_seq: int = 1

    @property
    def uploaded(self) -> int:
        """Frames the server answered for."""
        return len(self.accepted) + self.duplicates + self.rejected


def upload_frames(
    api: CuratorClient,
    device_id: str,
    frames: UInt8,
    model: OnnxModel,
    *,
    first_seq: int,
    keep_reason: str,
) -> UploadOutcome:
    """Score ``(N, 28, 28)`` frames with ``model`` and upload them as ``device_id``.

    Raises:
        ApiError: the server refused a batch.
    """
    outcome = UploadOutcome(next_seq=first_seq)
    if len(frames) == 0:
        return outcome
    prediction = model.predict(frames[..., None], batch_size=256)
    probs = prediction.probs
    records = []
    for i, frame in enumerate(frames):
        p = probs[i].astype(np.float64)
        p /= p.sum()
        records.append(
            FrameRecord.from_image(
                encode_jpeg(frame),
                prediction.embeddings[i],
                device_id=device_id,
                device_seq=first_seq + i,
                captured_at=datetime.now(UTC),
                model_version=model.model_version,
                width=frame.shape[1],
                height=frame.shape[0],
                scores={},
                keep_reason=keep_reason,
                predicted_class=int(p.argmax()),
                class_probabilities=p,
            )
        )
    for start in range(0, len(records), BATCH_FRAMES):
        chunk = tuple(records[start : start + BATCH_FRAMES])
        batch = BatchUpload(
            batch_id=f"{device_id}-{chunk[0].device_seq}", device_id=device_id, frames=chunk
        )
        body = encode_batch(batch)
        outcome.bytes_sent += len(body)
        result = api.upload_batch(body)
        for j, answer in enumerate(result.results):
            if answer.status == "accepted":
                outcome.accepted[answer.frame_id] = start + j
            elif answer.status == "duplicate":
                outcome.duplicates += 1
            else:
                outcome.rejected += 1
    outcome.next_seq = first_seq + len(frames)
    return outcome
