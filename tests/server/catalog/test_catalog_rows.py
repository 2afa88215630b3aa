"""FrameRow's boundary checks, its bridges to curator.wire, and record()'s rules vs an oracle."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from curator.errors import InvalidInputError
from curator.wire import FrameMeta, FrameRecord
from server.blobs import blob_key
from server.catalog import Catalog, FrameRow, check_device_id


def _record(seq: int = 3) -> FrameRecord:
    return FrameRecord.from_image(
        b"\x89PNG\r\n\x1a\n" + bytes([seq]) * 20,
        np.array([0.5, -1.25, 3.0], dtype=np.float32),
        device_id="cam-9",
        device_seq=seq,
        captured_at=datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
        model_version="fmnist@3",
        width=6,
        height=4,
        scores={"entropy": 0.5, "value": 0.8},
        quality={"blur": 12.0},
        image_format="png",
        predicted_class=0,
        class_probabilities=[0.75, 0.25],
        keep_reason="value_above_threshold",
        keep_value=0.8,
        keep_threshold=0.6,
    )


def test_from_record_carries_every_field_and_to_result_answers(tmp_path: Path) -> None:
    rec = _record()
    now = datetime(2024, 5, 1, 12, 5, tzinfo=UTC)
    key = blob_key(rec.image, "png")
    row = FrameRow.from_record(rec, status="accepted", received_at=now, batch_id="b", blob_key=key)
    assert row.embedding == rec.embedding and row.image_bytes == len(rec.image)
    assert row.captured_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert row.captured_at is not None and row.captured_at.tzinfo is UTC
    assert (row.scores, row.quality, row.class_probabilities) == (
        {"entropy": 0.5, "value": 0.8},
        {"blur": 12.0},
        (0.75, 0.25),
    )
    with Catalog(tmp_path / "c.db") as catalog:
        (stored,) = catalog.record([row])
        assert stored.to_result().model_dump() == {
            "frame_id": rec.frame_id,
            "device_seq": 3,
            "status": "accepted",
            "duplicate_of": None,
            "similarity": None,
            "reason": None,
        }
        embedding = stored.embedding_array()
        assert embedding is not None
        np.testing.assert_array_equal(embedding, rec.embedding_array())
    meta = FrameMeta.model_validate(rec.model_dump(exclude={"embedding", "image"}))
    bare = FrameRow.from_record(meta, status="rejected", received_at=now, reason="x: y")
    assert bare.embedding is None and bare.image_bytes is None and bare.embedding_dim is None
    assert bare.to_result().reason == "x: y"


_NOW = datetime(2024, 5, 1, tzinfo=UTC)
_ID = "a" * 64


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"frame_id": "A" * 64}, "frame_id"),
        ({"device_id": "cam 1"}, "device_id"),
        ({"device_seq": 0}, "device_seq"),
        ({"device_seq": True}, "device_seq"),
        ({"status": "kept"}, "status"),
        ({"received_at": datetime(2024, 5, 1)}, "timezone-aware"),
        ({"status": "duplicate", "duplicate_of": _ID, "similarity": 0.9}, "dedup_method"),
        (
            {"status": "duplicate", "duplicate_of": _ID, "similarity": 1.5, "dedup_method": "near"},
            "similarity",
        ),
        (
            {"status": "duplicate", "duplicate_of": _ID, "similarity": 1.0, "dedup_method": "x"},
            "dedup_method",
        ),
        ({"similarity": 0.5}, "only a duplicate"),
        ({"status": "rejected"}, "reason"),
        ({"reason": "why"}, "reason"),
        ({"status": "accepted", "blob_key": None}, "blob_key"),
        ({"embedding": b"abc"}, "4 per value"),
        ({"model_version": None}, "model_version"),
        ({"blob_key": "/etc/passwd"}, "path traversal"),
        ({"scores": {"entropy": float("nan")}}, "finite"),
    ],
)
def test_contradictory_rows_are_refused(fields: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {
        "frame_id": _ID,
        "device_id": "cam-1",
        "device_seq": 1,
        "status": "accepted",
        "received_at": _NOW,
        "model_version": "m",
        "embedding": b"\x00\x00\x80\x3f",
        "blob_key": blob_key(b"x", "jpeg"),
    }
    with pytest.raises(InvalidInputError, match=message):
        FrameRow(**{**base, **fields})


_META = _record().model_dump(exclude={"embedding", "image"})


@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=70)
    | st.from_regex(r"\A[A-Za-z0-9._/-]{0,66}\n?\Z")
)
def test_device_ids_are_checked_exactly_like_the_wire_does(device_id: str) -> None:
    try:
        FrameMeta.model_validate({**_META, "device_id": device_id})
        wire_ok = True
    except ValidationError:
        wire_ok = False
    try:
        check_device_id(device_id)
        ours_ok = True
    except InvalidInputError:
        ours_ok = False
    assert ours_ok == wire_ok, device_id


def test_device_id_edge_cases() -> None:
    assert check_device_id("a" * 64) == "a" * 64
    for bad in ("", "a" * 65, "cam\n", "../x", "cam/1", 7):
        with pytest.raises(InvalidInputError):
            check_device_id(bad)  # type: ignore[arg-type]


# -- record() against an oracle ---------------------------------------------------------------

_upload = st.tuples(
    st.sampled_from(["cam-1", "cam-2"]), st.integers(1, 4), st.integers(1, 5), st.booleans()
)


def _oracle(
    batches: list[list[tuple[str, int, int, bool]]],
) -> tuple[list[list[tuple[Any, ...]]], int]:
    """The answers the documented rules give, as (status, duplicate_of image, method or reason
    code), and how many uploads end up stored. Image 0 is the near-duplicate target; an exact
    re-upload names the accepted frame its image resolves to."""
    uploads: dict[tuple[str, int], int] = {}
    owner: dict[int, tuple[str, int]] = {}
    decided: dict[int, tuple[Any, ...]] = {}
    out = []

    def exact(img: int) -> tuple[Any, ...]:
        return ("duplicate", 0 if decided[img][0] == "duplicate" else img, "exact")

    for batch in batches:
        answers: list[tuple[Any, ...]] = []
        for device, seq, img, as_duplicate in batch:
            if (device, seq) in uploads:
                if uploads[(device, seq)] != img:
                    answers.append(("rejected", None, "device_seq_reused"))
                elif owner[img] == (device, seq):
                    answers.append(decided[img])
                else:
                    answers.append(exact(img))
            elif img in owner:
                uploads[(device, seq)] = img
                answers.append(exact(img))
            else:
                uploads[(device, seq)], owner[img] = img, (device, seq)
                decided[img] = (
                    ("duplicate", 0, "near") if as_duplicate else ("accepted", None, None)
                )
                answers.append(decided[img])
        out.append(answers)
    return out, len(uploads)


def _summary(row: FrameRow, ids: dict[str, int]) -> tuple[Any, ...]:
    if row.status == "rejected":
        assert row.reason is not None
        return ("rejected", None, row.reason.split(":")[0])
    dup = None if row.duplicate_of is None else ids[row.duplicate_of]
    return (row.status, dup, row.dedup_method)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(_upload, min_size=1, max_size=6), min_size=1, max_size=4))
def test_record_follows_the_rules_and_replays_identically(
    frames: Any, batches: list[list[tuple[str, int, int, bool]]]
) -> None:
    ids = {frames.frame_id(n): n for n in range(6)}
    with tempfile.TemporaryDirectory() as tmp, Catalog(Path(tmp) / "c.db") as catalog:
        catalog.record([frames.row(0, device="seed", seq=1)])  # image 0: a near-dup target
        got = []
        known: set[int] = {0}
        for batch in batches:
            rows = []
            for device, seq, img, as_duplicate in batch:
                # decide "near duplicate of 0" only for images new to the catalog
                if as_duplicate and img not in known:
                    rows.append(frames.near_duplicate(img, of=0, device=device, seq=seq))
                else:
                    rows.append(frames.row(img, device=device, seq=seq))
            answers = catalog.record(rows)
            known |= {ids[a.frame_id] for a in answers if a.status != "rejected"}
            got.append([_summary(a, ids) for a in answers])
            assert catalog.record(rows) == answers  # a re-sent batch: same answers
        expected, n_uploads = _oracle([[("seed", 1, 0, False)], *batches])
        assert got == expected[1:]
        assert sum(catalog.counts().values()) == n_uploads
