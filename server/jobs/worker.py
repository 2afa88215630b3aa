"""Running jobs: :func:`run_job` (claim, run with a heartbeat, finish), the lease sweeper
:func:`requeue_expired`, and :class:`Worker`, the loop behind ``curator-server worker``.

The seam to training is :data:`JOB_RUNNERS`: job kind -> a function of a :class:`JobContext`
returning a :class:`JobResult`. A runner must be idempotent per snapshot: a job re-run after a
crash must not make a second model version. The registry enforces one version per snapshot;
a runner first asks :meth:`JobContext.existing_model` and returns that version if the crashed
run already registered one, else it trains and registers with ``snapshot_key=job.snapshot_key``
(:func:`server.registry.register_and_gate`).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from curator.errors import InvalidInputError, MissingDependencyError
from curator.wire import ModelInfo
from server.blobs import open_blob_store
from server.catalog import Catalog
from server.jobs.queue import JobQueue, make_huey
from server.jobs.store import Job, JobStore
from server.jobs.trigger import SnapshotLabel, snapshot_labels
from server.registry import ModelRegistry
from server.settings import ServerSettings
from server.warehouse import Outbox

__all__ = [
    "DEFAULT_FINE_TUNE_RUNNER",
    "JOB_RUNNERS",
    "JobContext",
    "JobResult",
    "JobRunner",
    "Worker",
    "load_runner",
    "open_worker",
    "requeue_expired",
    "run_job",
]

log = logging.getLogger(__name__)
DEFAULT_FINE_TUNE_RUNNER = "server.jobs.fine_tune:fine_tune_job"
"""Where the default ``fine_tune`` runner is looked up (lazily, when a job runs)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class JobResult:
    """What a runner made: the model version (None if none), its held-out metrics, whether the
    gate promoted it, and anything else worth keeping with the job (JSON values)."""

    model_version: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    promoted: bool | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "metrics": dict(self.metrics),
            "promoted": self.promoted,
            "details": dict(self.details),
        }


@dataclass
class JobContext:
    """What a runner gets: the claimed job, the catalog and the registry.

    Attributes:
        lease_lost: set when a heartbeat found the lease taken by another worker; a long runner
            may check it and stop early (its result would be discarded anyway).
    """

    job: Job
    catalog: Catalog
    registry: ModelRegistry
    lease_lost: threading.Event

    @property
    def snapshot_key(self) -> str:
        return self.job.snapshot_key

    @property
    def params(self) -> Mapping[str, Any]:
        return self.job.params

    def labels(self) -> list[SnapshotLabel]:
        """The snapshot's labels (exactly those the job was created for)."""
        return snapshot_labels(self.catalog.db.connection, self.job.label_watermark)

    def existing_model(self) -> ModelInfo | None:
        """The model version already registered for this snapshot (a crashed run's), or None."""
        row = self.catalog.db.connection.execute(
            "SELECT model_version FROM model_versions WHERE snapshot_key = ?",
            (self.job.snapshot_key,),
        ).fetchone()
        return None if row is None else self.registry.get(row[0])


JobRunner = Callable[[JobContext], JobResult]


