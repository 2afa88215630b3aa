from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from curator.errors import WireFormatError
from curator.wire import (
    FRAMING_VERSION,
    MAGIC,
    MEDIA_TYPE,
    BatchUpload,
    FrameRecord,
    batch_header_schema,
    decode_batch,
    encode_batch,
)

BatchFactory = Callable[..., BatchUpload]

_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,15}", fullmatch=True)
_finite = st.floats(allow_nan=False, allow_infinity=False)
_offsets = st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))


@st.composite
def _frames(draw: st.DrawFn, seq: int) -> tuple[FrameRecord, np.ndarray]:
    """A random valid record (its content may still have per-frame problems) and its vector."""
    vector = draw(
        arrays(np.float32, st.integers(1, 48), elements=st.floats(width=32, allow_subnormal=True))
    )
    probs = draw(st.none() | st.lists(st.floats(0.0, 1.0), min_size=2, max_size=12))
    fields = {
        "frame_id": draw(st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
        "device_id": "dev.7_x-1",
        "device_seq": seq,
        "captured_at": draw(
            st.datetimes(
                min_value=datetime(1970, 1, 2),
                max_value=datetime(2200, 1, 1),
                timezones=st.builds(timezone, _offsets),
            )
        ),
        "model_version": draw(
            st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)
        ),
        "scores": draw(st.dictionaries(_names, _finite, max_size=5)),
        "quality": draw(st.dictionaries(_names, _finite, max_size=3)),
        "predicted_class": None if probs is None else draw(st.integers(0, len(probs) - 1)),
        "class_probabilities": probs,
        "width": draw(st.integers(1, 65_535)),
        "height": draw(st.integers(1, 65_535)),
        "image_format": draw(st.sampled_from(["jpeg", "png"])),
        "keep_reason": draw(_names),
        "keep_value": draw(st.none() | _finite),
        "keep_threshold": draw(st.none() | _finite),
        "embedding": vector,
        "image": draw(st.binary(min_size=1, max_size=3000)),
    }
    return FrameRecord.model_validate(fields), vector


@st.composite
def _batches(draw: st.DrawFn) -> tuple[BatchUpload, list[np.ndarray]]:
    seqs = draw(st.lists(st.integers(1, 2**63 - 1), min_size=1, max_size=6, unique=True))
    drawn = [draw(_frames(seq)) for seq in seqs]
    batch = BatchUpload(
        batch_id=draw(st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)),
        device_id="dev.7_x-1",
        frames=tuple(frame for frame, _ in drawn),
    )
    return batch, [vector for _, vector in drawn]


@given(_batches())
def test_round_trip_is_exact(drawn: tuple[BatchUpload, list[np.ndarray]]) -> None:
    batch, vectors = drawn
    data = encode_batch(batch)
    assert data[:4] == MAGIC
    decoded = decode_batch(data)
    assert decoded == batch
    for got, sent, vector in zip(decoded.frames, batch.frames, vectors, strict=True):
        assert got.embedding_array().tobytes() == vector.astype("<f4").tobytes()
        assert got.image == sent.image
        assert got.captured_at == sent.captured_at and got.captured_at.tzinfo is UTC
    assert encode_batch(decoded) == data


def test_overhead_is_small_and_far_below_base64_json(make_batch: BatchFactory) -> None:
    rng = np.random.default_rng(0)
    frames = []
    for i, frame in enumerate(make_batch(n=32).frames):
        image = b"\xff\xd8\xff" + rng.bytes(20_000)  # about a 320x240 JPEG
        frames.append(
            frame.model_copy(
                update={
                    "image": image,
                    "image_format": "jpeg",
                    "frame_id": hashlib.sha256(image).hexdigest(),
                    "embedding": rng.standard_normal(512).astype("<f4").tobytes(),
                    "class_probabilities": tuple(np.full(10, 0.1).tolist()),
                    "device_seq": i + 1,
                }
            )
        )
    batch = BatchUpload(batch_id="b", device_id="cam-1", frames=tuple(frames))
    raw = sum(len(f.image) + len(f.embedding) for f in frames)
    encoded = len(encode_batch(batch))
    as_json = len(
        json.dumps(
            {
                **batch.model_dump(mode="json", exclude={"frames"}),
                "frames": [
                    {
                        **f.model_dump(mode="json", exclude={"image", "embedding"}),
                        "image": base64.b64encode(f.image).decode(),
                        "embedding": f.embedding_array().tolist(),
                    }
                    for f in frames
                ],
            }
        )
    )
    assert encoded < raw + 1024 * len(frames) + 256
    assert (encoded - raw) / raw < 0.05
    assert encoded < 0.8 * as_json


