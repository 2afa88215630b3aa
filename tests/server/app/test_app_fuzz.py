"""Fuzzing the server API: no request, however malformed, gets a 5xx.

Two layers:

- schemathesis over every operation of the app's own OpenAPI schema, in process (ASGI), sent as
  generated and again with an admin, a device, a labeler, an unknown and no bearer token; the
  answers must be below 500 and conform to the schema (status, content type, body, headers).
- hypothesis mutations of valid ``application/vnd.curator.batch`` bodies (truncation, flipped,
  inserted and deleted bytes, wrong declared lengths and versions, header values of the wrong
  type, huge, NaN), which reach the decoder and the ingest service far deeper than bytes drawn
  from the schema's ``format: binary`` would: every answer is below 500, a 4xx carries the JSON
  error body and stores nothing, a 200 answers each frame of the body in order.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from curator.wire import MEDIA_TYPE, BatchUpload, FrameRecord, decode_batch, encode_batch
from server.app import create_app
from server.auth import TokenStore
from server.settings import ServerSettings, load_settings

with warnings.catch_warnings():
    # starlette 1.x warns at import that its TestClient moves to httpx2; not our code
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DEVICE = "cam-1"
UNKNOWN_TOKEN = "cur_" + "A" * 43  # well formed, never issued
_PREAMBLE = struct.Struct("<4sHI")

# The app is shared by the examples of one test (its stores persist between them); every
# assertion below holds whatever earlier examples stored, so the health check is not needed.
_SHARED_APP = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


# --- valid bodies -------------------------------------------------------------------------


def _image(n: int, image_format: str) -> bytes:
    pixels = np.random.default_rng(n).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=image_format.upper())
    return out.getvalue()


_IMAGES = [(_image(n, fmt), fmt) for n, fmt in enumerate(["jpeg"] * 4 + ["png"] * 2)]


@st.composite
def frames(draw: st.DrawFn, seq: int, device: str = DEVICE) -> FrameRecord:
    """A valid record: one of a few images (so exact duplicates happen), 4- or 8-d."""
    image, image_format = draw(st.sampled_from(_IMAGES))
    dim = draw(st.sampled_from([4, 8]))
    embedding = np.random.default_rng(draw(st.integers(0, 5))).standard_normal(dim)
    probs = draw(st.sampled_from([None, (0.25, 0.75), (0.1, 0.2, 0.7)]))
    return FrameRecord.from_image(
        image,
        embedding,
        device_id=device,
        device_seq=seq,
        captured_at=T0,
        model_version=draw(st.sampled_from(["m1", "m2"])),
        width=16,
        height=12,
        image_format=image_format,  # type: ignore[arg-type]
        scores={"entropy": draw(st.floats(0, 1))},
        keep_reason="uncertain",
        predicted_class=None if probs is None else len(probs) - 1,
        class_probabilities=probs,
    )


@st.composite
def batches(draw: st.DrawFn, device: str = DEVICE) -> BatchUpload:
    """1-3 valid frames with distinct sequence numbers from a small range (so re-sends and
    sequence numbers reused for other images happen across examples)."""
    seqs = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3, unique=True))
    return BatchUpload(
        batch_id=draw(st.sampled_from(["b1", "b2", "b-3"])),
        device_id=device,
        frames=tuple(draw(frames(seq, device)) for seq in seqs),
    )


# --- mutations ----------------------------------------------------------------------------

_ODD_VALUES: list[Any] = [
    None,
    True,
    "",
    "x" * 300,
    "\u00e9\u0000\ud7ff",
    -1,
    0,
    2**31,
    2**63,
    2**64 + 1,
    10**400,
    -(10**30),
    1.5,
    1e308,
    -0.0,
    float("nan"),
    float("inf"),
    float("-inf"),
    [],
    [1, "a"],
    {},
    {"offset": 0},
    {"offset": 0, "length": 4},
    "2024-05-01T12:00:00",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00Z",
    "2024-05-01T12:00:00.123456789+00:00",
    "\ud800",
    "a\u2028b",
    2**63 - 1,
    65_535,
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key/index path in a JSON value, the root excluded."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        yield (*prefix, key)
        if isinstance(child, dict | list) and child:
            yield from _paths(child, (*prefix, key))


def _split(body: bytes) -> tuple[dict[str, Any], bytes]:
    _, _, head_len = _PREAMBLE.unpack_from(body)
    return json.loads(body[10 : 10 + head_len]), body[10 + head_len :]


def _join(header: Any, payload: bytes) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()  # NaN/Infinity written as is
    return _PREAMBLE.pack(b"CURB", 1, len(head)) + head + payload


@st.composite
def header_edits(draw: st.DrawFn, body: bytes) -> bytes:
    """Re-frame ``body`` after replacing, deleting or adding one value of its JSON header."""
    header, payload = _split(body)
    path = draw(st.sampled_from(list(_paths(header))))
    parent = header
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
    if action == "replace":
        parent[path[-1]] = draw(st.sampled_from(_ODD_VALUES))
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent["unexpected"] = 1
    else:
        parent.append(draw(st.sampled_from(_ODD_VALUES)))
    return _join(header, payload)


@st.composite
def byte_edits(draw: st.DrawFn, body: bytes) -> bytes:
    """One blind edit of the bytes: truncate, flip, insert, delete or rewrite the preamble."""
    data = bytearray(body)
    at = draw(st.integers(0, len(data)))
    kind = draw(
        st.sampled_from(["truncate", "flip", "insert", "delete", "head_len", "framing", "magic"])
    )
    if kind == "truncate":
        del data[at:]
    elif kind == "flip":
        for i in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[i] ^= draw(st.integers(1, 255))
    elif kind == "insert":
        data[at:at] = draw(st.binary(min_size=1, max_size=16))
    elif kind == "delete":
        del data[at : at + draw(st.integers(1, 16))]
    elif kind == "head_len":
        data[6:10] = struct.pack(
            "<I", draw(st.sampled_from([0, 1, 2**31, 2**32 - 1]) | st.integers(0, len(body)))
        )
    elif kind == "framing":
        data[4:6] = struct.pack("<H", draw(st.integers(0, 2**16 - 1)))
    else:
        data[:4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(data)


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    """A valid body, then one to three edits (header values or raw bytes)."""
    body = encode_batch(draw(batches()))
    for _ in range(draw(st.integers(1, 3))):
        if len(body) >= 10 and draw(st.booleans()):
            try:
                body = draw(header_edits(body))
                continue
            except (ValueError, struct.error):  # earlier byte edits broke the JSON: edit bytes
                pass
        if body:
            body = draw(byte_edits(body))
    return body


@st.composite
def other_schema_versions(draw: st.DrawFn) -> bytes:
    """A valid body under another schema version (any JSON value)."""
    header, payload = _split(encode_batch(draw(batches())))
    header["schema_version"] = draw(
        st.sampled_from([0, 2, -1, 2**64, "1", 1.0, True, None, float("nan"), [1]])
    )
    return _join(header, payload)


def bodies() -> st.SearchStrategy[bytes]:
    """Mostly mutated bodies; valid ones, random bytes, an empty one, another device's."""
    return st.sampled_from(
        [
            mutated_bodies(),
            mutated_bodies(),
            mutated_bodies(),
            batches().map(encode_batch),
            other_schema_versions(),
            batches(device="cam-2").map(encode_batch),
            st.binary(max_size=64),
            st.just(b""),
        ]
    ).flatmap(lambda strategy: strategy)


