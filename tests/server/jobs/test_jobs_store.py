"""JobStore on a real catalog file: idempotent create, exclusive leases, heartbeats, expiry."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from testkit.jobs import T0, ManualClock

from curator.errors import InvalidInputError
from server.catalog import Catalog
from server.errors import NotFound
from server.jobs import JobQueue, JobStore, requeue_expired


def _create(store: JobStore, key: str = "snap-a", **kwargs: object) -> str:
    job, created = store.create(key, label_watermark=3, label_count=3, **kwargs)  # type: ignore[arg-type]
    assert created
    return job.job_id


def test_create_is_idempotent_per_snapshot(store: JobStore, catalog: Catalog) -> None:
    first, created = store.create(
        "snap-a", label_watermark=3, label_count=3, params={"epochs": 2}, requested_by="admin"
    )
    assert created and first.status == "queued" and first.attempts == 0
    assert first.params == {"epochs": 2} and first.created_at == T0
    again, created_again = store.create("snap-a", label_watermark=9, label_count=9, params={})
    assert not created_again and again == first  # the stored job, its params and counts
    other, created_other = store.create("snap-b", label_watermark=4, label_count=4)
    assert created_other and other.job_id != first.job_id
    count = catalog.db.connection.execute("SELECT count(*) FROM jobs").fetchone()[0]
    assert count == 2
    # the table itself refuses a second row for a snapshot
    with pytest.raises(Exception, match="UNIQUE"):
        catalog.db.connection.execute(
            "INSERT INTO jobs (job_id, kind, snapshot_key, label_watermark, label_count, status,"
            " max_attempts, created_at) VALUES ('x', 'fine_tune', 'snap-a', 1, 1, 'queued', 1,"
            " 't')"
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "train_everything"}, "kind must be one of"),
        ({"max_attempts": 0}, "max_attempts must be an int >= 1"),
        ({"label_count": -1}, "label_count must be an int >= 0"),
        ({"params": {"x": object()}}, "JSON-serialisable"),
        ({"params": [1]}, "params must be a mapping"),
    ],
)
def test_create_refuses_bad_input(store: JobStore, kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"label_watermark": 1, "label_count": 1, **kwargs}
    with pytest.raises(InvalidInputError, match=match):
        store.create("snap", **args)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="snapshot_key"):
        store.create("", label_watermark=1, label_count=1)


def test_claim_takes_a_lease_and_a_live_lease_is_exclusive(
    store: JobStore, clock: ManualClock
) -> None:
    job_id = _create(store)
    job = store.claim(job_id, "w1", lease_s=10)
    assert job is not None and job.status == "running" and job.attempts == 1
    assert job.lease_owner == "w1" and job.lease_expires_at == T0 + timedelta(seconds=10)
    assert job.started_at == T0 and job.heartbeat_at == T0
    clock.advance(9.9)
    assert store.claim(job_id, "w2", lease_s=10) is None  # w1's lease is live
    clock.advance(0.1)  # expired exactly now: another worker may take over
    taken = store.claim(job_id, "w2", lease_s=10)
    assert taken is not None and taken.lease_owner == "w2" and taken.attempts == 2
    assert not store.heartbeat(job_id, "w1", 10)  # w1 lost it
    assert not store.finish(job_id, "w1", result={"x": 1}, succeeded=True)
    assert store.finish(job_id, "w2", result={"model_version": "m"}, succeeded=True)
    done = store.get(job_id)
    assert done.status == "succeeded" and done.result == {"model_version": "m"}
    assert done.lease_owner is None and done.finished_at == clock.now
    assert store.claim(job_id, "w3", lease_s=10) is None  # done: never run again
    with pytest.raises(NotFound):
        store.claim("job_nope", "w1", lease_s=1)
    with pytest.raises(InvalidInputError, match="lease_s"):
        store.claim(job_id, "w1", lease_s=0)


def test_two_threads_never_claim_the_same_job(store: JobStore) -> None:
    job_ids = [_create(store, f"snap-{i}") for i in range(40)]
    claimed: dict[str, list[str]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def claim_all(owner: str) -> None:
        barrier.wait()
        for job_id in job_ids:
            if store.claim(job_id, owner, lease_s=60) is not None:
                claimed[owner].append(job_id)

    threads = [threading.Thread(target=claim_all, args=(o,)) for o in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed["a"] + claimed["b"]) == sorted(job_ids)  # each exactly once
    assert not set(claimed["a"]) & set(claimed["b"])
    owners = {store.get(j).lease_owner for j in claimed["a"]}
    assert owners <= {"a"}


def test_heartbeat_extends_the_lease(store: JobStore, clock: ManualClock) -> None:
    job_id = _create(store)
    store.claim(job_id, "w1", lease_s=10)
    clock.advance(8)
    assert store.heartbeat(job_id, "w1", lease_s=10)
    job = store.get(job_id)
    assert job.heartbeat_at == T0 + timedelta(seconds=8)
    assert job.lease_expires_at == T0 + timedelta(seconds=18)
    clock.advance(9)  # past the first lease, inside the extended one
    assert store.claim(job_id, "w2", lease_s=10) is None
    assert store.expire_leases() == ([], [])
    assert not store.heartbeat(job_id, "w2", lease_s=10)


def test_expired_lease_is_requeued_and_redispatched(
    store: JobStore, queue: JobQueue, clock: ManualClock
) -> None:
    live, expired = _create(store, "live"), _create(store, "expired")
    never = _create(store, "never-dispatched")
    store.mark_dispatched(live)
    store.mark_dispatched(expired)
    store.claim(expired, "dead", lease_s=5)
    clock.advance(3)
    store.claim(live, "alive", lease_s=5)
    clock.advance(2)  # the first lease ends now, the second in 3 s
    dispatched = requeue_expired(store, queue)
    assert {j.job_id for j in dispatched} == {expired, never}
    assert queue.pending() == 2
    job = store.get(expired)
    assert job.status == "queued" and job.lease_owner is None and job.attempts == 1
    assert job.dispatched_at == clock.now
    assert store.get(live).status == "running"
    assert requeue_expired(store, queue) == []  # nothing new: no duplicate messages
    assert queue.pending() == 2
    again = store.claim(expired, "w2", lease_s=5)
    assert again is not None and again.attempts == 2


def test_max_attempts_then_failed(store: JobStore, queue: JobQueue, clock: ManualClock) -> None:
    job_id = _create(store, max_attempts=2)
    for owner in ("w1", "w2"):
        assert store.claim(job_id, owner, lease_s=1) is not None
        clock.advance(1)
        requeue_expired(store, queue)
    job = store.get(job_id)
    assert job.status == "failed" and job.attempts == 2 and job.finished_at == clock.now
    assert job.result is not None and "gave up after 2 attempts" in job.result["error"]
    assert queue.pending() == 1  # only the first expiry was re-dispatched
    assert store.claim(job_id, "w3", lease_s=1) is None
    retried = store.retry(job_id)
    assert retried.status == "queued" and retried.attempts == 0 and retried.result is None
    assert store.claim(job_id, "w3", lease_s=1) is not None
