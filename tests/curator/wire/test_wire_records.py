from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from curator.errors import WireFormatError
from curator.wire import SCHEMA_VERSION, BatchUpload, FrameRecord

FrameFactory = Callable[..., FrameRecord]


def _fields(frame: FrameRecord, **changes: Any) -> dict[str, Any]:
    return {**frame.model_dump(), **changes}


def _rejects(frame: FrameRecord, field: str, **changes: Any) -> str:
    """Validating ``frame`` with ``changes`` fails, and the error names ``field``."""
    with pytest.raises(ValidationError) as info:
        FrameRecord.model_validate(_fields(frame, **changes))
    locs = {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}
    assert any(loc == field or loc.startswith(field + ".") for loc in locs), locs
    return str(info.value)


def test_from_image_hashes_the_image_and_keeps_the_embedding_bit_for_bit(
    make_frame: FrameFactory,
) -> None:
    vector = np.array([1.5, -0.0, 3.4028235e38, 1e-45], dtype=np.float32)
    frame = make_frame(embedding=vector)
    assert frame.frame_id == hashlib.sha256(frame.image).hexdigest()
    got = frame.embedding_array()
    assert got.dtype == np.float32 and got.shape == (4,) and frame.embedding_dim == 4
    assert got.tobytes() == vector.tobytes()
    assert not got.flags.writeable


def test_embedding_accepts_arrays_sequences_and_raw_bytes(make_frame: FrameFactory) -> None:
    frame = make_frame()
    want = np.array([1.0, 2.0, 3.0], dtype="<f4").tobytes()
    for value in ([1, 2, 3], (1.0, 2.0, 3.0), np.array([1.0, 2.0, 3.0]), want, bytearray(want)):
        assert FrameRecord.model_validate(_fields(frame, embedding=value)).embedding == want


@pytest.mark.parametrize(
    "bad", [b"", b"abc", "abcd", [], np.zeros((2, 2)), np.array(["a"]), [True, False]]
)
def test_embedding_rejects_non_vectors(make_frame: FrameFactory, bad: Any) -> None:
    _rejects(make_frame(), "embedding", embedding=bad)


def test_captured_at_must_be_aware_and_is_normalised_to_utc(make_frame: FrameFactory) -> None:
    frame = make_frame()
    message = _rejects(frame, "captured_at", captured_at=datetime(2024, 5, 1, 12, 0))
    assert "timezone" in message
    for number in (1714564800, 1714564800.0, True):
        _rejects(frame, "captured_at", captured_at=number)
    local = datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    got = FrameRecord.model_validate(_fields(frame, captured_at=local)).captured_at
    assert got == datetime(2024, 5, 1, 12, 30, tzinfo=UTC) and got.tzinfo is UTC


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "cam/1", "kamera-ü", "cam\n1", 7])
def test_bad_device_ids_are_rejected(make_frame: FrameFactory, bad: Any) -> None:
    _rejects(make_frame(), "device_id", device_id=bad)


@pytest.mark.parametrize("good", ["a", "cam-1", "site_3.cam-07", "x" * 64])
def test_good_device_ids_pass(make_frame: FrameFactory, good: str) -> None:
    assert make_frame(device_id=good).device_id == good


@pytest.mark.parametrize("bad", [0, -1, True, 1.0, "1", 2**63])
def test_device_seq_must_be_a_positive_int(make_frame: FrameFactory, bad: Any) -> None:
    _rejects(make_frame(), "device_seq", device_seq=bad)


@pytest.mark.parametrize("field", ["scores", "quality"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), "0.5", True])
def test_named_values_must_be_finite_numbers(
    make_frame: FrameFactory, field: str, bad: Any
) -> None:
    _rejects(make_frame(), field, **{field: {"entropy": bad}})


@pytest.mark.parametrize("name", ["", "1st", "has space", "x" * 65])
def test_score_names_are_restricted(make_frame: FrameFactory, name: str) -> None:
    _rejects(make_frame(), "scores", scores={name: 0.5})


