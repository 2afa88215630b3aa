"""A job row as Python sees it: :class:`Job`, its column list and decoding, and the warehouse
row of a finished run. No transactions here: :class:`server.jobs.store.JobStore` owns those.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from curator.errors import InvalidInputError

__all__ = [
    "COLUMNS",
    "DEFAULT_MAX_ATTEMPTS",
    "JOB_KINDS",
    "TRAINING_RUNS_TABLE",
    "Job",
    "JobStatus",
    "check_lease",
    "check_new_job",
    "job_from_row",
    "training_run_row",
    "utc_now",
]

JobStatus = Literal["queued", "running", "succeeded", "failed"]
JOB_KINDS = ("fine_tune",)
DEFAULT_MAX_ATTEMPTS = 3
TRAINING_RUNS_TABLE = "training_runs"
COLUMNS = (
    "job_id, kind, snapshot_key, label_watermark, label_count, params, requested_by, status,"
    " attempts, max_attempts, lease_owner, lease_expires_at, heartbeat_at, created_at,"
    " dispatched_at, started_at, finished_at, result, weights_blob"
)
"""The ``jobs`` columns :func:`job_from_row` decodes, in its order."""


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass(frozen=True)
class Job:
    """One job row. Times are aware UTC datetimes; ``result`` is the decoded JSON or None.

    Attributes:
        snapshot_key: the dataset snapshot (:func:`server.jobs.trigger.snapshot_key`); one job,
            and so one model version, per snapshot.
        label_watermark: the highest ``labels`` rowid in the snapshot: the snapshot's labels
            are re-derived from it (:func:`server.jobs.trigger.snapshot_labels`).
        label_count: how many current labels the snapshot holds.
        attempts: how many times a worker claimed it.
        weights_blob: the blob key of the trained weights (the state dict the next run starts
            from), recorded before the model version is registered, so a worker dying between
            registering and finishing loses neither (``catalog.0006_job_weights``).
    """

    job_id: str
    kind: str
    snapshot_key: str
    label_watermark: int
    label_count: int
    params: dict[str, Any]
    requested_by: str | None
    status: JobStatus
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    created_at: datetime
    dispatched_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    weights_blob: str | None = None

    @property
    def done(self) -> bool:
        """Succeeded or failed: nothing will run it again (unless :meth:`JobStore.retry`)."""
        return self.status in ("succeeded", "failed")


def job_from_row(row: tuple[Any, ...]) -> Job:
    """The :class:`Job` of a row selected with :data:`COLUMNS`."""
    (job_id, kind, snapshot, watermark, count, params, requested_by, status, attempts,
     max_attempts, owner, expires, heartbeat, created, dispatched, started, finished,
     result, weights_blob) = row  # fmt: skip
    return Job(
        job_id, kind, snapshot, watermark, count, json.loads(params), requested_by, status,
        attempts, max_attempts, owner, _time(expires), _time(heartbeat),
        datetime.fromisoformat(created), _time(dispatched), _time(started), _time(finished),
        None if result is None else json.loads(result), weights_blob,
    )  # fmt: skip


def training_run_row(job: Job) -> dict[str, Any]:
    """The warehouse row ``training_runs`` (:data:`server.warehouse.tables.TRAINING_RUNS`) of a
    finished job."""
    result = job.result or {}
    metrics = result.get("metrics")
    return {
        "run_id": job.job_id,
        "snapshot_key": job.snapshot_key,
        "status": job.status,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "metrics": dict(metrics) if isinstance(metrics, Mapping) else {},
        "model_version": result.get("model_version"),
    }


def check_lease(lease_s: float) -> timedelta:
    """``lease_s`` as a timedelta.

    Raises:
        InvalidInputError: ``lease_s`` is not a number > 0.
    """
    if isinstance(lease_s, bool) or not isinstance(lease_s, int | float) or not lease_s > 0:
        raise InvalidInputError(f"lease_s must be a number > 0, got {lease_s!r}")
    return timedelta(seconds=float(lease_s))


def check_new_job(
    kind: str,
    snapshot_key: str,
    label_watermark: int,
    label_count: int,
    max_attempts: int,
    params: Mapping[str, Any] | None,
) -> str:
    """Check the fields of a new job; returns its params as JSON text.

    Raises:
        InvalidInputError: an unknown kind, an empty snapshot key, negative counts,
            ``max_attempts < 1`` or params that are not a JSON object.
    """
    if kind not in JOB_KINDS:
        raise InvalidInputError(f"kind must be one of {list(JOB_KINDS)}, got {kind!r}")
    if not isinstance(snapshot_key, str) or not 1 <= len(snapshot_key) <= 200:
        raise InvalidInputError(f"snapshot_key must be 1-200 characters, got {snapshot_key!r}")
    for name, value, low in (
        ("label_watermark", label_watermark, 0),
        ("label_count", label_count, 0),
        ("max_attempts", max_attempts, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidInputError(f"{name} must be an int >= {low}, got {value!r}")
    if params is not None and not isinstance(params, Mapping):
        raise InvalidInputError(f"params must be a mapping, got {params!r}")
    try:
        return json.dumps(dict(params or {}), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"params must be JSON-serialisable: {exc}") from None
