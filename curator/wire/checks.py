"""Per-frame content checks: the server rejects one frame, not the batch, when one fails.

:func:`frame_problems` returns the first problem as ``"code: detail"`` (the code is stable, for
metrics and the warehouse; the detail is for people) or ``None`` for a good frame. The edge can
run the same function before it buffers a frame, so it never ships one the server will reject.

Codes: ``image_too_large``, ``image_format_mismatch``, ``embedding_dim_mismatch``,
``frame_id_mismatch``, ``embedding_not_finite``, ``embedding_zero_norm``,
``probabilities_not_normalized``. Pixel-level checks (decoding, dimensions) are the server's,
after these.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from curator.wire.records import FrameRecord

__all__ = ["MAX_IMAGE_BYTES", "PROBABILITY_SUM_TOLERANCE", "frame_problems"]

MAX_IMAGE_BYTES = 16 * 2**20
"""Default policy limit on one encoded image; larger frames are rejected one by one."""

PROBABILITY_SUM_TOLERANCE = 1e-3
"""How far ``sum(class_probabilities)`` may be from 1 (float32 softmax rounding fits easily)."""

_MIN_NORM = 1e-12
_SIGNATURES = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}


def frame_problems(
    frame: FrameRecord,
    *,
    expected_dim: int | None = None,
    max_image_bytes: int = MAX_IMAGE_BYTES,
) -> str | None:
    """The first content problem of ``frame``, or None when it is good.

    Args:
        frame: a structurally valid record (from :func:`curator.wire.decode_batch` or built
            with :meth:`FrameRecord.from_image`).
        expected_dim: the embedding dimension of ``frame.model_version``'s space, if known.
        max_image_bytes: the largest encoded image accepted.

    Returns:
        ``"code: detail"`` for the first failing check, in the order of the codes in the
        module docstring, or None.
    """
    size = len(frame.image)
    if size > max_image_bytes:
        return f"image_too_large: {size} bytes, the limit is {max_image_bytes}"
    signature = _SIGNATURES[frame.image_format]
    if not frame.image.startswith(signature):
        return (
            f"image_format_mismatch: image_format is {frame.image_format!r} but the bytes start "
            f"with {frame.image[:8].hex()}"
        )
    if expected_dim is not None and frame.embedding_dim != expected_dim:
        return (
            f"embedding_dim_mismatch: embedding has dimension {frame.embedding_dim}, model "
            f"{frame.model_version!r} makes {expected_dim}"
        )
    digest = hashlib.sha256(frame.image).hexdigest()
    if digest != frame.frame_id:
        return f"frame_id_mismatch: frame_id is {frame.frame_id} but the image hashes to {digest}"
    vector = frame.embedding_array()
    finite = np.isfinite(vector)
    if not finite.all():
        return f"embedding_not_finite: {int((~finite).sum())} NaN or inf value(s)"
    norm = float(np.linalg.norm(vector.astype(np.float64)))
    if norm < _MIN_NORM:
        return f"embedding_zero_norm: embedding norm is {norm:.3g}"
    probs = frame.class_probabilities
    if probs is not None:
        total = math.fsum(probs)
        if abs(total - 1.0) > PROBABILITY_SUM_TOLERANCE:
            return f"probabilities_not_normalized: class_probabilities sum to {total:.6g}, not 1"
    return None
