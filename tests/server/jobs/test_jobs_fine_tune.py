"""The real fine_tune runner: Fashion-MNIST frames ingested and labeled in a real catalog, trained
with torch, registered and gated; a snapshot with shuffled training labels is not promoted."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from curator.data.fashion_mnist import CLASS_NAMES, DEBIAN_DIR, load_fashion_mnist
from curator.inference import OnnxModel
from curator.wire import BatchUpload, FrameRecord
from server.auth import Principal, Role
from server.ingest import IngestService
from server.jobs import (
    JobContext,
    JobQueue,
    JobResult,
    JobStore,
    load_runner,
    make_huey,
    requeue_expired,
    run_job,
    trigger,
)
from server.jobs.fine_tune import fine_tune_job, is_held_out, model_version_for
from server.labeling import LabelStore
from server.registry import ModelRegistry

pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

CLASSES = (0, 1, 7, 8)  # T-shirt/top, Trouser, Sneaker, Bag
PER_CLASS = 20
RUNNER = "server.jobs.fine_tune:fine_tune_job"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PARAMS = {"input_size": 28, "channels": "gray", "epochs": 8, "batch_size": 16, "seed": 0}


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[IngestService]:
    svc = IngestService.open(tmp_path / "data", threshold=0.999, clock=lambda: T0)
    yield svc
    svc.close()


@pytest.fixture
def labeled(service: IngestService) -> dict[str, str]:
    """80 Fashion-MNIST frames (20 per class, 4 classes) ingested and labeled; frame -> class."""
    if not (DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not installed in {DEBIAN_DIR} (dataset-fashion-mnist)")
    images, labels = load_fashion_mnist("test")
    rng = np.random.default_rng(0)
    idx = np.concatenate([np.flatnonzero(labels == c)[:PER_CLASS] for c in CLASSES])
    records = [
        FrameRecord.from_image(
            _png(images[i]),
            rng.standard_normal(8),
            device_id="cam-1",
            device_seq=n + 1,
            captured_at=T0,
            model_version="m0",
            width=28,
            height=28,
            scores={"entropy": 0.5},
            keep_reason="uncertain",
            image_format="png",
        )
        for n, i in enumerate(idx)
    ]
    result = service.ingest(
        BatchUpload(batch_id="b1", device_id="cam-1", frames=tuple(records)),
        Principal("tok-cam-1", Role.DEVICE, "cam-1"),
    )
    assert [r.status for r in result.results] == ["accepted"] * len(records)
    store = LabelStore(service.catalog, service.outbox, clock=lambda: T0)
    names = tuple(CLASS_NAMES[c] for c in CLASSES)
    store.register_class_names("m0", names)
    truth = {}
    for record, i in zip(records, idx, strict=True):
        truth[record.frame_id] = CLASS_NAMES[int(labels[i])]
        store.label(record.frame_id, truth[record.frame_id], "ann")
    return truth


@pytest.fixture
def parts(
    service: IngestService, tmp_path: Path
) -> Iterator[tuple[JobStore, JobQueue, ModelRegistry]]:
    queue = JobQueue(make_huey(tmp_path))
    yield (
        JobStore(service.catalog.db),
        queue,
        ModelRegistry(service.catalog, service.blobs, service.outbox),
    )
    queue.close()


def _run(service: IngestService, store: JobStore, registry: ModelRegistry, job_id: str) -> None:
    run_job(
        job_id, store=store, catalog=service.catalog, registry=registry,
        runners={"fine_tune": load_runner(RUNNER)}, owner="w1", lease_s=60,
    )  # fmt: skip


def test_the_runner_loads_by_its_spec() -> None:
    assert load_runner(RUNNER) is fine_tune_job


def test_held_out_split_is_a_fixed_fifth_by_frame_id() -> None:
    ids = [f"{i:064x}" for i in range(2000)]
    held = [is_held_out(i) for i in ids]
    assert held == [is_held_out(i) for i in ids]  # deterministic
    assert 0.15 < sum(held) / len(ids) < 0.25
    assert model_version_for("abcdef0123456789ff") == "ft-abcdef012345"


def test_fine_tune_registers_gates_and_refuses_a_shuffled_snapshot(
    service: IngestService,
    labeled: dict[str, str],
    parts: tuple[JobStore, JobQueue, ModelRegistry],
) -> None:
    store, queue, registry = parts
    first = trigger(store, queue, every_labels=1, params=PARAMS).job
    assert first is not None
    _run(service, store, registry, first.job_id)
    done = store.get(first.job_id)
    assert done.status == "succeeded", done.result
    assert done.result is not None
    version = model_version_for(first.snapshot_key)
    assert done.result["model_version"] == version and done.result["promoted"] is True
    info, onnx = registry.read_file(version)
    assert info.snapshot_key == first.snapshot_key and info.parent_version is None
    model = OnnxModel(onnx)
    assert model.class_names == tuple(sorted(CLASS_NAMES[c] for c in CLASSES))  # no parent
    assert model.input_size == (28, 28) and model.metadata.channels == "gray"
    held = sorted(f for f in labeled if is_held_out(f))
    assert info.metrics["n_held_out"] == len(held) > 0
    assert info.metrics["accuracy"] >= 0.6  # chance is 0.25
    # the recorded accuracy is the ONNX model's on the held-out frames, recomputed here
    pixels = np.stack([_decode(service, f) for f in held])
    names = list(model.class_names)
    truth = np.array([names.index(labeled[f]) for f in held])
    logits = model.predict(pixels).logits
    assert logits is not None
    assert info.metrics["accuracy"] == pytest.approx(float((logits.argmax(1) == truth).mean()))
    details = done.result["details"]
    assert service.blobs.exists(details["state_blob"])
    assert details["n_train"] + details["n_held_out"] == len(labeled)
    assert details["epochs"] == PARAMS["epochs"]  # no min_samples: exactly the epochs asked
    assert registry.latest_promoted() == registry.get(version)

    # the same snapshot run again (as after a crash past registration): the registered
    # version and its weights, nothing new
    again = fine_tune_job(JobContext(done, service.catalog, registry, threading.Event()))
    assert again.model_version == version and again.promoted is True
    assert dict(again.details) == {"reused": True, "state_blob": details["state_blob"]}
    assert [m.model_version for m in registry.list()] == [version]

    # corrections: the training frames' labels shuffled, the held-out frames' kept true
    labels = LabelStore(service.catalog, service.outbox, clock=lambda: T0)
    train = sorted(f for f in labeled if not is_held_out(f))
    shuffled = np.random.default_rng(1).permutation([labeled[f] for f in train])
    for frame_id, wrong in zip(train, shuffled, strict=True):
        if wrong != labeled[frame_id]:
            labels.label(frame_id, str(wrong), "vandal")
    second = trigger(store, queue, every_labels=1, params=PARAMS).job
    assert second is not None and second.snapshot_key != first.snapshot_key
    _run(service, store, registry, second.job_id)
    bad = store.get(second.job_id)
    assert bad.status == "succeeded", bad.result
    assert bad.result is not None and bad.result["promoted"] is False
    candidate = registry.get(model_version_for(second.snapshot_key))
    assert not candidate.promoted and candidate.parent_version == version
    current = bad.result["details"]["current_metrics"]
    # both were scored on the same held-out frames; the first model is measured again there
    assert current["accuracy"] == pytest.approx(info.metrics["accuracy"])
    assert candidate.metrics["accuracy"] < current["accuracy"] - 0.02
    assert bad.result["details"]["gate_reason"].startswith("not promoted")
    assert registry.latest_promoted() == registry.get(version)


def _decode(service: IngestService, frame_id: str) -> np.ndarray:
    row = service.catalog.get(frame_id)
    assert row is not None and row.blob_key is not None
    with Image.open(io.BytesIO(service.blobs.get(row.blob_key))) as image:
        return np.asarray(image.convert("L"), dtype=np.uint8)[..., None]


def test_finish_enqueues_the_training_run_row_in_its_transaction(
    service: IngestService, labeled: dict[str, str], parts: tuple[JobStore, JobQueue, ModelRegistry]
) -> None:
    store, queue, _ = parts
    job = trigger(store, queue, every_labels=1).job
    assert job is not None
    assert store.claim(job.job_id, "w1", 60) is not None
    conn = service.catalog.db.connection
    count = "SELECT count(*) FROM warehouse_outbox WHERE table_name = 'training_runs'"
    assert not store.finish(job.job_id, "other", result={}, succeeded=True, outbox=service.outbox)
    assert conn.execute(count).fetchone()[0] == 0  # not the owner: nothing written
    result = {"model_version": "ft-x", "metrics": {"accuracy": 0.5}, "promoted": True}
    assert store.finish(job.job_id, "w1", result=result, succeeded=True, outbox=service.outbox)
    (row,) = [json.loads(r[0]) for r in conn.execute(
        "SELECT row FROM warehouse_outbox WHERE table_name = 'training_runs'"
    )]  # fmt: skip
    assert row["run_id"] == job.job_id and row["snapshot_key"] == job.snapshot_key
    assert row["status"] == "succeeded" and row["model_version"] == "ft-x"
    assert row["metrics"] == {"accuracy": 0.5} and row["finished_at"] is not None


class _WorkerDied(BaseException):
    """Stands for SIGKILL: escapes run_job's error handling, so nothing is finished."""


