"""Telemetry of a real selector run: merged counters, the heartbeat, Prometheus exposition."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from testkit.models import linear_onnx
from testkit.server import free_port
from testkit.videos import bikes_frames

from curator.data.video import VideoFrame
from curator.inference import OnnxModel
from curator.wire import COUNTER_PATTERN, DeviceHeartbeat
from edge_selector.buffer import FrameBuffer
from edge_selector.selector import SelectionPolicy, Selector
from edge_selector.sync import Uploader
from edge_selector.telemetry import Telemetry

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return OnnxModel(linear_onnx(version="lin-1"))


@pytest.fixture
def selector(tmp_path: Path, model: OnnxModel) -> Iterator[Selector]:
    frames = bikes_frames(64)
    black = [VideoFrame(100 + i, 4.0 + i / 25, np.zeros((272, 640, 3), np.uint8)) for i in range(3)]
    with FrameBuffer(tmp_path / "b.db", max_bytes=64 * 2**20) as buf:
        sel = Selector(
            model, buf, SelectionPolicy(keep_ratio=0.3), clock=lambda: 0.0, wallclock=lambda: T0
        )
        for start in range(0, len(frames), 16):
            sel.process(frames[start : start + 16], started=T0)
        sel.process(black, started=T0)
        yield sel


def telemetry(selector: Selector, uploader: Uploader | None = None, skipped: int = 0) -> Telemetry:
    return Telemetry(
        selector,
        selector.buffer,
        uploader,
        skipped=lambda: skipped,
        device_id="cam-7",
        software_version="9.9",
        wallclock=lambda: LATER,
    )


def test_counters_without_uploader_are_the_selectors_plus_skipped(selector: Selector) -> None:
    counts = telemetry(selector, skipped=2).counters()
    assert counts["frames.seen"] == 67
    assert counts["dropped.black"] == 3
    assert counts["source.skipped"] == 2
    for key, value in selector.counts.items():
        assert counts[key] == value
    assert set(counts) == set(selector.counts) | {"source.skipped"}
    assert not any(k.startswith("sync.") for k in counts)
    assert list(counts) == sorted(counts)
    assert all(isinstance(v, int) for v in counts.values())


def test_counters_before_any_frame_are_zero(tmp_path: Path, model: OnnxModel) -> None:
    with FrameBuffer(tmp_path / "b.db", max_bytes=2**20) as buf:
        sel = Selector(model, buf)
        counts = telemetry(sel).counters()
        assert counts == {"evicted": 0, "frames.kept": 0, "frames.seen": 0, "source.skipped": 0}


def test_counters_merge_a_real_uploaders(selector: Selector) -> None:
    # nothing listens on the port: one real upload attempt ends in a transport error
    uploader = Uploader(
        selector.buffer,
        server=f"http://127.0.0.1:{free_port()}",
        token="t",
        device_id="cam-7",
        timeout_s=2.0,
        sleep=lambda s: None,
    )
    try:
        uploader.upload_once()
        counts = telemetry(selector, uploader).counters()
        _, samples = scrape(telemetry(selector, uploader))
    finally:
        uploader.close()
    assert counts["sync.transport_errors"] == 1
    assert counts["sync.uploaded"] == 0
    assert counts["sync.released"] == selector.counts["frames.kept"]
    assert counts["frames.seen"] == selector.counts["frames.seen"]
    assert set(uploader.counters.flat()) <= set(counts)
    assert samples[("curator_edge_sync_events_total", (("event", "transport_errors"),))] == 1
    assert samples[("curator_edge_frames_uploaded_total", ())] == 0
    assert not any(name == "curator_edge_upload_rejected_total" for name, _ in samples)


def test_heartbeat_is_a_valid_wire_heartbeat_with_the_buffers_stats(selector: Selector) -> None:
    beat = telemetry(selector, skipped=1).heartbeat()
    again = DeviceHeartbeat.model_validate_json(beat.model_dump_json())
    assert again == beat
    stats = selector.buffer.stats()
    assert beat.buffer_frames == stats.frames == selector.counts["frames.kept"] > 0
    assert beat.buffer_bytes == stats.file_bytes
    assert beat.buffer_max_bytes == stats.max_bytes == 64 * 2**20
    assert beat.last_device_seq == stats.last_device_seq == selector.counts["frames.kept"]
    assert beat.device_id == "cam-7" and beat.software_version == "9.9"
    assert beat.model_version == "lin-1"
    assert beat.sent_at == LATER and beat.started_at == T0
    assert beat.counters == telemetry(selector, skipped=1).counters()
    assert all(re.match(COUNTER_PATTERN, k) for k in beat.counters)


def scrape(t: Telemetry) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    registry = CollectorRegistry()
    registry.register(t)
    text = generate_latest(registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def test_prometheus_exposition(selector: Selector) -> None:
    text, samples = scrape(telemetry(selector, skipped=4))
    counts = selector.counts
    assert f"curator_edge_frames_seen_total {float(counts['frames.seen'])}" in text
    assert samples[("curator_edge_frames_seen_total", ())] == 67
    assert samples[("curator_edge_frames_kept_total", ())] == counts["frames.kept"]
    assert samples[("curator_edge_frames_evicted_total", ())] == 0
    assert samples[("curator_edge_frames_uploaded_total", ())] == 0
    assert samples[("curator_edge_source_skipped_total", ())] == 4
    dropped = {
        dict(labels)["reason"]: v
        for (name, labels), v in samples.items()
        if name == "curator_edge_frames_dropped_total"
    }
    want = {k.removeprefix("dropped."): v for k, v in counts.items() if k.startswith("dropped.")}
    assert dropped == want and dropped["black"] == 3
    assert 'curator_edge_frames_dropped_total{reason="black"} 3.0' in text
    stats = selector.buffer.stats()
    assert samples[("curator_edge_buffer_frames", ())] == stats.frames
    assert samples[("curator_edge_buffer_max_bytes", ())] == stats.max_bytes
    assert samples[("curator_edge_buffer_bytes", ())] > 0
    assert "# TYPE curator_edge_frames_seen_total counter" in text
    assert "# TYPE curator_edge_buffer_bytes gauge" in text


def test_prometheus_reads_the_counters_at_each_scrape(selector: Selector) -> None:
    t = telemetry(selector)
    _, before = scrape(t)
    selector.process([VideoFrame(500, 20.0, np.zeros((272, 640, 3), np.uint8))], started=T0)
    _, after = scrape(t)
    assert (
        after[("curator_edge_frames_seen_total", ())]
        == before[("curator_edge_frames_seen_total", ())] + 1
    )
    key = ("curator_edge_frames_dropped_total", (("reason", "black"),))
    assert after[key] == before[key] + 1


def test_fit_counters_keeps_every_heartbeat_valid() -> None:
    from datetime import UTC, datetime

    from curator.wire import DeviceHeartbeat
    from edge_selector.telemetry import fit_counters

    counters = {"frames.seen": 5, "sync.rejected." + "x" * 80: 2, "sync.rejected." + "x" * 81: 3}
    counters |= {f"sync.rejected.code_{i}": 1 for i in range(200)}
    counters["sync.rejected.Bad-Code"] = 4
    fitted = fit_counters(counters)
    assert len(fitted) <= 128 and fitted["frames.seen"] == 5
    assert sum(fitted.values()) == sum(counters.values())  # nothing lost, only folded
    now = datetime.now(UTC)
    beat = DeviceHeartbeat(device_id="cam-1", sent_at=now, started_at=now, software_version="1",
                           counters=fitted, buffer_frames=0, buffer_bytes=0, buffer_max_bytes=1,
                           last_device_seq=0)  # fmt: skip
    assert beat.counters == fitted
