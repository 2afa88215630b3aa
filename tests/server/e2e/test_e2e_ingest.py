"""End to end: real ``python -m server serve`` processes take a fleet's uploads exactly once
through a SIGKILL and resends, and through a Snowflake (fakesnow) outage, losing nothing.

Oracles are built from the uploads alone: every frame belongs to a "scene" (a random 32-d
direction); frames of one scene are near duplicates (cosine > 0.99), frames of different scenes
are far apart (|cosine| < 0.8 for random 32-d vectors), so each scene must end with exactly one
accepted frame however the uploads interleave, and every duplicate must point at the accepted
frame of its own scene.
"""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from testkit.images import jpeg

from curator.wire import MEDIA_TYPE, BatchUpload, FrameRecord, encode_batch
from server.blobs import open_blob_store
from server.catalog import Catalog
from server.warehouse import SqliteSink
from server.warehouse.snowflake import SnowflakeSink

pytestmark = pytest.mark.integration

DEVICES = ("cam-01", "cam-02", "cam-03")
FRAMES_PER_BATCH = 20
DIM = 32
HOST = "127.0.0.1"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def frame(image: bytes, embedding: np.ndarray, device: str, seq: int) -> FrameRecord:
    return FrameRecord.from_image(
        image,
        embedding.astype(np.float32),
        device_id=device,
        device_seq=seq,
        captured_at=T0,
        model_version="m1",
        width=16,
        height=12,
        scores={"entropy": 0.5},
        keep_reason="uncertain",
    )


def encode(batch_id: str, device: str, frames: list[FrameRecord]) -> bytes:
    return encode_batch(BatchUpload(batch_id=batch_id, device_id=device, frames=tuple(frames)))


def post_batch(base: str, token: str, body: bytes, timeout: float = 30.0) -> httpx.Response:
    headers = {"Content-Type": MEDIA_TYPE, "Authorization": f"Bearer {token}"}
    return httpx.post(f"{base}/v1/batches", content=body, headers=headers, timeout=timeout)


