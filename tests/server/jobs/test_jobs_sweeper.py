"""The lease sweeper: a job whose worker died goes back to the queue, from a worker's sweeper
thread or from the server's, with no worker running at all."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from testkit.jobs import ManualClock, add_labels

from server.app.services import ServerServices
from server.catalog import Catalog
from server.jobs import Job, JobQueue, JobStore, LeaseSweeper, sweep_interval, trigger
from server.settings import load_settings


def _wait_for(store: JobStore, job_id: str, timeout: float) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = store.get(job_id)
        if job.status == "queued" and job.lease_owner is None:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} not requeued within {timeout} s: {job}")
        time.sleep(0.02)


def test_sweep_interval_is_a_quarter_of_the_lease_within_bounds() -> None:
    assert sweep_interval(60) == 15
    assert sweep_interval(0.1) == 0.1
    assert sweep_interval(3600) == 30


def test_the_sweeper_thread_requeues_an_expired_job_and_stops(
    catalog: Catalog, store: JobStore, queue: JobQueue, clock: ManualClock
) -> None:
    add_labels(catalog.db.connection, 3)
    job = trigger(store, queue, every_labels=1).job
    assert job is not None and queue.pending() == 1
    assert queue.huey.dequeue() is not None  # a worker took the message, claimed, then died
    assert store.claim(job.job_id, "dead-worker", 5) is not None
    sweeper = LeaseSweeper(store, queue, interval_s=0.02)
    sweeper.start()
    try:
        time.sleep(0.1)  # several sweeps: the lease is live, nothing moves
        assert store.get(job.job_id).status == "running" and queue.pending() == 0
        clock.advance(5)
        requeued = _wait_for(store, job.job_id, 5)
    finally:
        assert sweeper.stop(timeout=5)
    assert requeued.attempts == 1 and queue.pending() == 1
    assert sweeper.sweeps >= 2
    with pytest.raises(ValueError, match="interval_s"):
        LeaseSweeper(store, queue, interval_s=0)


def test_the_server_requeues_an_expired_job_with_no_worker_running(tmp_path: Path) -> None:
    settings = load_settings({"data_dir": tmp_path / "data", "job_lease_s": 0.4}, None, {})
    services = ServerServices.open(settings)
    try:
        add_labels(services.db.connection, 3)
        store = JobStore(services.db)
        job = trigger(store, services.job_queue, every_labels=1).job
        assert job is not None
        assert services.job_queue.huey.dequeue() is not None  # taken by a worker that dies
        assert store.claim(job.job_id, "dead-worker", 0.4) is not None
        requeued = _wait_for(store, job.job_id, 5)  # lease 0.4 s, sweeps every 0.1 s
        assert requeued.attempts == 1 and requeued.dispatched_at is not None
        # waiting for the next worker to start (a sweep racing the trigger's own dispatch may
        # have sent one more message: a duplicate is a no-op)
        assert services.job_queue.pending() >= 1
    finally:
        services.close()
    assert not services.lease_sweeper._thread or not services.lease_sweeper._thread.is_alive()