def load_runner(spec: str) -> JobRunner:
    """The function named ``"package.module:function"``, imported now.

    Raises:
        InvalidInputError: ``spec`` is not ``module:function`` or names nothing callable.
        MissingDependencyError: the module cannot be imported.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidInputError(f"a job runner must be 'module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingDependencyError(
            f"job runner {spec!r}: cannot import {module_name!r} ({exc}); for fine-tuning "
            "install the train extra: pip install 'curator[train]'"
        ) from exc
    runner = getattr(module, attr, None)
    if not callable(runner):
        raise InvalidInputError(f"job runner {spec!r}: {module_name} has no function {attr!r}")
    return runner  # type: ignore[no-any-return]


def _default_fine_tune(ctx: JobContext) -> JobResult:
    return load_runner(DEFAULT_FINE_TUNE_RUNNER)(ctx)


JOB_RUNNERS: dict[str, JobRunner] = {"fine_tune": _default_fine_tune}
"""Job kind -> runner. The default ``fine_tune`` runner imports
:data:`DEFAULT_FINE_TUNE_RUNNER` when a job runs; ``job_runner`` in the settings replaces it."""


def _heartbeat(
    store: JobStore, job_id: str, owner: str, lease_s: float, stop: threading.Event,
    lost: threading.Event,
) -> None:  # fmt: skip
    while not stop.wait(lease_s / 3):
        try:
            held = store.heartbeat(job_id, owner, lease_s)
        except Exception:  # a locked or busy file: try again at the next beat
            log.exception("heartbeat of job %s failed", job_id)
            continue
        if not held:
            log.warning("job %s: lease lost to another worker", job_id, extra={"job_id": job_id})
            lost.set()
            return


def run_job(
    job_id: str,
    *,
    store: JobStore,
    catalog: Catalog,
    registry: ModelRegistry,
    runners: Mapping[str, JobRunner],
    owner: str,
    lease_s: float,
) -> Job | None:
    """Claim ``job_id``, run its runner with a heartbeat thread, and record the outcome.

    A job that is done, or leased by a live worker, is left alone (a duplicate message). A
    runner that raises fails the job with the error as its result (not retried: retry it with
    :meth:`JobStore.retry`); a killed worker's job is retried through its expired lease.

    Returns:
        The job as stored after the run, or None when there was nothing to run.
    """
    job = store.claim(job_id, owner, lease_s)
    if job is None:
        return None
    log.info("job %s started (attempt %d)", job_id, job.attempts, extra={"job_id": job_id})
    stop, lost = threading.Event(), threading.Event()
    beat = threading.Thread(
        target=_heartbeat, args=(store, job_id, owner, lease_s, stop, lost),
        name=f"heartbeat-{job_id}", daemon=True,
    )  # fmt: skip
    beat.start()
    try:
        runner = runners.get(job.kind)
        if runner is None:
            raise InvalidInputError(f"no runner for job kind {job.kind!r}; have {sorted(runners)}")
        result = runner(JobContext(job, catalog, registry, lost))
        if not isinstance(result, JobResult):
            raise InvalidInputError(f"a runner must return a JobResult, got {result!r}")
        outcome, succeeded = result.to_json(), True
    except Exception as exc:
        log.exception("job %s failed", job_id, extra={"job_id": job_id})
        outcome, succeeded = {"error": f"{type(exc).__name__}: {exc}"}, False
    finally:
        stop.set()
        beat.join()
    finished = store.finish(
        job_id, owner, result=outcome, succeeded=succeeded, outbox=registry.outbox
    )
    if not finished:
        log.warning("job %s: finished after losing the lease; result discarded", job_id)
    return store.get(job_id)


def requeue_expired(store: JobStore, queue: JobQueue, now: datetime | None = None) -> list[Job]:
    """The lease sweeper: requeue running jobs whose lease expired (or fail them after
    ``max_attempts``) and dispatch them through huey again, with never-dispatched queued jobs.

    Run by every worker and periodically by the server; several sweepers at once are safe
    (the store's transaction decides, and a duplicate message is a no-op).

    Returns:
        The jobs dispatched.
    """
    dispatch, failed = store.expire_leases(now=now)
    for job in failed:
        log.error("job %s failed: %s", job.job_id, (job.result or {}).get("error"))
    for job in dispatch:
        queue.dispatch(job.job_id)
        store.mark_dispatched(job.job_id, now=now)
        log.info("job %s re-dispatched (attempts so far %d)", job.job_id, job.attempts)
    return dispatch


def worker_id() -> str:
    """A lease owner name unique to this worker: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Worker:
    """Runs jobs from the queue in this process, with a lease sweeper thread.

    Args:
        store, catalog, registry: the job rows and what runners need, on the catalog's file.
        queue: the job queue; the worker binds its handler to it.
        runners: job kind -> runner (default :data:`JOB_RUNNERS`).
        lease_s: the lease taken on each job; heartbeats every third of it.
        poll_s: the pause when the queue is empty.
        sweep_s: seconds between sweeps (default a quarter of the lease).
    """

    def __init__(
        self,
        store: JobStore,
        queue: JobQueue,
        catalog: Catalog,
        registry: ModelRegistry,
        *,
        runners: Mapping[str, JobRunner] | None = None,
        lease_s: float = 60.0,
        poll_s: float = 0.2,
        sweep_s: float | None = None,
        owner: str | None = None,
    ) -> None:
        if not lease_s > 0:
            raise InvalidInputError(f"lease_s must be > 0, got {lease_s!r}")
        self.store, self.queue, self.catalog, self.registry = store, queue, catalog, registry
        self.runners = dict(JOB_RUNNERS if runners is None else runners)
        self.lease_s, self.poll_s = lease_s, poll_s
        self.sweep_s = sweep_s if sweep_s is not None else min(max(lease_s / 4, 0.1), 30.0)
        self.owner = owner or worker_id()
        self.stop_event = threading.Event()
        queue.bind(self.run_job)

    def run_job(self, job_id: str) -> Job | None:
        """:func:`run_job` with this worker's parts."""
        return run_job(
            job_id, store=self.store, catalog=self.catalog, registry=self.registry,
            runners=self.runners, owner=self.owner, lease_s=self.lease_s,
        )  # fmt: skip

    def _sweep_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                requeue_expired(self.store, self.queue)
            except Exception:
                log.exception("lease sweep failed")
            self.stop_event.wait(self.sweep_s)

    def run(self) -> None:
        """Run until :meth:`stop`: the current job finishes, then the loop returns."""
        log.info("worker %s started (lease %ss)", self.owner, self.lease_s)
        sweeper = threading.Thread(target=self._sweep_loop, name="lease-sweeper", daemon=True)
        sweeper.start()
        try:
            while not self.stop_event.is_set():
                try:
                    ran = self.queue.run_next()
                except Exception:
                    log.exception("job message failed")
                    ran = True
                if not ran:
                    self.stop_event.wait(self.poll_s)
        finally:
            self.stop_event.set()
            sweeper.join()
            log.info("worker %s stopped", self.owner)

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current job (safe from a signal handler)."""
        self.stop_event.set()


@contextlib.contextmanager
def open_worker(settings: ServerSettings) -> Iterator[Worker]:
    """A :class:`Worker` on ``settings``' data folder and queue, closed on exit.

    The runner of ``fine_tune`` jobs is ``settings.job_runner`` when set (imported now, so a
    typo fails at start), else the default.

    Raises:
        InvalidInputError, MissingDependencyError: a bad ``job_runner`` or Redis URL.
    """
    runners = dict(JOB_RUNNERS)
    if settings.job_runner:
        runners["fine_tune"] = load_runner(settings.job_runner)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(settings.catalog_path)
    outbox = Outbox(settings.catalog_path)
    queue = JobQueue(make_huey(settings.data_dir, settings.jobs_redis_url))
    try:
        registry = ModelRegistry(catalog, open_blob_store(settings.blob_location), outbox)
        yield Worker(
            JobStore(catalog.db), queue, catalog, registry, runners=runners,
            lease_s=settings.job_lease_s,
        )  # fmt: skip
    finally:
        queue.close()
        outbox.close()
        catalog.close()