def raw_request(token: str, body: bytes, port: int) -> bytes:
    """The bytes of a complete HTTP/1.1 ``POST /v1/batches``, to send on a bare socket."""
    head = (
        f"POST /v1/batches HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Content-Type: {MEDIA_TYPE}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


@dataclass(frozen=True)
class Planned:
    """One upload: its device, sequence number, scene, image and the encoded record."""

    device: str
    seq: int
    scene: int
    frame_id: str


@dataclass
class Fleet:
    """The planned uploads: ``batches[(device, b)] = (batch_id, body)``, ``frames`` per upload."""

    batches: dict[tuple[str, int], tuple[str, bytes]]
    frames: dict[tuple[str, int], Planned]

    def scenes(self) -> dict[str, int]:
        return {p.frame_id: p.scene for p in self.frames.values()}


def plan_fleet(n_batches: int, seed: int = 7) -> Fleet:
    """Uploads of every device with near duplicates within a batch, across batches and across
    devices, and exact re-uploads (same bytes) of cam-01's frames by the other devices."""
    rng = np.random.default_rng(seed)
    bases: list[np.ndarray] = []
    frames: dict[tuple[str, int], Planned] = {}
    records: dict[tuple[str, int], Any] = {}
    scene_of: dict[tuple[str, int], int] = {}
    image_no = seed * 100_000
    for d, device in enumerate(DEVICES):
        for seq in range(1, n_batches * FRAMES_PER_BATCH + 1):
            if d > 0 and seq % 5 == 0:  # exact re-upload of cam-01's frame
                source = records[(DEVICES[0], seq)]
                image, embedding = source.image, source.embedding_array()
                scene = scene_of[(DEVICES[0], seq)]
            else:
                if seq % 5 == 1 and (device, seq - 1) in scene_of:
                    scene = scene_of[(device, seq - 1)]  # near: the previous frame's scene
                elif seq % 5 == 2 and d > 0:
                    scene = scene_of[(DEVICES[0], seq)]  # near: cam-01's frame, same seq
                else:
                    scene = len(bases)
                    bases.append(rng.standard_normal(DIM))
                image_no += 1
                image = jpeg(image_no)
                embedding = bases[scene] + 0.01 * rng.standard_normal(DIM)
            record = frame(image, embedding, device, seq)
            records[(device, seq)], scene_of[(device, seq)] = record, scene
            frames[(device, seq)] = Planned(device, seq, scene, record.frame_id)
    batches = {}
    for device in DEVICES:
        for b in range(n_batches):
            first = b * FRAMES_PER_BATCH + 1
            chunk = [records[(device, s)] for s in range(first, first + FRAMES_PER_BATCH)]
            batch_id = f"{device}-b{b}"
            batches[(device, b)] = (batch_id, encode(batch_id, device, chunk))
    return Fleet(batches, frames)


def check_answers(fleet: Fleet, answers: dict[tuple[str, int], dict[str, Any]]) -> None:
    """Every planned batch has an answer naming its frames, in order, none rejected."""
    for key in fleet.batches:
        assert key in answers, f"batch {key} never answered"
        results = answers[key]["results"]
        device, b = key
        first = b * FRAMES_PER_BATCH + 1
        assert [r["device_seq"] for r in results] == list(range(first, first + FRAMES_PER_BATCH))
        for result in results:
            planned = fleet.frames[(device, result["device_seq"])]
            assert result["frame_id"] == planned.frame_id
            assert result["status"] in ("accepted", "duplicate"), result


def check_catalog(data_dir: Path, fleet: Fleet) -> dict[str, Any]:
    """The catalog holds each distinct image once, one accepted frame per scene, every
    duplicate pointing at its scene's accepted frame, every upload once, blobs intact."""
    scenes = fleet.scenes()
    catalog = Catalog(data_dir / "catalog.sqlite")
    try:
        conn = catalog.db.connection
        ids = [r[0] for r in conn.execute("SELECT frame_id FROM frames")]
        assert Counter(ids) == Counter(set(scenes)), "frames must hold each image exactly once"
        uploads = {
            (d, s): f
            for d, s, f in conn.execute("SELECT device_id, device_seq, frame_id FROM uploads")
        }
        assert uploads == {k: p.frame_id for k, p in fleet.frames.items()}
        rows = catalog.get_many(ids)
    finally:
        catalog.close()
    blobs = open_blob_store(data_dir / "blobs")
    accepted = {fid: row for fid, row in rows.items() if row.status == "accepted"}
    per_scene = Counter(scenes[fid] for fid in accepted)
    assert per_scene == Counter(set(scenes.values())), "each scene: exactly one accepted frame"
    for fid, row in rows.items():
        if row.status == "duplicate":
            assert row.duplicate_of in accepted, (fid, row.duplicate_of)
            assert scenes[row.duplicate_of] == scenes[fid]
            assert row.dedup_method == "near"  # an exact repeat never gets its own frames row
        else:
            assert row.blob_key is not None and blobs.exists(row.blob_key)
            assert hashlib.sha256(blobs.get(row.blob_key)).hexdigest() == fid
    return rows


def check_warehouse(
    frames_rows: list[dict[str, Any]],
    decision_rows: list[dict[str, Any]],
    fleet: Fleet,
    catalog_rows: dict[str, Any],
) -> None:
    """Every upload exactly once in ``frames`` (keyed by device and seq), with its image and
    the catalog's decision; a ``dedup_decisions`` row for exactly the uploads dropped as
    duplicates (exact re-uploads by other devices included), each naming an accepted frame."""
    uploads = Counter((r["device_id"], r["device_seq"]) for r in frames_rows)
    doubled = {k: n for k, n in uploads.items() if n > 1}
    assert not doubled, f"uploads logged more than once: {doubled}"
    missing, extra = set(fleet.frames) - set(uploads), set(uploads) - set(fleet.frames)
    assert not missing and not extra, f"{len(missing)} uploads missing, {len(extra)} extra"
    accepted = {fid for fid, row in catalog_rows.items() if row.status == "accepted"}
    dropped = set()
    for r in frames_rows:
        key = (r["device_id"], r["device_seq"])
        assert r["frame_id"] == fleet.frames[key].frame_id
        first_upload = r["frame_id"] in accepted and r["status"] == "accepted"
        assert first_upload or r["status"] == "duplicate", r
        if r["status"] == "duplicate":
            dropped.add(key)
            # exact re-uploads too, even of an image the threads' order made a near duplicate
            assert r["duplicate_of"] in accepted, r
    assert sum(r["status"] == "accepted" for r in frames_rows) == len(accepted)
    decisions = Counter((r["device_id"], r["device_seq"]) for r in decision_rows)
    assert set(decisions) == dropped and max(decisions.values(), default=1) == 1
    exact = {(r["device_id"], r["device_seq"]) for r in decision_rows if r["method"] == "exact"}
    uploads_of_image = Counter(p.frame_id for p in fleet.frames.values())
    assert Counter(fleet.frames[k].frame_id for k in exact) == Counter(
        {fid: n - 1 for fid, n in uploads_of_image.items() if n > 1}
    ), "an image uploaded n times: n - 1 exact duplicate decisions, whoever came first"
    assert all(r["duplicate_of"] in accepted for r in decision_rows)


def snowflake_env(fakesnow: Any, schema: str) -> dict[str, str]:
    """The server's environment for ``warehouse = "snowflake"`` on the fakesnow server."""
    return {
        "CURATOR_SERVER_WAREHOUSE": "snowflake",
        "CURATOR_SERVER_SNOWFLAKE__ACCOUNT": "fakesnow",
        "CURATOR_SERVER_SNOWFLAKE__USER": "fake",
        "CURATOR_SERVER_SNOWFLAKE__PASSWORD": "snow-secret-password",
        "CURATOR_SERVER_SNOWFLAKE__DATABASE": fakesnow.database,
        "CURATOR_SERVER_SNOWFLAKE__SCHEMA": schema,
        "CURATOR_SERVER_SNOWFLAKE__HOST": HOST,
        "CURATOR_SERVER_SNOWFLAKE__PORT": str(fakesnow.port),
        "CURATOR_SERVER_SNOWFLAKE__PROTOCOL": "http",
    }


def test_sigkill_mid_upload_then_resend_stores_every_frame_exactly_once(
    tmp_path: Path, serve: Any, create_tokens: Any
) -> None:
    data = tmp_path / "data"
    tokens = create_tokens(data, DEVICES)
    fleet = plan_fleet(n_batches=4)
    server = serve()
    server.start()
    answers: dict[tuple[str, int], dict[str, Any]] = {}
    lock = threading.Lock()
    in_flight_key = (DEVICES[0], 3)  # sent on a bare socket just before the kill

    def upload(device: str) -> None:
        for b in range(4):
            if (device, b) == in_flight_key:
                continue
            _, body = fleet.batches[(device, b)]
            try:
                response = post_batch(server.base, tokens[device], body)
            except httpx.TransportError:
                continue  # the server died: resent after the restart
            assert response.status_code == 200, response.text
            with lock:
                answers[(device, b)] = response.json()

    threads = [threading.Thread(target=upload, args=(d,)) for d in DEVICES]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(answers) < 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    _, in_flight = fleet.batches[in_flight_key]
    with socket.create_connection((HOST, server.port), timeout=5) as sock:
        sock.sendall(raw_request(tokens[DEVICES[0]], in_flight, server.port))
        time.sleep(random.uniform(0.0, 0.05))
        server.kill()
    for t in threads:
        t.join(timeout=60)
    answered_before = dict(answers)
    assert 4 <= len(answered_before) < len(fleet.batches)

    server.start()  # same data folder and port
    for key in sorted(set(fleet.batches) - set(answered_before)):
        response = post_batch(server.base, tokens[key[0]], fleet.batches[key][1])
        assert response.status_code == 200, response.text
        answers[key] = response.json()
    for key in sorted(answered_before)[:3]:  # idempotent: the very same answer again
        response = post_batch(server.base, tokens[key[0]], fleet.batches[key][1])
        assert response.status_code == 200, response.text
        assert response.json() == answered_before[key]
    check_answers(fleet, answers)

    server.wait_drained(timeout=20)
    assert server.stop() == 0
    catalog_rows = check_catalog(data, fleet)
    with SqliteSink(data / "warehouse.sqlite") as sink:
        check_warehouse(sink.read("frames"), sink.read("dedup_decisions"), fleet, catalog_rows)


def test_snowflake_outage_keeps_ingest_up_and_loses_nothing(
    tmp_path: Path, serve: Any, fakesnow: Any, create_tokens: Any
) -> None:
    data, schema = tmp_path / "data", fakesnow.schema()
    tokens = create_tokens(data, DEVICES)
    fleet = plan_fleet(n_batches=2, seed=11)
    server = serve(snowflake_env(fakesnow, schema))
    server.start()

    def upload(b: int) -> None:
        for device in DEVICES:
            started = time.monotonic()
            response = post_batch(server.base, tokens[device], fleet.batches[(device, b)][1])
            took = time.monotonic() - started
            assert response.status_code == 200, response.text
            assert took < 5.0, f"ingest took {took:.1f} s"

    upload(0)
    assert httpx.get(f"{server.base}/readyz", timeout=30).status_code == 200
    fakesnow.stop()
    upload(1)
    time.sleep(1.0)  # let the drainer meet the outage
    assert server.metric("curator_server_outbox_pending_rows") > 0
    fakesnow.start()
    waited = server.wait_drained(timeout=60)
    print(f"outbox drained {waited:.1f} s after fakesnow came back")
    assert httpx.get(f"{server.base}/readyz", timeout=30).status_code == 200
    assert server.stop() == 0

    catalog_rows = check_catalog(data, fleet)
    sink = SnowflakeSink(fakesnow.connect_kwargs(), fakesnow.database, schema, retries=1)
    with sink:
        check_warehouse(sink.read("frames"), sink.read("dedup_decisions"), fleet, catalog_rows)


def test_readyz_reports_the_warehouse_down_during_an_outage(
    tmp_path: Path, serve: Any, fakesnow: Any, create_tokens: Any
) -> None:
    token = create_tokens(tmp_path / "data", DEVICES[:1])[DEVICES[0]]
    fleet = plan_fleet(n_batches=1, seed=13)
    server = serve(snowflake_env(fakesnow, fakesnow.schema()))
    server.start()
    response = post_batch(server.base, token, fleet.batches[(DEVICES[0], 0)][1])
    assert response.status_code == 200, response.text
    assert httpx.get(f"{server.base}/readyz", timeout=30).status_code == 200
    fakesnow.stop()
    ready = httpx.get(f"{server.base}/readyz", timeout=5)
    assert ready.status_code == 503, ready.text
    assert ready.json()["checks"]["warehouse"] != "ok"
    assert ready.json()["checks"]["catalog"] == "ok"