def test_a_worker_dying_between_register_and_finish_loses_no_weights_and_trains_once(
    service: IngestService,
    labeled: dict[str, str],
    parts: tuple[JobStore, JobQueue, ModelRegistry],
) -> None:
    store, queue, registry = parts
    # one pass at least, but 2.5 passes' worth of samples: three passes
    min_samples = int(2.5 * sum(not is_held_out(f) for f in labeled))
    params = {**PARAMS, "epochs": 1, "min_samples": min_samples}
    job = trigger(store, queue, every_labels=1, params=params).job
    assert job is not None
    trained: list[str] = []

    def register_then_die(ctx: JobContext) -> JobResult:
        result = fine_tune_job(ctx)  # trains, records the weights, registers the version
        trained.append(str(result.model_version))
        assert result.details["epochs"] == 3
        raise _WorkerDied

    with pytest.raises(_WorkerDied):
        run_job(
            job.job_id, store=store, catalog=service.catalog, registry=registry,
            runners={"fine_tune": register_then_die}, owner="w1", lease_s=60,
        )  # fmt: skip
    died = store.get(job.job_id)
    assert died.status == "running" and died.result is None  # never finished
    assert died.weights_blob is not None and service.blobs.exists(died.weights_blob)
    version = model_version_for(job.snapshot_key)
    assert trained == [version] and registry.get(version).snapshot_key == job.snapshot_key

    later = datetime(2100, 1, 1, tzinfo=UTC)  # the dead worker's lease has long expired
    assert [j.job_id for j in requeue_expired(store, queue, now=later)] == [job.job_id]
    _run(service, store, registry, job.job_id)  # the real runner, in another worker
    done = store.get(job.job_id)
    assert done.status == "succeeded" and done.attempts == 2, done.result
    assert done.result is not None and done.result["model_version"] == version
    assert done.result["details"] == {"reused": True, "state_blob": died.weights_blob}
    assert trained == [version]  # the re-run trained nothing
    rows = service.catalog.db.connection.execute(
        "SELECT model_version FROM model_versions WHERE snapshot_key = ?", (job.snapshot_key,)
    ).fetchall()
    assert rows == [(version,)]
    # the next run finds the weights to start from, though the job that made them died
    ctx = JobContext(done, service.catalog, registry, threading.Event())
    assert ctx.weights_of(version) == died.weights_blob
    assert len(service.blobs.get(died.weights_blob)) > 0
