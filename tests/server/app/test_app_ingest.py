"""POST /v1/batches through the real app (in-process client): auth, limits, wire errors and
idempotent answers; no request reaches the catch-all 500 handler."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from testkit.images import jpeg

from curator.wire import MEDIA_TYPE, BatchUpload, FrameRecord, encode_batch
from server.settings import load_settings

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def frame(n: int, seq: int, *, device: str = "cam-1", **fields: Any) -> FrameRecord:
    image = fields.pop("image", jpeg(n))
    embedding = fields.pop("embedding", np.random.default_rng(1000 + n).standard_normal(8))
    return FrameRecord.from_image(
        image,
        embedding,
        device_id=device,
        device_seq=seq,
        captured_at=T0,
        model_version="m1",
        width=16,
        height=12,
        scores={"entropy": 0.5},
        keep_reason="uncertain",
    )


def body(*frames: FrameRecord, batch_id: str = "b1", device: str = "cam-1") -> bytes:
    return encode_batch(BatchUpload(batch_id=batch_id, device_id=device, frames=frames))


def post(client: Any, data: bytes, token: str | None, media_type: str = MEDIA_TYPE) -> Any:
    headers = {"Content-Type": media_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.post("/v1/batches", content=data, headers=headers)


def stored(client: Any) -> dict[str, int]:
    return dict(client.app.state.services.catalog.counts())


def unhandled(client: Any) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("curator_server_unhandled_errors_total "):
            return float(line.split()[1])
    raise AssertionError("metric missing")


@pytest.fixture
def app_client(make_client: Any) -> Any:
    with make_client() as c:
        c.token = c.app.state.services.tokens.create("device", "cam-1").token
        yield c


def test_upload_answers_every_frame_and_a_resend_changes_nothing(app_client: Any) -> None:
    near = np.random.default_rng(1000).standard_normal(8) + 1e-4
    data = body(frame(0, 1), frame(1, 2), frame(2, 3, embedding=near))
    first = post(app_client, data, app_client.token)
    assert first.status_code == 200, first.text
    answers = first.json()["results"]
    assert [a["status"] for a in answers] == ["accepted", "accepted", "duplicate"]
    assert answers[2]["duplicate_of"] == answers[0]["frame_id"]
    counts = stored(app_client)
    again = post(app_client, data, app_client.token)
    assert again.json() == first.json()
    assert stored(app_client) == counts
    assert unhandled(app_client) == 0


def test_bad_frames_are_rejected_one_by_one(app_client: Any) -> None:
    bad_image = jpeg(5)[: len(jpeg(5)) // 2]
    data = body(
        frame(3, 1),
        frame(4, 2, embedding=np.array([np.nan] + [1.0] * 7)),
        frame(5, 3, image=bad_image),
    )
    answers = post(app_client, data, app_client.token).json()["results"]
    assert [a["status"] for a in answers] == ["accepted", "rejected", "rejected"]
    assert answers[1]["reason"].startswith("embedding_not_finite")
    assert answers[2]["reason"].startswith("truncated")
    assert stored(app_client).get("accepted") == 1


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("no token", 401, "unauthorized"),
        ("garbage token", 401, "unauthorized"),
        ("revoked token", 401, "unauthorized"),
        ("labeler token", 403, "forbidden"),
        ("another device", 403, "forbidden"),
        ("wrong content type", 415, "unsupported_media_type"),
        ("bad magic", 400, "wire_format_error"),
        ("truncated body", 400, "wire_format_error"),
        ("wrong schema version", 400, "wire_format_error"),
        ("empty body", 400, "wire_format_error"),
    ],
)
def test_bad_requests_get_a_clear_4xx_and_store_nothing(
    app_client: Any, case: str, status: int, code: str
) -> None:
    data, token, media = body(frame(7, 1)), app_client.token, MEDIA_TYPE
    if case == "no token":
        token = None
    elif case == "garbage token":
        token = "cur_not-a-token"
    elif case == "revoked token":
        assert app_client.app.state.services.tokens.revoke(token)
    elif case == "labeler token":
        token = app_client.app.state.services.tokens.create("labeler").token
    elif case == "another device":
        data = body(frame(7, 1, device="cam-2"), device="cam-2")
    elif case == "wrong content type":
        media = "application/json"
    elif case == "bad magic":
        data = b"JUNK" + data[4:]
    elif case == "truncated body":
        data = data[: len(data) // 2]
    elif case == "wrong schema version":
        data = data.replace(b'"schema_version":1', b'"schema_version":9', 1)
        assert b'"schema_version":9' in data
    elif case == "empty body":
        data = b""
    response = post(app_client, data, token, media)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert stored(app_client) == {"accepted": 0, "duplicate": 0}
    assert unhandled(app_client) == 0


def test_oversized_body_is_refused_before_parsing(make_client: Any, tmp_path: Path) -> None:
    small = load_settings({"data_dir": tmp_path / "small", "max_body_mb": 0.001}, None, {})
    with make_client(small) as c:
        token = c.app.state.services.tokens.create("device", "cam-1").token
        response = post(c, body(frame(8, 1), frame(9, 2)), token)
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "payload_too_large"
        assert stored(c) == {"accepted": 0, "duplicate": 0}


def test_openapi_documents_the_binary_body(app_client: Any) -> None:
    operation = app_client.get("/openapi.json").json()["paths"]["/v1/batches"]["post"]
    assert MEDIA_TYPE in operation["requestBody"]["content"]
    assert {"400", "401", "403", "413", "415"} <= set(operation["responses"])
    assert operation["description"]


def test_metrics_count_answered_frames_and_index_vectors(app_client: Any) -> None:
    bad = frame(11, 3, embedding=np.array([np.inf] + [1.0] * 7))
    post(app_client, body(frame(10, 1), frame(10, 2), bad), app_client.token)
    text = app_client.get("/metrics").text
    assert 'curator_server_frames_total{status="accepted"} 1.0' in text
    assert 'curator_server_frames_total{status="duplicate"} 1.0' in text
    assert 'curator_server_frames_total{status="rejected"} 1.0' in text
    assert 'curator_server_index_vectors{model_version="m1"} 1.0' in text


def _png_bomb(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` but whose data is a few bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_rejected_without_decoding(app_client: Any) -> None:
    bomb = FrameRecord.from_image(
        _png_bomb(50_000, 50_000),
        np.ones(8),
        device_id="cam-1",
        device_seq=1,
        captured_at=T0,
        model_version="m1",
        width=50_000,
        height=50_000,
        image_format="png",
        scores={"entropy": 0.5},
        keep_reason="uncertain",
    )
    answer = post(app_client, body(bomb), app_client.token).json()["results"][0]
    assert answer["status"] == "rejected"
    assert answer["reason"].startswith("too_many_pixels")
    assert stored(app_client) == {"accepted": 0, "duplicate": 0}