# --- the app ------------------------------------------------------------------------------


def _tokens(settings: ServerSettings) -> dict[str, str | None]:
    """Authorization header values: one per role, a well-formed unknown token, none."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with TokenStore(settings.catalog_path) as store:
        issued = {
            "admin": store.create("admin").token,
            "device": store.create("device", DEVICE).token,
            "labeler": store.create("labeler").token,
        }
    return {
        **{role: f"Bearer {token}" for role, token in issued.items()},
        "unknown": f"Bearer {UNKNOWN_TOKEN}",
        "none": None,
    }


@pytest.fixture
def fuzz_app(settings: ServerSettings) -> tuple[FastAPI, dict[str, str | None]]:
    """An app on a fresh data dir with its tokens issued; schemathesis runs its lifespan."""
    tokens = _tokens(settings)
    return create_app(settings), tokens


# --- 1. every operation of the schema -----------------------------------------------------

schemathesis.openapi.media_type(MEDIA_TYPE, bodies())
_OPENAPI = create_app(load_settings({"data_dir": Path("unused")}, None, {})).openapi()
schema = schemathesis.openapi.from_dict(_OPENAPI)

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
]


@schema.parametrize()
@settings(max_examples=40, suppress_health_check=_SHARED_APP)
def test_no_generated_request_gets_a_5xx(
    case: Any, fuzz_app: tuple[FastAPI, dict[str, str | None]]
) -> None:
    app, tokens = fuzz_app
    case.call_and_validate(app=app, checks=CHECKS)  # as generated: any Authorization value
    for value in tokens.values():
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        if value is not None:
            headers["Authorization"] = value
        case.headers = headers
        case.call_and_validate(app=app, checks=CHECKS)


# --- 2. mutated batch bodies --------------------------------------------------------------


def _stored(client: Any) -> tuple[dict[str, int], int]:
    services = client.app.state.services
    blobs = sum(1 for p in Path(services.settings.blob_location).rglob("*") if p.is_file())
    return dict(services.catalog.counts()), blobs


def _unhandled(client: Any) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("curator_server_unhandled_errors_total "):
            return float(line.split()[1])
    raise AssertionError("metric missing")


@pytest.fixture
def batch_client(settings: ServerSettings) -> Iterator[Any]:
    tokens = _tokens(settings)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers.update({"Authorization": str(tokens["device"]), "Content-Type": MEDIA_TYPE})
        client.tokens = tokens
        yield client
        assert _unhandled(client) == 0


@given(body=bodies())
@settings(max_examples=150, suppress_health_check=_SHARED_APP)
def test_no_batch_body_gets_a_5xx_and_a_refused_one_stores_nothing(
    batch_client: Any, body: bytes
) -> None:
    before = _stored(batch_client)
    response = batch_client.post("/v1/batches", content=body)
    status = response.status_code
    assert status < 500, f"{status} {response.text} for a {len(body)}-byte body {body[:80]!r}"
    if status == 200:
        frames = decode_batch(body).frames
        results = response.json()["results"]
        assert [(r["frame_id"], r["device_seq"]) for r in results] == [
            (f.frame_id, f.device_seq) for f in frames
        ]
        return
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"], response.text
    assert isinstance(error["message"], str) and error["message"], response.text
    assert status in {400, 403}, response.text
    assert _stored(batch_client) == before


# --- 3. header values the schema does not describe ----------------------------------------


def _raw_post(app: FastAPI, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, bytes]:
    """POST /v1/batches straight through ASGI: header bytes go to the app as given (an HTTP
    client would re-encode or refuse some of them)."""
    answer: dict[str, Any] = {"status": 0, "body": b""}
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/batches",
        "raw_path": b"/v1/batches",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))
    return answer["status"], answer["body"]


_LATIN1 = st.binary(max_size=24).filter(lambda b: b"\r" not in b and b"\n" not in b)


@given(
    content_length=st.one_of(
        st.integers(-5, 10**30).map(lambda n: str(n).encode()),
        st.integers(4000, 6000).map(lambda n: b"9" * n),
        st.sampled_from([b"\xb2", b"\xb9\xb2", b"\xd9\xa3", b"1_0", b" 1", b"0x10", b"00"]),
        _LATIN1,
    ),
    content_type=st.one_of(st.just(MEDIA_TYPE.encode()), _LATIN1),
    authorization=st.one_of(st.sampled_from(["device", "unknown", "labeler"]), _LATIN1),
)
@example(content_length=b"\xb2", content_type=MEDIA_TYPE.encode(), authorization="device")
@example(content_length=b"9" * 5000, content_type=MEDIA_TYPE.encode(), authorization="device")
@settings(max_examples=60, suppress_health_check=_SHARED_APP)
def test_no_header_value_gets_a_5xx(
    batch_client: Any, content_length: bytes, content_type: bytes, authorization: str | bytes
) -> None:
    if isinstance(authorization, str):
        authorization = str(batch_client.tokens[authorization]).encode()
    headers = [
        (b"content-length", content_length),
        (b"content-type", content_type),
        (b"authorization", authorization),
    ]
    status, text = _raw_post(batch_client.app, headers, b"CURB")
    assert status < 500, f"{status} {text!r} for headers {headers!r}"
    error = json.loads(text)["error"]
    assert error["code"] and error["message"]
