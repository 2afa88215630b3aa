"""Running jobs: :func:`run_job` (claim, run with a heartbeat, finish) and :class:`Worker`,
the loop behind ``curator-server worker``, with its lease sweeper thread
(:class:`~server.jobs.sweeper.LeaseSweeper`).

What a job runs is looked up in :data:`~server.jobs.runners.JOB_RUNNERS` (job kind -> a function
of a :class:`~server.jobs.runners.JobContext`); :mod:`server.jobs.runners` describes the seam.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator, Mapping

from curator.errors import InvalidInputError
from server.blobs import open_blob_store
from server.catalog import Catalog
from server.jobs.queue import JobQueue, make_huey
from server.jobs.runners import JOB_RUNNERS, JobContext, JobResult, JobRunner, load_runner
from server.jobs.store import Job, JobStore
from server.jobs.sweeper import LeaseSweeper, sweep_interval
from server.registry import ModelRegistry
from server.settings import ServerSettings
from server.warehouse import Outbox

__all__ = ["Worker", "open_worker", "run_job", "worker_id"]

log = logging.getLogger(__name__)


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
        sweep_s: seconds between sweeps (default :func:`~server.jobs.sweeper.sweep_interval`).
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
        self.sweep_s = sweep_s if sweep_s is not None else sweep_interval(lease_s)
        self.owner = owner or worker_id()
        self.stop_event = threading.Event()
        queue.bind(self.run_job)

    def run_job(self, job_id: str) -> Job | None:
        """:func:`run_job` with this worker's parts."""
        return run_job(
            job_id, store=self.store, catalog=self.catalog, registry=self.registry,
            runners=self.runners, owner=self.owner, lease_s=self.lease_s,
        )  # fmt: skip

    def run(self) -> None:
        """Run until :meth:`stop`: the current job finishes, then the loop returns."""
        log.info("worker %s started (lease %ss)", self.owner, self.lease_s)
        sweeper = LeaseSweeper(self.store, self.queue, interval_s=self.sweep_s)
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
            sweeper.stop()
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
