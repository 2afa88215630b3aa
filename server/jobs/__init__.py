"""Durable fine-tuning jobs: job rows are the truth, huey only dispatches (docs/jobs.md).

- :mod:`server.jobs.store`: :class:`JobStore`, the ``jobs`` table (status, attempts, lease,
  heartbeat, one job per dataset snapshot); :mod:`server.jobs.rows` the :class:`Job` row.
- :mod:`server.jobs.weights`: where a job's trained weights are (recorded before registering).
- :mod:`server.jobs.queue`: :class:`JobQueue` and :func:`make_huey` (SQLite by default, Redis
  by config); messages carry a ``job_id`` only.
- :mod:`server.jobs.trigger`: :func:`snapshot_key`, :func:`snapshot_labels`, the policy
  :func:`decide` and :func:`trigger` (N new labels, or an admin request).
- :mod:`server.jobs.runners`: the runner seam :data:`JOB_RUNNERS` / :class:`JobContext` /
  :class:`JobResult`.
- :mod:`server.jobs.sweeper`: the lease sweeper :func:`requeue_expired` and its thread
  :class:`LeaseSweeper` (run by workers and by the server).
- :mod:`server.jobs.worker`: :func:`run_job` and :class:`Worker`.
"""

from server.jobs.queue import QUEUE_FILE_NAME, JobQueue, make_huey
from server.jobs.rows import DEFAULT_MAX_ATTEMPTS, JOB_KINDS, Job, JobStatus
from server.jobs.runners import (
    DEFAULT_FINE_TUNE_RUNNER,
    JOB_RUNNERS,
    JobContext,
    JobResult,
    JobRunner,
    load_runner,
)
from server.jobs.store import JobStore
from server.jobs.sweeper import LeaseSweeper, requeue_expired, sweep_interval
from server.jobs.trigger import (
    SnapshotLabel,
    TriggerDecision,
    TriggerOutcome,
    current_watermark,
    decide,
    snapshot_key,
    snapshot_labels,
    trigger,
)
from server.jobs.weights import record_weights, weights_of
from server.jobs.worker import Worker, open_worker, run_job

__all__ = [
    "DEFAULT_FINE_TUNE_RUNNER",
    "DEFAULT_MAX_ATTEMPTS",
    "JOB_KINDS",
    "JOB_RUNNERS",
    "QUEUE_FILE_NAME",
    "Job",
    "JobContext",
    "JobQueue",
    "JobResult",
    "JobRunner",
    "JobStatus",
    "JobStore",
    "LeaseSweeper",
    "SnapshotLabel",
    "TriggerDecision",
    "TriggerOutcome",
    "Worker",
    "current_watermark",
    "decide",
    "load_runner",
    "make_huey",
    "open_worker",
    "record_weights",
    "requeue_expired",
    "run_job",
    "snapshot_key",
    "snapshot_labels",
    "sweep_interval",
    "trigger",
    "weights_of",
]