def test_unknown_fields_are_forbidden(make_frame: FrameFactory) -> None:
    message = _rejects(make_frame(), "colour", colour="red")
    assert "Extra inputs are not permitted" in message


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("frame_id", {"frame_id": "AB" * 32}),
        ("frame_id", {"frame_id": "ab" * 31}),
        ("width", {"width": 0}),
        ("height", {"height": 70_000}),
        ("image_format", {"image_format": "gif"}),
        ("image", {"image": b""}),
        ("image", {"image": "not bytes"}),
        ("model_version", {"model_version": ""}),
        ("model_version", {"model_version": "v1\x00"}),
        ("keep_reason", {"keep_reason": ""}),
        ("keep_value", {"keep_value": float("nan")}),
        ("class_probabilities", {"class_probabilities": (0.5, 1.5)}),
        ("class_probabilities", {"class_probabilities": (1.0,), "predicted_class": 0}),
        ("predicted_class", {"predicted_class": -1}),
    ],
)
def test_field_ranges(make_frame: FrameFactory, field: str, changes: dict[str, Any]) -> None:
    _rejects(make_frame(), field, **changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"predicted_class": None},
        {"class_probabilities": None},
        {"predicted_class": 3, "class_probabilities": (0.2, 0.3, 0.5)},
    ],
)
def test_prediction_fields_come_together_and_agree(
    make_frame: FrameFactory, changes: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError, match="predicted_class"):
        FrameRecord.model_validate(_fields(make_frame(), **changes))


def test_an_embedding_only_model_sends_no_prediction(make_frame: FrameFactory) -> None:
    frame = make_frame(predicted_class=None, class_probabilities=None)
    assert frame.predicted_class is None and frame.class_probabilities is None


def test_from_image_raises_wire_format_error_naming_the_field(make_frame: FrameFactory) -> None:
    with pytest.raises(WireFormatError, match="device_seq"):
        make_frame(device_seq=0)
    with pytest.raises(WireFormatError, match="captured_at"):
        make_frame(captured_at=datetime(2024, 1, 1))
    with pytest.raises(WireFormatError, match="class_probabilities must be 1-D"):
        make_frame(class_probabilities=[[0.5, 0.5]])
    with pytest.raises(WireFormatError):
        make_frame(device_seq=1.5)


def test_from_image_accepts_numpy_scalars(make_frame: FrameFactory) -> None:
    frame = make_frame(
        device_seq=np.int64(5),
        width=np.int32(6),
        scores={"entropy": np.float32(0.25)},
        predicted_class=np.int64(1),
        class_probabilities=np.array([0.25, 0.75], dtype=np.float32),
        keep_value=np.float64(0.5),
    )
    assert frame.device_seq == 5 and frame.scores == {"entropy": 0.25}
    assert frame.class_probabilities == (0.25, 0.75)


def test_records_are_frozen(make_frame: FrameFactory) -> None:
    frame = make_frame()
    with pytest.raises(ValidationError):
        frame.device_seq = 2  # type: ignore[misc]


def test_a_record_round_trips_through_json_with_base64_blobs(make_frame: FrameFactory) -> None:
    frame = make_frame()
    assert FrameRecord.model_validate_json(frame.model_dump_json()) == frame


def test_batch_frames_must_come_from_its_device(make_frame: FrameFactory) -> None:
    frames = (make_frame(seq=1), make_frame(seq=2, device_id="cam-2"))
    with pytest.raises(ValidationError, match=r"frames\[1\] has device_id 'cam-2'"):
        BatchUpload(batch_id="b", device_id="cam-1", frames=frames)


def test_batch_rejects_a_repeated_device_seq(make_frame: FrameFactory) -> None:
    frames = (make_frame(seq=4), make_frame(seq=4))
    with pytest.raises(ValidationError, match="repeats device_seq 4"):
        BatchUpload(batch_id="b", device_id="cam-1", frames=frames)


def test_batch_schema_version_and_size(make_frame: FrameFactory) -> None:
    frame = make_frame()
    batch = BatchUpload(batch_id="b", device_id="cam-1", frames=(frame,))
    assert batch.schema_version == SCHEMA_VERSION == 1
    with pytest.raises(ValidationError, match=r"unsupported schema version 2.*schema version 1"):
        BatchUpload(schema_version=2, batch_id="b", device_id="cam-1", frames=(frame,))
    with pytest.raises(ValidationError, match="at least 1"):
        BatchUpload(batch_id="b", device_id="cam-1", frames=())
    with pytest.raises(ValidationError, match="batch_id"):
        BatchUpload(batch_id="no spaces", device_id="cam-1", frames=(frame,))


def test_a_date_that_leaves_the_range_in_utc_is_a_wire_format_error(
    make_frame: FrameFactory,
) -> None:
    from datetime import timedelta, timezone

    edge = datetime(9999, 12, 31, 23, 0, tzinfo=timezone(-timedelta(hours=5)))
    with pytest.raises(WireFormatError, match="captured_at"):
        make_frame(captured_at=edge)
