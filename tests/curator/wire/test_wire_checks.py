from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from curator.wire import (
    PROBABILITY_SUM_TOLERANCE,
    BatchUpload,
    FrameRecord,
    decode_batch,
    encode_batch,
    frame_problems,
)

FrameFactory = Callable[..., FrameRecord]


def _with(frame: FrameRecord, **update: Any) -> FrameRecord:
    """``frame`` with fields replaced and no validation, as a decoded body may carry them."""
    return frame.model_copy(update=update)


def _f32(*values: float) -> bytes:
    return np.array(values, dtype="<f4").tobytes()


def test_a_good_frame_has_no_problem(make_frame: FrameFactory) -> None:
    frame = make_frame(dim=128)
    assert frame_problems(frame) is None
    assert frame_problems(frame, expected_dim=128) is None


def test_a_real_jpeg_passes() -> None:
    image_module = pytest.importorskip("PIL.Image")
    buffer = io.BytesIO()
    image_module.new("RGB", (32, 24), (200, 30, 30)).save(buffer, format="JPEG")
    frame = FrameRecord.from_image(
        buffer.getvalue(),
        np.ones(16, dtype=np.float32),
        device_id="cam-1",
        device_seq=1,
        captured_at=datetime(2024, 5, 1, tzinfo=UTC),
        model_version="m",
        width=32,
        height=24,
        scores={"value": 0.9},
        keep_reason="value_above_threshold",
    )
    assert frame_problems(frame, expected_dim=16) is None


@pytest.mark.parametrize(
    ("update", "kwargs", "code"),
    [
        ({}, {"max_image_bytes": 10}, "image_too_large"),
        ({"image_format": "jpeg"}, {}, "image_format_mismatch"),
        ({}, {"expected_dim": 7}, "embedding_dim_mismatch"),
        ({"frame_id": "0" * 64}, {}, "frame_id_mismatch"),
        ({"embedding": _f32(1.0, float("nan"), 2.0)}, {}, "embedding_not_finite"),
        ({"embedding": _f32(1.0, float("inf"), -float("inf"))}, {}, "embedding_not_finite"),
        ({"embedding": _f32(0.0, -0.0, 0.0)}, {}, "embedding_zero_norm"),
        ({"class_probabilities": (0.3, 0.3, 0.3)}, {}, "probabilities_not_normalized"),
        ({"class_probabilities": (0.9, 0.2, 0.0)}, {}, "probabilities_not_normalized"),
    ],
)
def test_each_problem_is_caught_with_its_code(
    make_frame: FrameFactory, update: dict[str, Any], kwargs: dict[str, Any], code: str
) -> None:
    problem = frame_problems(_with(make_frame(), **update), **kwargs)
    assert problem is not None and problem.startswith(code + ": "), problem


def test_problem_details_name_the_values(make_frame: FrameFactory) -> None:
    frame = make_frame(dim=8)
    assert "dimension 8" in str(frame_problems(frame, expected_dim=512))
    assert "512" in str(frame_problems(frame, expected_dim=512))
    digest = hashlib.sha256(frame.image).hexdigest()
    assert digest in str(frame_problems(_with(frame, frame_id="0" * 64)))
    assert "2 NaN or inf" in str(frame_problems(_with(frame, embedding=_f32(np.nan, np.inf, 1))))


def test_probability_sums_within_tolerance_pass(make_frame: FrameFactory) -> None:
    near = 1.0 + PROBABILITY_SUM_TOLERANCE / 2
    frame = _with(make_frame(), class_probabilities=(0.1, 0.2, near - 0.3))
    assert frame_problems(frame) is None
    # float32 softmax outputs of many classes pass after the round trip through JSON
    logits = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(dtype=np.float32)
    frame = make_frame(class_probabilities=probs, predicted_class=int(probs.argmax()))
    assert frame_problems(frame) is None


def test_a_tiny_but_nonzero_embedding_is_fine(make_frame: FrameFactory) -> None:
    assert frame_problems(_with(make_frame(), embedding=_f32(1e-6, 0.0))) is None


def test_decoding_keeps_bad_frames_for_per_frame_answers(make_frame: FrameFactory) -> None:
    good = make_frame(seq=1)
    bad_hash = _with(make_frame(seq=2), frame_id="f" * 64)
    bad_vector = _with(make_frame(seq=3), embedding=_f32(np.nan, 1.0))
    batch = BatchUpload(batch_id="b", device_id="cam-1", frames=(good, bad_hash, bad_vector))
    decoded = decode_batch(encode_batch(batch))
    problems = [frame_problems(f) for f in decoded.frames]
    assert problems[0] is None
    assert str(problems[1]).startswith("frame_id_mismatch")
    assert str(problems[2]).startswith("embedding_not_finite")
