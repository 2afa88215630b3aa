"""Stand-ins for fine-tuning in job tests: labeled frames in a catalog, and a runner that
"trains" by sleeping, then registers a tiny real ONNX model for the job's snapshot.

A worker subprocess uses :func:`slow_fine_tune` through
``CURATOR_SERVER_JOB_RUNNER=testkit.jobs:slow_fine_tune`` (with ``tests/`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from server.jobs import JobContext, JobResult
from server.registry import register_and_gate
from testkit.models import linear_onnx

__all__ = ["T0", "ManualClock", "add_labels", "slow_fine_tune"]

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class ManualClock:
    """An aware clock that moves only when told."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def add_labels(conn: sqlite3.Connection, count: int, *, start: int | None = None) -> list[str]:
    """Insert ``count`` accepted frames with one label each; returns the label ids.

    Frames are numbered from ``start`` (default: after the frames already there)."""
    if start is None:
        start = int(conn.execute("SELECT count(*) FROM frames").fetchone()[0])
    label_ids = []
    for i in range(start, start + count):
        frame_id = hashlib.sha256(f"frame-{i}".encode()).hexdigest()
        conn.execute(
            "INSERT INTO frames (frame_id, device_id, device_seq, received_at, model_version,"
            " status, blob_key, schema_version) VALUES (?, 'cam-1', ?, ?, 'lin-1', 'accepted',"
            " ?, 1)",
            (frame_id, i + 1, "2026-01-01T00:00:00.000000+00:00", f"ab/cd/{frame_id}.jpg"),
        )
        label_id = f"lbl-{i}"
        conn.execute(
            "INSERT INTO labels (label_id, frame_id, class_name, labeler, created_at)"
            " VALUES (?, ?, ?, 'ann', ?)",
            (label_id, frame_id, f"class_{i % 4}", "2026-01-01T00:00:01.000000+00:00"),
        )
        label_ids.append(label_id)
    return label_ids


def slow_fine_tune(ctx: JobContext) -> JobResult:
    """A runner, idempotent per snapshot like a real one.

    Params: ``sleep_before_s`` (the "training"), ``sleep_after_s`` (after registering, before
    returning: a kill there leaves a registered model and a running job), both on the first
    attempt only (a re-run is quick); ``starts_dir`` (a file per start is written there).
    """
    first = ctx.job.attempts == 1
    starts = ctx.params.get("starts_dir")
    if starts:
        Path(starts, f"start-{os.getpid()}-{time.monotonic_ns()}").touch()
    existing = ctx.existing_model()
    if existing is not None:  # a crashed run registered it already
        return JobResult(
            existing.model_version, existing.metrics, existing.promoted, {"reused": True}
        )
    if first:
        time.sleep(float(ctx.params.get("sleep_before_s", 0)))
    gated = register_and_gate(
        ctx.registry,
        linear_onnx(version=f"ft-{ctx.snapshot_key[:8]}"),
        snapshot_key=ctx.snapshot_key,
        metrics={"accuracy": 0.9},
    )
    if first:
        time.sleep(float(ctx.params.get("sleep_after_s", 0)))
    info = gated.info
    return JobResult(info.model_version, info.metrics, info.promoted, {"labels": len(ctx.labels())})