def _rebody(
    data: bytes, change: Callable[[dict[str, Any]], Any], tail: bytes | None = None
) -> bytes:
    """``data`` with its header changed in place by ``change`` (and its payload swapped)."""
    head_len = struct.unpack_from("<I", data, 6)[0]
    header = json.loads(data[10 : 10 + head_len])
    change(header)
    head = json.dumps(header).encode()
    payload = data[10 + head_len :] if tail is None else tail
    return data[:6] + struct.pack("<I", len(head)) + head + payload


def _raises(data: bytes, *needles: str, **limits: int) -> str:
    with pytest.raises(WireFormatError) as info:
        decode_batch(data, **limits)
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    return message


def test_bad_magic(make_batch: BatchFactory) -> None:
    data = encode_batch(make_batch(n=1))
    _raises(b"PK\x03\x04" + data[4:], "bad magic", "CURB")
    _raises(b"{}", "bad magic")


def test_unsupported_framing_version_names_both(make_batch: BatchFactory) -> None:
    data = encode_batch(make_batch(n=1))
    bumped = data[:4] + struct.pack("<H", FRAMING_VERSION + 1) + data[6:]
    _raises(bumped, f"framing version {FRAMING_VERSION + 1}", f"framing version {FRAMING_VERSION}")


@pytest.mark.parametrize("version", [2, 0, "1", None, True])
def test_unsupported_schema_version_names_both(make_batch: BatchFactory, version: Any) -> None:
    data = _rebody(encode_batch(make_batch(n=1)), lambda h: h.update(schema_version=version))
    _raises(data, f"unsupported schema version {version!r}", "schema version 1")


def test_missing_schema_version(make_batch: BatchFactory) -> None:
    data = _rebody(encode_batch(make_batch(n=1)), lambda h: h.pop("schema_version"))
    _raises(data, "no schema_version")


def test_every_truncation_is_reported_as_truncated() -> None:
    data = _small_body()
    for cut in range(len(data)):
        _raises(data[:cut], "truncated")


@functools.cache
def _small_body() -> bytes:
    frames = tuple(
        FrameRecord.from_image(
            b"\x89PNG\r\n\x1a\n" + bytes([seq]) * 5,
            [1.0, -2.0, 0.5],
            device_id="cam-1",
            device_seq=seq,
            captured_at=datetime(2024, 5, 1, tzinfo=UTC),
            model_version="m",
            width=2,
            height=2,
            image_format="png",
            scores={"value": 0.5},
            predicted_class=0,
            class_probabilities=[0.75, 0.25],
            keep_reason="value_above_threshold",
        )
        for seq in (1, 2)
    )
    return encode_batch(BatchUpload(batch_id="b", device_id="cam-1", frames=frames))


