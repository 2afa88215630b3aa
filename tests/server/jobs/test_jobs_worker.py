"""run_job, the runner seam and the Worker loop, in process, on real files."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from testkit.jobs import add_labels, slow_fine_tune

from curator.errors import InvalidInputError, MissingDependencyError
from server.catalog import Catalog
from server.cli import build_parser
from server.jobs import (
    JobContext,
    JobQueue,
    JobResult,
    JobStore,
    Worker,
    load_runner,
    open_worker,
    run_job,
    trigger,
)
from server.registry import ModelRegistry
from server.settings import load_settings


def _job(catalog: Catalog, store: JobStore, queue: JobQueue, **params: object) -> str:
    add_labels(catalog.db.connection, 4)
    outcome = trigger(store, queue, every_labels=1, params=params)
    assert outcome.job is not None
    return outcome.job.job_id


def _run(job_id: str, store: JobStore, catalog: Catalog, registry: ModelRegistry,
         runner: object, owner: str = "w1", lease_s: float = 30) -> object:  # fmt: skip
    return run_job(
        job_id, store=store, catalog=catalog, registry=registry,
        runners={"fine_tune": runner}, owner=owner, lease_s=lease_s,  # type: ignore[dict-item]
    )  # fmt: skip


def test_run_job_records_the_result_and_is_idempotent_per_snapshot(
    catalog: Catalog, store: JobStore, queue: JobQueue, registry: ModelRegistry
) -> None:
    job_id = _job(catalog, store, queue)
    job = _run(job_id, store, catalog, registry, slow_fine_tune)
    snapshot = store.get(job_id).snapshot_key
    version = f"ft-{snapshot[:8]}"
    assert job == store.get(job_id)
    done = store.get(job_id)
    assert done.status == "succeeded" and done.attempts == 1
    assert done.result == {
        "model_version": version, "metrics": {"accuracy": 0.9}, "promoted": True,
        "details": {"labels": 4},
    }  # fmt: skip
    # a duplicate message for a finished job is a no-op
    assert _run(job_id, store, catalog, registry, slow_fine_tune) is None
    # a re-run of the same snapshot (say, retried) reuses the registered model
    store.finish(job_id, "nobody", result={}, succeeded=False)  # not the owner: ignored
    catalog.db.connection.execute("UPDATE jobs SET status = 'failed' WHERE job_id = ?", (job_id,))
    store.retry(job_id)
    _run(job_id, store, catalog, registry, slow_fine_tune)
    rerun = store.get(job_id)
    assert rerun.result is not None and rerun.result["details"] == {"reused": True}
    assert [m.model_version for m in registry.list()] == [version]


def test_a_live_lease_elsewhere_is_left_alone(
    catalog: Catalog, store: JobStore, queue: JobQueue, registry: ModelRegistry
) -> None:
    job_id = _job(catalog, store, queue)
    store.claim(job_id, "other", lease_s=60)
    calls: list[str] = []
    assert _run(job_id, store, catalog, registry, lambda ctx: calls.append("ran")) is None
    assert calls == [] and store.get(job_id).lease_owner == "other"


def test_a_failing_runner_fails_the_job_with_its_error(
    catalog: Catalog, store: JobStore, queue: JobQueue, registry: ModelRegistry
) -> None:
    def broken(ctx: JobContext) -> JobResult:
        raise RuntimeError("out of labels")

    job_id = _job(catalog, store, queue)
    _run(job_id, store, catalog, registry, broken)
    job = store.get(job_id)
    assert job.status == "failed" and job.result == {"error": "RuntimeError: out of labels"}
    job_id2 = _job(catalog, store, queue)  # 4 more labels: another snapshot
    _run(job_id2, store, catalog, registry, lambda ctx: "not a JobResult")
    failed = store.get(job_id2)
    assert failed.result is not None and "must return a JobResult" in failed.result["error"]


def test_the_default_fine_tune_runner_is_the_training_adapter() -> None:
    from server.jobs.fine_tune import fine_tune_job
    from server.jobs.runners import DEFAULT_FINE_TUNE_RUNNER, load_runner

    assert load_runner(DEFAULT_FINE_TUNE_RUNNER) is fine_tune_job


def test_heartbeats_extend_the_lease_while_the_runner_works(
    catalog: Catalog, queue: JobQueue, registry: ModelRegistry
) -> None:
    store = JobStore(catalog.db)  # the real clock: heartbeats come from a thread
    job_id = _job(catalog, store, queue)
    seen: list[object] = []

    def slow(ctx: JobContext) -> JobResult:
        time.sleep(1.0)
        seen.append(store.get(ctx.job.job_id))
        return JobResult(None)

    _run(job_id, store, catalog, registry, slow, lease_s=0.3)
    during = seen[0]
    assert during.heartbeat_at > during.started_at  # type: ignore[attr-defined]
    assert during.lease_expires_at > during.started_at + 0.9 * (  # type: ignore[attr-defined]
        during.heartbeat_at - during.started_at  # type: ignore[attr-defined]
    )
    assert store.get(job_id).status == "succeeded"


def test_worker_loop_runs_dispatched_jobs_and_stops(
    catalog: Catalog, queue: JobQueue, registry: ModelRegistry
) -> None:
    store = JobStore(catalog.db)
    worker = Worker(
        store, queue, catalog, registry, runners={"fine_tune": slow_fine_tune}, lease_s=5,
        poll_s=0.05,
    )  # fmt: skip
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        job_id = _job(catalog, store, queue)
        deadline = time.monotonic() + 10
        while store.get(job_id).status != "succeeded" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert store.get(job_id).status == "succeeded" and queue.pending() == 0


def test_load_runner_refuses_bad_specs() -> None:
    assert load_runner("testkit.jobs:slow_fine_tune") is slow_fine_tune
    with pytest.raises(InvalidInputError, match="module:function"):
        load_runner("testkit.jobs")
    with pytest.raises(InvalidInputError, match="no function 'nope'"):
        load_runner("testkit.jobs:nope")
    with pytest.raises(MissingDependencyError, match="curator\\[train\\]"):
        load_runner("no_such_module_xyz:run")


def test_open_worker_checks_the_runner_at_start(tmp_path: Path) -> None:
    settings = load_settings(
        {"data_dir": tmp_path / "d"}, None, {"CURATOR_SERVER_JOB_RUNNER": "testkit.jobs:nope"}
    )
    with pytest.raises(InvalidInputError, match="nope"), open_worker(settings):
        pass
    good = load_settings({"data_dir": tmp_path / "d", "job_runner": "testkit.jobs:slow_fine_tune"})
    with open_worker(good) as worker:
        assert worker.runners["fine_tune"] is slow_fine_tune
        assert (tmp_path / "d" / "jobs-queue.sqlite").exists()
    bad_redis = load_settings({"data_dir": tmp_path / "d", "jobs_redis_url": "http://x"})
    with pytest.raises(InvalidInputError, match="redis://"), open_worker(bad_redis):
        pass


def test_worker_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["worker", "--data-dir", "d", "--redis-url", "redis://h:1/0"])
    assert args.command == "worker"
    with pytest.raises(SystemExit):
        parser.parse_args(["worker", "--help"])
    help_text = capsys.readouterr().out
    assert "--redis-url" in help_text and "--job-lease-s" in help_text and "SIGTERM" in help_text
