"""IngestService against real SQLite, real FAISS, a real blobs folder and real JPEGs."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from testkit.images import jpeg

from curator.wire import BatchUpload, FrameRecord
from server.auth import Principal, Role
from server.errors import Forbidden
from server.ingest import IngestService
from server.warehouse import SqliteSink

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DIM = 16


def vector(cluster: int, jitter: int | None = None, dim: int = DIM) -> np.ndarray:
    """A unit vector of ``cluster``; with ``jitter`` a near copy (cosine > 0.99)."""
    base = np.random.default_rng(10_000 + cluster).standard_normal(dim)
    base /= np.linalg.norm(base)
    if jitter is not None:
        base = base + 0.01 * np.random.default_rng(jitter).standard_normal(dim)
    return base.astype(np.float32)


def frame(
    n: int,
    seq: int,
    *,
    device: str = "cam-1",
    cluster: int | None = None,
    jitter: int | None = None,
    model: str = "m1",
    image: bytes | None = None,
    embedding: np.ndarray | None = None,
) -> FrameRecord:
    """Frame ``n`` (image ``jpeg(n)``, embedding of ``cluster``, default ``n``)."""
    return FrameRecord.from_image(
        jpeg(n) if image is None else image,
        vector(n if cluster is None else cluster, jitter) if embedding is None else embedding,
        device_id=device,
        device_seq=seq,
        captured_at=T0,
        model_version=model,
        width=16,
        height=12,
        scores={"entropy": 0.5},
        keep_reason="uncertain",
    )


def batch(batch_id: str, *frames: FrameRecord, device: str = "cam-1") -> BatchUpload:
    return BatchUpload(batch_id=batch_id, device_id=device, frames=frames)


def device(name: str = "cam-1") -> Principal:
    return Principal(token_id=f"tok-{name}", role=Role.DEVICE, device_id=name)


@pytest.fixture
def service(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[IngestService]:
    """The service; ``indirect`` parametrisation sets its image check workers (default 0)."""
    workers = getattr(request, "param", 0)
    svc = IngestService.open(
        tmp_path / "data", threshold=0.95, check_workers=workers, clock=lambda: T0
    )
    yield svc
    svc.close()


def blob_files(svc: IngestService) -> list[Path]:
    return sorted(p for p in Path(svc.blobs.root).rglob("*") if p.is_file())  # type: ignore[attr-defined]


def outbox_rows(svc: IngestService, table: str) -> list[dict]:
    rows = svc.catalog.db.connection.execute(
        "SELECT row FROM warehouse_outbox WHERE table_name = ? ORDER BY id", (table,)
    )
    return [json.loads(r[0]) for r in rows]


def statuses(result) -> list[str]:
    return [r.status for r in result.results]


@pytest.mark.parametrize("service", [0, 2], indirect=True, ids=["in-thread", "2-workers"])
def test_mixed_batch_accepted_duplicate_rejected(service: IngestService) -> None:
    nan = vector(3).copy()
    nan[0] = np.nan
    bad_id = frame(4, 4).model_copy(update={"frame_id": "0" * 64})
    truncated = jpeg(5)[:-40]
    frames = (
        frame(1, 1),
        frame(2, 2, cluster=1, jitter=7),  # near copy of frame 1, in the batch
        frame(3, 3, embedding=nan),
        bad_id,
        frame(5, 5, image=truncated),
        frame(6, 6, embedding=np.ones(8, np.float32)),  # wrong dimension
        frame(7, 7),
    )
    result = service.ingest(batch("b1", *frames), device())
    assert statuses(result) == [
        "accepted",
        "duplicate",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "accepted",
    ]
    r = result.results
    assert [x.device_seq for x in r] == [1, 2, 3, 4, 5, 6, 7]
    assert r[1].duplicate_of == frames[0].frame_id and r[1].similarity > 0.99
    assert r[2].reason.startswith("embedding_not_finite")
    assert r[3].reason.startswith("frame_id_mismatch")
    assert r[4].reason.startswith("truncated")
    assert r[5].reason.startswith("embedding_dim_mismatch")
    # rejected frames are not stored; accepted ones have their image
    assert service.catalog.counts() == {"accepted": 2, "duplicate": 1}
    for f in (frames[2], bad_id, frames[4], frames[5]):
        assert service.catalog.get(f.frame_id) is None
    assert len(blob_files(service)) == 2
    row = service.catalog.get(frames[0].frame_id)
    assert row is not None and service.blobs.get(row.blob_key) == frames[0].image
    # warehouse: one frames row per answered frame, one dedup row per duplicate
    rows = outbox_rows(service, "frames")
    assert [x["status"] for x in rows] == statuses(result)
    assert [x["device_seq"] for x in rows] == [1, 2, 3, 4, 5, 6, 7]
    dups = outbox_rows(service, "dedup_decisions")
    assert [(d["frame_id"], d["duplicate_of"], d["method"]) for d in dups] == [
        (frames[1].frame_id, frames[0].frame_id, "near")
    ]


@pytest.mark.parametrize("service", [0, 1], indirect=True, ids=["in-thread", "1-worker"])
def test_the_first_failing_check_names_the_reason_in_check_order(service: IngestService) -> None:
    """Wire checks come before image checks; for a model version new to the catalog, the
    dimension is the batch's first good frame's, and a frame before any good one sets none."""
    truncated = jpeg(3)[:-40]
    frames = (
        frame(1, 1, image=jpeg(1)[:-40], embedding=np.ones(8, np.float32)),  # bad image first
        frame(2, 2),  # the first good frame: DIM
        frame(3, 3, image=truncated, embedding=np.ones(8, np.float32)),  # both wrong
        frame(4, 4, image=truncated),  # only the image
    )
    reasons = [r.reason for r in service.ingest(batch("b1", *frames), device()).results]
    assert reasons[0] is not None and reasons[0].startswith("truncated")
    assert reasons[1] is None
    assert reasons[2] is not None and reasons[2].startswith("embedding_dim_mismatch")
    assert reasons[3] is not None and reasons[3].startswith("truncated")


def test_resend_gives_same_results_and_changes_nothing(service: IngestService) -> None:
    frames = (frame(1, 1), frame(2, 2, cluster=1, jitter=3), frame(3, 3))
    first = service.ingest(batch("b1", *frames), device())
    state = (
        service.catalog.counts(),
        blob_files(service),
        service.outbox.pending(),
        service.dedup.stats(),
    )
    again = service.ingest(batch("b1", *frames), device())
    assert again == first
    assert (
        service.catalog.counts(),
        blob_files(service),
        service.outbox.pending(),
        service.dedup.stats(),
    ) == state
    # a re-sent rejected frame is checked again: same answer, only its warehouse row again
    bad = frame(9, 9, embedding=np.ones(8, np.float32))
    r1 = service.ingest(batch("b2", bad), device())
    pending = service.outbox.pending()
    assert service.ingest(batch("b2", bad), device()) == r1
    assert service.outbox.pending() == pending + 1
    assert service.catalog.counts() == state[0]


def test_exact_reupload_from_another_device(service: IngestService, tmp_path: Path) -> None:
    original = frame(1, 1)
    service.ingest(batch("b1", original), device())
    copy = frame(1, 40, device="cam-2", cluster=99)  # same bytes, other embedding
    result = service.ingest(batch("b2", copy, device="cam-2"), device("cam-2"))
    (r,) = result.results
    assert (r.status, r.duplicate_of, r.similarity) == ("duplicate", original.frame_id, 1.0)
    assert service.catalog.counts() == {"accepted": 1, "duplicate": 1}
    assert len(blob_files(service)) == 1
    # the warehouse keys rows by upload: the copy has its own rows, the original's stays
    sink = SqliteSink(tmp_path / "warehouse.sqlite")
    service.outbox.drain(sink)
    rows = {(r["device_id"], r["device_seq"]): r for r in sink.read("frames")}
    assert {k: (r["frame_id"], r["status"]) for k, r in rows.items()} == {
        ("cam-1", 1): (original.frame_id, "accepted"),
        ("cam-2", 40): (original.frame_id, "duplicate"),
    }
    (decision,) = sink.read("dedup_decisions")
    assert (decision["device_id"], decision["device_seq"], decision["method"]) == (
        "cam-2",
        40,
        "exact",
    )
    assert decision["duplicate_of"] == original.frame_id and decision["similarity"] == 1.0
    sink.close()


def test_near_duplicates_across_batches_and_devices(service: IngestService) -> None:
    service.ingest(batch("b1", frame(1, 1), frame(2, 2)), device())
    result = service.ingest(
        batch(
            "b2",
            frame(3, 1, device="cam-2", cluster=2, jitter=5),
            frame(4, 2, device="cam-2", cluster=3),
            frame(5, 3, device="cam-2", cluster=3, jitter=6),
            device="cam-2",
        ),
        device("cam-2"),
    )
    assert statuses(result) == ["duplicate", "accepted", "duplicate"]
    assert result.results[0].duplicate_of == hashlib.sha256(jpeg(2)).hexdigest()
    assert result.results[2].duplicate_of == result.results[1].frame_id
    # every duplicate in the catalog points at an accepted frame
    conn = service.catalog.db.connection
    targets = conn.execute(
        "SELECT t.status FROM frames d JOIN frames t ON t.frame_id = d.duplicate_of"
        " WHERE d.status = 'duplicate'"
    ).fetchall()
    assert [t[0] for t in targets] == ["accepted", "accepted"]
    # images are stored before the decision; a near duplicate's is deleted again
    assert len(blob_files(service)) == 3


def test_concurrent_batches_keep_the_image_of_every_accepted_frame(
    service: IngestService,
) -> None:
    """Four devices send the same 24 images in different orders, in near-duplicate pairs, at
    once: whoever stores an image first, each accepted frame's blob is there and whole."""
    n = 24

    def upload(k: int) -> None:
        name = f"cam-{k}"
        order = np.random.default_rng(k).permutation(n)
        frames = [
            frame(int(i), seq, device=name, cluster=int(i) // 2, jitter=int(i))
            for seq, i in enumerate(order, start=1)
        ]
        for lo in range(0, n, 6):
            service.ingest(batch(f"{name}-{lo}", *frames[lo : lo + 6], device=name), device(name))

    threads = [threading.Thread(target=upload, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = service.catalog.get_many(hashlib.sha256(jpeg(i)).hexdigest() for i in range(n))
    accepted = [r for r in rows.values() if r.status == "accepted"]
    assert len(rows) == n and len(accepted) == n // 2  # one per near-duplicate pair
    for r in accepted:
        assert r.blob_key is not None
        assert hashlib.sha256(service.blobs.get(r.blob_key)).hexdigest() == r.frame_id
    # a blob no row names can only be a near duplicate's that a racing batch re-staged
    stored = {p.stem for p in blob_files(service)}
    assert {r.frame_id for r in accepted} <= stored <= set(rows)


def test_model_versions_never_dedup_against_each_other(service: IngestService) -> None:
    service.ingest(batch("b1", frame(1, 1)), device())
    result = service.ingest(
        batch("b2", frame(2, 2, cluster=1, model="m2"), frame(3, 3, cluster=1, jitter=1)),
        device(),
    )
    assert statuses(result) == ["accepted", "duplicate"]


def test_forbidden_device_stores_nothing(service: IngestService) -> None:
    with pytest.raises(Forbidden):
        service.ingest(batch("b1", frame(1, 1, device="cam-2"), device="cam-2"), device("cam-1"))
    labeler = Principal(token_id="t", role=Role.LABELER, device_id=None)
    with pytest.raises(Forbidden):
        service.ingest(batch("b1", frame(1, 1)), labeler)
    assert service.catalog.counts() == {"accepted": 0, "duplicate": 0}
    assert service.outbox.pending() == 0 and blob_files(service) == []
    admin = Principal(token_id="a", role=Role.ADMIN, device_id=None)
    assert statuses(service.ingest(batch("b1", frame(1, 1)), admin)) == ["accepted"]


def test_device_seq_reuse_is_rejected(service: IngestService, tmp_path: Path) -> None:
    first = frame(1, 1)
    service.ingest(batch("b1", first), device())
    (r,) = service.ingest(batch("b2", frame(2, 1)), device()).results
    assert r.status == "rejected" and r.reason.startswith("device_seq_reused")
    assert service.catalog.get(r.frame_id) is None
    # the warehouse row of upload (cam-1, 1) still says what was decided for it first
    sink = SqliteSink(tmp_path / "warehouse.sqlite")
    service.outbox.drain(sink)
    ((frame_id, status),) = [(row["frame_id"], row["status"]) for row in sink.read("frames")]
    assert (frame_id, status) == (first.frame_id, "accepted")
    sink.close()


@pytest.mark.parametrize("take_snapshot", [False, True])
def test_restart_keeps_every_accepted_frame(tmp_path: Path, take_snapshot: bool) -> None:
    data = tmp_path / "data"
    svc = IngestService.open(data, clock=lambda: T0)
    svc.ingest(batch("b1", frame(1, 1), frame(2, 2, model="m2")), device())
    if take_snapshot:
        assert svc.snapshot() == {"m1": 1, "m2": 2}
    svc.ingest(batch("b2", frame(3, 3), frame(4, 4, model="m2")), device())
    stats = svc.dedup.stats()
    svc.close()
    probes = batch(
        "b3",
        *(
            frame(10 + n, 10 + n, device="cam-2", cluster=n, jitter=n, model=m)
            for n, m in ((1, "m1"), (2, "m2"), (3, "m1"), (4, "m2"))
        ),
        device="cam-2",
    )
    with IngestService.open(data, clock=lambda: T0) as again:
        assert again.dedup.stats() == stats
        result = again.ingest(probes, device("cam-2"))
    assert statuses(result) == ["duplicate"] * 4
    assert [r.duplicate_of for r in result.results] == [
        hashlib.sha256(jpeg(n)).hexdigest() for n in (1, 2, 3, 4)
    ]
