"""The background dedup snapshotter: when it saves (fake clock), and on a real ServerServices that
a restore after its snapshot catches up nothing, and that a failing snapshot folder is counted
while the server keeps serving."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from testkit.images import jpeg

from curator.errors import InvalidInputError
from curator.wire import BatchUpload, FrameRecord
from server.app.services import ServerServices
from server.app.snapshotter import DedupSnapshotter
from server.auth import Principal, Role
from server.dedup import FleetDedup
from server.dedup.snapshot import read_manifest
from server.settings import ServerSettings, load_settings

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CAM = Principal("tok_test", Role.DEVICE, "cam-1")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeIndexes:
    """Stands in for the indexes: ``progress`` as the snapshotter reads it, ``snapshot`` saves."""

    def __init__(self) -> None:
        self.progress: dict[str, tuple[int, int]] = {}
        self.saved: list[dict[str, tuple[int, int]]] = []
        self.fail: Exception | None = None

    def accept(self, mv: str, n: int) -> None:
        wm, vectors = self.progress.get(mv, (-1, 0))
        self.progress[mv] = (wm + n, vectors + n)

    def snapshot(self) -> dict[str, int]:
        if self.fail is not None:
            raise self.fail
        self.saved.append(dict(self.progress))
        return {mv: wm for mv, (wm, _) in self.progress.items()}


def make(indexes: FakeIndexes, clock: FakeClock, **kwargs: Any) -> DedupSnapshotter:
    return DedupSnapshotter(indexes.snapshot, lambda: dict(indexes.progress), clock=clock, **kwargs)


def test_interval_counts_from_when_the_snapshot_fell_behind() -> None:
    indexes, clock = FakeIndexes(), FakeClock()
    s = make(indexes, clock, interval_s=10.0, every_frames=0)
    assert s.run_once() is None and indexes.saved == []  # nothing new: nothing saved
    clock.now += 50  # idle time does not count
    assert s.run_once() is None
    indexes.accept("m1", 3)
    clock.now += 9.9
    assert s.due() is None
    assert s.stats().age_s == pytest.approx(9.9) and s.stats().unsaved_vectors == 3
    clock.now += 0.1
    assert s.due() == "interval"
    assert s.run_once() is True
    assert indexes.saved == [{"m1": (2, 3)}]
    stats = s.stats()
    assert (stats.saved, stats.failures, stats.age_s, stats.unsaved_vectors) == (1, 0, 0.0, 0)
    clock.now += 100
    assert s.run_once() is None and len(indexes.saved) == 1  # unchanged: no second save


def test_frame_count_triggers_before_the_interval() -> None:
    indexes, clock = FakeIndexes(), FakeClock()
    s = make(indexes, clock, interval_s=300.0, every_frames=5, saved={"m1": (9, 10)})
    indexes.progress = {"m1": (9, 10)}  # what the snapshot on disk holds at start
    assert s.due() is None
    indexes.accept("m1", 2)
    indexes.accept("m2", 2)
    assert s.due() is None and s.stats().unsaved_vectors == 4
    indexes.accept("m2", 1)
    assert s.due() == "frames"
    assert s.run_once() is True and indexes.saved[-1] == {"m1": (11, 12), "m2": (2, 3)}
    assert s.stats().unsaved_vectors == 0


def test_a_failure_is_counted_logged_and_retried_after_retry_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    indexes, clock = FakeIndexes(), FakeClock()
    s = make(indexes, clock, interval_s=1.0, every_frames=0, retry_s=5.0)
    indexes.accept("m1", 1)
    indexes.fail = OSError("disk full")
    clock.now += 1.0
    with caplog.at_level(logging.ERROR, logger="server.app.snapshotter"):
        assert s.run_once() is False
    (record,) = caplog.records
    assert record.error == "OSError: disk full"  # type: ignore[attr-defined]
    assert record.consecutive_failures == 1 and record.reason == "interval"  # type: ignore[attr-defined]
    clock.now += 4.9
    assert s.run_once() is None  # backing off
    clock.now += 0.1
    assert s.run_once() is False
    stats = s.stats()
    assert (stats.failures, stats.consecutive_failures) == (2, 2)
    assert stats.last_error == "OSError: disk full" and stats.age_s == pytest.approx(6.0)
    indexes.fail = None
    clock.now += 5.0
    assert s.run_once() is True
    stats = s.stats()
    assert (stats.saved, stats.failures, stats.consecutive_failures, stats.age_s) == (1, 2, 0, 0)


def test_a_failing_progress_read_is_counted_not_raised() -> None:
    def broken() -> dict[str, tuple[int, int]]:
        raise RuntimeError("stats broke")

    s = DedupSnapshotter(lambda: {}, broken, interval_s=1.0, clock=FakeClock())
    assert s.run_once() is False and s._failures == 1
    assert s.snapshot_now("test") is False and s._failures == 2


def test_disabled_runs_no_thread_but_still_snapshots_on_request() -> None:
    indexes, clock = FakeIndexes(), FakeClock()
    s = make(indexes, clock, interval_s=0, every_frames=0)
    assert not s.enabled
    s.start()
    assert s._thread is None and s.stop() is True
    indexes.accept("m1", 1)
    clock.now += 1e6
    assert s.due() is None
    assert s.snapshot_now("shutdown") is True and indexes.saved == [{"m1": (0, 1)}]


@pytest.mark.parametrize(
    "kwargs",
    [{"interval_s": -1.0}, {"every_frames": -1}, {"poll_s": 0.0}, {"retry_s": -2.0}],
)
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        DedupSnapshotter(lambda: {}, lambda: {}, **kwargs)


# --- a real ServerServices on tmp_path ------------------------------------------------------


def batch(first_seq: int, n: int) -> BatchUpload:
    """``n`` frames of cam-1 with random (so all accepted) 8-d embeddings."""
    frames = tuple(
        FrameRecord.from_image(
            jpeg(seq),
            np.random.default_rng(1000 + seq).standard_normal(8),
            device_id="cam-1",
            device_seq=seq,
            captured_at=T0,
            model_version="m1",
            width=16,
            height=12,
            scores={"entropy": 0.5},
            keep_reason="uncertain",
        )
        for seq in range(first_seq, first_seq + n)
    )
    return BatchUpload(batch_id=f"b{first_seq}", device_id="cam-1", frames=frames)


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def last_accepted_seq(services: ServerServices) -> int:
    (seq,) = services.db.connection.execute(
        "SELECT MAX(ingest_seq) FROM frames WHERE status = 'accepted'"
    ).fetchone()
    return int(seq)


def catch_up_counting(services: ServerServices, asked: list[tuple[str, int]]) -> Any:
    def catch_up(mv: str, after: int) -> Iterator[tuple[int, Any]]:
        asked.append((mv, after))
        for row in services.catalog.accepted_since(mv, after):
            yield row.ingest_seq, row.embedding

    return catch_up


@pytest.fixture
def open_services(tmp_path: Path) -> Iterator[Callable[..., ServerServices]]:
    opened: list[ServerServices] = []

    def open_(**overrides: Any) -> ServerServices:
        settings: ServerSettings = load_settings(
            {"data_dir": tmp_path / "data", **overrides}, None, {}
        )
        opened.append(ServerServices.open(settings))
        return opened[-1]

    yield open_
    for services in opened:
        if services.lock is not None and services.lock.held:  # not closed by the test
            services.close()


def test_background_snapshot_leaves_nothing_to_catch_up(
    open_services: Callable[..., ServerServices],
) -> None:
    services = open_services(snapshot_interval_s=0.05, snapshot_every_frames=0)
    answers = services.ingest.ingest(batch(1, 4), CAM).results
    assert [a.status for a in answers] == ["accepted"] * 4
    services.ingest.ingest(batch(5, 3), CAM)
    wait_for(lambda: services.snapshotter.stats().saved >= 1)
    wait_for(lambda: services.snapshotter.stats().unsaved_vectors == 0)
    snapshot_dir = services.settings.data_dir / "dedup"
    manifest = read_manifest(snapshot_dir)
    assert manifest is not None and manifest["m1"]["vectors"] == 7
    assert manifest["m1"]["watermark"] == last_accepted_seq(services)
    asked: list[tuple[str, int]] = []
    restored = FleetDedup.restore(snapshot_dir, catch_up_counting(services, asked))
    assert asked == [("m1", last_accepted_seq(services))]  # nothing past the watermark
    assert restored.stats()["vectors"] == 7
    assert services.snapshotter._thread is not None and services.snapshotter._thread.is_alive()
    services.close()
    assert services.snapshotter._thread is None  # stopped and joined


def test_frame_count_trigger_on_a_real_server(
    open_services: Callable[..., ServerServices],
) -> None:
    services = open_services(snapshot_interval_s=0, snapshot_every_frames=5)
    services.ingest.ingest(batch(1, 4), CAM)
    assert services.snapshotter.due() is None  # 4 < 5: nothing due
    assert services.snapshotter.stats().saved == 0
    assert read_manifest(services.settings.data_dir / "dedup", warn=False) is None
    services.ingest.ingest(batch(5, 1), CAM)
    wait_for(lambda: services.snapshotter.stats().saved == 1, timeout=5.0)
    manifest = read_manifest(services.settings.data_dir / "dedup")
    assert manifest is not None and manifest["m1"]["watermark"] == last_accepted_seq(services)


def test_failing_snapshot_dir_is_counted_and_the_server_keeps_serving(
    tmp_path: Path, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    blocker = data / "dedup"
    blocker.write_text("a file where the snapshot folder should be")
    settings = load_settings(
        {"data_dir": data, "snapshot_interval_s": 0.05, "snapshot_every_frames": 0}, None, {}
    )
    with (
        caplog.at_level(logging.ERROR, logger="server.app.snapshotter"),
        make_client(settings) as c,
    ):
        services: ServerServices = c.app.state.services
        services.ingest.ingest(batch(1, 3), CAM)
        wait_for(lambda: services.snapshotter.stats().failures >= 2)  # retried, still failing
        assert c.get("/readyz").status_code == 200
        answers = services.ingest.ingest(batch(4, 2), CAM).results
        assert [a.status for a in answers] == ["accepted"] * 2
        metrics = c.get("/metrics").text
        assert 'curator_server_dedup_snapshots_total{outcome="error"}' in metrics
        assert 'curator_server_dedup_snapshots_total{outcome="ok"} 0.0' in metrics
        assert "curator_server_dedup_unsaved_vectors 5.0" in metrics
        assert services.snapshotter._thread is not None and services.snapshotter._thread.is_alive()
        failures = [r for r in caplog.records if r.getMessage().startswith("dedup snapshot failed")]
        assert failures and "FileExistsError" in failures[0].error  # type: ignore[attr-defined]
        blocker.unlink()  # the operator fixes it: the next try succeeds
        wait_for(lambda: services.snapshotter.stats().consecutive_failures == 0)
        metrics = c.get("/metrics").text
        assert "curator_server_dedup_unsaved_vectors 0.0" in metrics
        assert "curator_server_dedup_snapshot_age_seconds 0.0" in metrics
    manifest = read_manifest(data / "dedup")
    assert manifest is not None and manifest["m1"]["vectors"] == 5


def test_close_survives_a_failing_final_snapshot(
    open_services: Callable[..., ServerServices], caplog: pytest.LogCaptureFixture
) -> None:
    services = open_services(snapshot_interval_s=0, snapshot_every_frames=0)
    services.ingest.ingest(batch(1, 2), CAM)
    snapshot_dir = services.settings.data_dir / "dedup"
    shutil.rmtree(snapshot_dir, ignore_errors=True)
    snapshot_dir.write_text("blocked")
    with caplog.at_level(logging.ERROR, logger="server.app.snapshotter"):
        services.close()  # logged and counted, never raised
    assert services.snapshotter.stats().failures == 1
    assert services.lock is not None and not services.lock.held


def test_settings_flags_environment_and_bounds() -> None:
    from server.cli import _overrides, build_parser

    defaults = load_settings({}, None, {})
    assert (defaults.snapshot_interval_s, defaults.snapshot_every_frames) == (300.0, 100_000)
    env = {"CURATOR_SERVER_SNAPSHOT_INTERVAL_S": "5", "CURATOR_SERVER_SNAPSHOT_EVERY_FRAMES": "7"}
    from_env = load_settings({}, None, env)
    assert (from_env.snapshot_interval_s, from_env.snapshot_every_frames) == (5.0, 7)
    args = build_parser().parse_args(
        ["serve", "--snapshot-interval-s", "0", "--snapshot-every-frames", "9"]
    )
    flags = load_settings(_overrides(args), None, env)
    assert (flags.snapshot_interval_s, flags.snapshot_every_frames) == (0.0, 9)
    with pytest.raises(InvalidInputError, match="snapshot_every_frames"):
        load_settings({"snapshot_every_frames": -1}, None, {})
    with pytest.raises(InvalidInputError, match="snapshot_interval_s"):
        load_settings({"snapshot_interval_s": "-0.5"}, None, {})