@given(st.data())
def test_corrupted_bodies_raise_only_wire_format_errors(data: st.DataObject) -> None:
    body = bytearray(_small_body())
    for _ in range(data.draw(st.integers(1, 4))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(WireFormatError):  # any other exception fails the test
        decode_batch(bytes(body))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_a_good_preamble_raise_only_wire_format_errors(
    junk: bytes,
) -> None:
    with pytest.raises(WireFormatError):
        decode_batch(MAGIC + struct.pack("<HI", FRAMING_VERSION, len(junk)) + junk)


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b'{"schema_version": 1,', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"schema_version": 1, "schema_version": 1}', "duplicate key 'schema_version'"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'{"schema_version": 1, "n": ' + b"9" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_bad_headers(header: bytes, needle: str) -> None:
    _raises(MAGIC + struct.pack("<HI", FRAMING_VERSION, len(header)) + header, needle)


def test_header_too_large_is_refused_before_reading_it(make_batch: BatchFactory) -> None:
    data = encode_batch(make_batch(n=1))
    _raises(data, "header too large", max_header_bytes=100)
    # A 4 GiB length claim on a tiny body is refused by the limit, without allocating.
    huge = data[:6] + struct.pack("<I", 2**32 - 1) + data[10:]
    _raises(huge, "header too large")


def test_too_many_frames(make_batch: BatchFactory) -> None:
    _raises(encode_batch(make_batch(n=3)), "too many frames: 3", "limit is 2", max_frames=2)


def test_blob_size_limits(make_batch: BatchFactory) -> None:
    data = encode_batch(make_batch(n=2, dim=16))
    _raises(data, "frames[0].image is", "limit is 10", max_image_bytes=10)
    _raises(data, "frames[0].embedding has dimension 16", "limit is 8", max_embedding_dim=8)


def test_embedding_length_must_be_whole_float32s(make_batch: BatchFactory) -> None:
    def shrink(h: dict[str, Any]) -> None:
        h["frames"][0]["embedding"]["length"] -= 1
        h["frames"][0]["image"]["offset"] -= 1

    data = encode_batch(make_batch(n=1))
    _raises(_rebody(data, shrink, tail=_payload(data)[1:]), "multiple of 4")


def _payload(data: bytes) -> bytes:
    return data[10 + struct.unpack_from("<I", data, 6)[0] :]


def test_blobs_outside_the_payload(make_batch: BatchFactory) -> None:
    def move(h: dict[str, Any]) -> None:
        h["frames"][0]["image"]["offset"] = 10**6

    _raises(_rebody(encode_batch(make_batch(n=1)), move), "payload bytes", "only")


def test_overlapping_blobs(make_batch: BatchFactory) -> None:
    def overlap(h: dict[str, Any]) -> None:
        h["frames"][1]["embedding"]["offset"] = h["frames"][0]["image"]["offset"]

    _raises(_rebody(encode_batch(make_batch(n=2)), overlap), "overlap")


def test_trailing_garbage_and_gaps(make_batch: BatchFactory) -> None:
    data = encode_batch(make_batch(n=2))
    _raises(data + b"\x00", "1 bytes no frame refers to")

    def gap(h: dict[str, Any]) -> None:
        h["frames"][1]["image"]["offset"] += 1

    _raises(_rebody(data, gap, tail=_payload(data) + b"\x00"), "no frame refers to")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            lambda h: h["frames"][0].update(captured_at="2024-05-01T12:00:00"),
            "frames.0.captured_at",
        ),
        (lambda h: h["frames"][1].update(device_seq=0), "frames.1.device_seq"),
        (lambda h: h["frames"][0].update(colour="red"), "frames.0.colour"),
        (lambda h: h["frames"][0]["scores"].update(entropy="NaN"), "frames.0.scores.entropy"),
        (lambda h: h["frames"][0]["embedding"].update(offset=-4), "frames.0.embedding.offset"),
        (lambda h: h.update(device_id="cam 1"), "device_id"),
        (lambda h: h.update(frames=[]), "frames"),
        (lambda h: h["frames"][1].update(device_id="cam-2"), "frames[1] has device_id 'cam-2'"),
    ],
)
def test_invalid_fields_are_named(
    make_batch: BatchFactory, change: Callable[[dict[str, Any]], None], needle: str
) -> None:
    _raises(_rebody(encode_batch(make_batch(n=2)), change), "invalid batch header", needle)


def test_non_finite_json_numbers_are_rejected_with_the_field(make_batch: BatchFactory) -> None:
    data = encode_batch(make_batch(n=1))
    head_len = struct.unpack_from("<I", data, 6)[0]
    text = data[10 : 10 + head_len].replace(b'"entropy":0.71', b'"entropy":NaN')
    assert text != data[10 : 10 + head_len]
    body = data[:6] + struct.pack("<I", len(text)) + text + _payload(data)
    _raises(body, "frames.0.scores.entropy", "finite")


def test_decoded_embeddings_are_float32_and_blobs_are_independent_bytes(
    make_batch: BatchFactory,
) -> None:
    batch = make_batch(n=2)
    buffer = bytearray(encode_batch(batch))
    decoded = decode_batch(buffer)
    buffer[-5:] = b"XXXXX"  # the caller's buffer may be reused afterwards
    assert decoded == batch
    assert decoded.frames[1].embedding_array().dtype == np.float32


def test_media_type_and_header_schema() -> None:
    assert MEDIA_TYPE == "application/vnd.curator.batch"
    schema = batch_header_schema()
    frame = schema["$defs"]["_FrameEntry"]
    assert {"embedding", "image", "captured_at", "frame_id"} <= set(frame["properties"])
    assert frame["additionalProperties"] is False
