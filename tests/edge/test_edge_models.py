"""Edge model updates: ModelUpdater against an in-process fake of the server's model routes
(httpx.MockTransport), real onnxruntime models, real files; Selector.swap_model on real frames.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from testkit.models import linear_onnx
from testkit.server import ROOT, ServeProcess, clean_env, create_token
from testkit.videos import bikes_frames, bikes_path

from curator.data.video import VideoFrame
from curator.inference import OnnxModel
from curator.wire import ModelInfo
from edge_selector.buffer import BufferedFrame, FrameBuffer
from edge_selector.model_store import CURRENT_FILE, installed_model
from edge_selector.models import ModelUpdater
from edge_selector.selector import PreparedBatch, SelectionPolicy, Selector
from edge_selector.telemetry import Telemetry

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BIG = 64 * 2**20
TOKEN = "cur_test-token"
SERVER = "http://models.test"

V1 = linear_onnx(version="lin-1", dim=16, size=16)
V2 = linear_onnx(version="lin-2", dim=8, size=24, seed=1)  # other dim and input size


def load(path: Path) -> OnnxModel:
    return OnnxModel(path)


class FakeModelServer:
    """``GET /v1/models/latest`` (ETag, 304) and the download route, as the server answers."""

    def __init__(self) -> None:
        self.info: ModelInfo | None = None
        self.files: dict[str, bytes] = {}
        self.requests: list[httpx.Request] = []
        self.fail_latest: int | None = None

    def offer(
        self, data: bytes, version: str, *, sha256: str | None = None, size: int | None = None
    ) -> ModelInfo:
        path = f"/v1/models/{version}/file"
        self.files[path] = data
        self.info = ModelInfo(
            model_version=version,
            sha256=sha256 or hashlib.sha256(data).hexdigest(),
            size_bytes=size or len(data),
            created_at=T0,
            promoted=True,
            download_path=path,
        )
        return self.info

    def downloads(self) -> int:
        return sum(1 for r in self.requests if r.url.path.endswith("/file"))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "x"}})
        if request.url.path == "/v1/models/latest":
            if self.fail_latest is not None:
                return httpx.Response(self.fail_latest, text="boom")
            if self.info is None:
                return httpx.Response(404, json={"error": {"code": "not_found", "message": "-"}})
            etag = f'"{self.info.sha256}"'
            if request.headers.get("if-none-match") == etag:
                return httpx.Response(304, headers={"ETag": etag})
            return httpx.Response(200, content=self.info.model_dump_json(), headers={"ETag": etag})
        if request.url.path in self.files:
            return httpx.Response(200, content=self.files[request.url.path])
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "-"}})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> FakeModelServer:
    return FakeModelServer()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def updater_for(
    current: OnnxModel, server: FakeModelServer, model_dir: Path, clock: Clock
) -> ModelUpdater:
    client = httpx.Client(transport=httpx.MockTransport(server))
    return ModelUpdater(
        current,
        server=SERVER,
        token=TOKEN,
        model_dir=model_dir,
        load=load,
        clock=clock,
        client=client,
        retry_failed_s=600.0,
    )


def all_frames(buffer: FrameBuffer) -> list[BufferedFrame]:
    got = buffer.claim(10_000)
    buffer.release(f.device_seq for f in got)
    return got


def outcomes(selector: Selector) -> int:
    c = selector.counts
    return c["frames.kept"] + sum(v for k, v in c.items() if k.startswith("dropped."))


def batches(frames: Sequence[VideoFrame], size: int) -> list[list[VideoFrame]]:
    return [list(frames[i : i + size]) for i in range(0, len(frames), size)]


def test_update_swaps_in_a_new_embedding_space_and_no_frame_is_lost(
    tmp_path: Path, server: FakeModelServer, clock: Clock
) -> None:
    frames = bikes_frames(96)
    old = OnnxModel(V1)
    with FrameBuffer(tmp_path / "b.db", max_bytes=BIG) as buffer:
        selector = Selector(old, buffer, SelectionPolicy(keep_ratio=0.5, window=50))
        updater = updater_for(old, server, tmp_path / "models", clock)
        telemetry = Telemetry(selector, buffer, None, updater=updater)
        parts = batches(frames, 16)
        for part in parts[:2]:
            selector.process(part, started=T0)
        # the prepare thread is ahead of the capture loop: two batches made for lin-1
        ahead = [selector.prepare(part) for part in parts[2:4]]
        assert updater.check_once().status == "unchanged"  # 404: nothing promoted yet
        server.offer(V2, "lin-2")
        outcome = updater.check_once()
        assert outcome.status == "updated" and outcome.model is not None
        assert outcome.model.model_version == "lin-2" and outcome.model.embedding_dim == 8
        kept_before = buffer.stats().frames
        fresh = updater.take()
        assert fresh is outcome.model and updater.take() is None
        selector.swap_model(fresh)
        assert selector.recent.model_version == "lin-2" and len(selector.recent) == 0
        stream_seen = selector.stream.seen
        for batch in ahead:  # made for the old 16x16 input: prepared again, not dropped
            assert isinstance(batch, PreparedBatch) and batch.inputs is not None
            assert batch.inputs.shape[2:] == (16, 16)
            selector.decide(batch, started=T0)
        for part in parts[4:]:
            selector.process(part, started=T0)
        assert selector.stream.seen > stream_seen  # the budget carried on, not restarted
        assert selector.counts["frames.seen"] == len(frames) == outcomes(selector)
        held = sorted(all_frames(buffer), key=lambda f: f.device_seq)
        versions = [f.frame.model_version for f in held]
        assert versions[:kept_before] == ["lin-1"] * kept_before
        assert len(versions) > kept_before and set(versions[kept_before:]) == {"lin-2"}
        assert {np.asarray(f.frame.embedding).shape for f in held[kept_before:]} == {(8,)}
        assert len(selector.recent) == len(versions) - kept_before  # only lin-2 embeddings
        counters = telemetry.counters()
        assert counters["model.updates"] == 1 and "model.update_errors" not in counters
        assert telemetry.heartbeat().model_version == "lin-2"
    assert (tmp_path / "models" / "lin-2.onnx").read_bytes() == V2
    record = json.loads((tmp_path / "models" / CURRENT_FILE).read_text())
    assert record["model_version"] == "lin-2" and record["sha256"] == hashlib.sha256(V2).hexdigest()
    assert record["given_sha256"] == old.sha256
    assert not list((tmp_path / "models").glob(".download-*"))
    # the next poll asks If-None-Match of the new model and gets 304
    assert updater.check_once().status == "unchanged"
    latest = [r for r in server.requests if r.url.path == "/v1/models/latest"]
    assert latest[-1].headers["if-none-match"] == f'"{fresh.sha256}"'
    assert server.downloads() == 1


def test_swap_seeds_novelty_from_buffered_frames_of_that_version(tmp_path: Path) -> None:
    frames = bikes_frames(48)
    one, two = OnnxModel(V1), OnnxModel(V2)
    with FrameBuffer(tmp_path / "b.db", max_bytes=BIG) as buffer:
        selector = Selector(two, buffer, SelectionPolicy(keep_ratio=1.0))
        selector.process(frames[:16], started=T0)
        kept_two = buffer.stats().frames
        assert kept_two > 0
        selector.swap_model(one)
        assert selector.recent.model_version == "lin-1" and len(selector.recent) == 0
        selector.swap_model(two)  # back: seeded from the buffered lin-2 frames
        assert len(selector.recent) == kept_two
        selector.process(frames[16:], started=T0)
        assert selector.counts["frames.seen"] == 48 == outcomes(selector)


def test_bad_sha256_keeps_the_old_model_and_is_not_retried_until_backoff(
    tmp_path: Path, server: FakeModelServer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    old = OnnxModel(V1)
    updater = updater_for(old, server, tmp_path / "models", clock)
    server.offer(V2, "lin-2", sha256="0" * 64)
    outcome = updater.check_once()
    assert outcome.status == "failed" and outcome.model is None
    assert outcome.reason is not None and "sha256 mismatch" in outcome.reason
    assert "0" * 64 in outcome.reason
    assert updater.take() is None and updater.current_sha256 == old.sha256
    assert updater.counts["model.update_errors"] == 1
    assert any("keeping the running model" in r.getMessage() for r in caplog.records)
    assert not list((tmp_path / "models").iterdir())  # nothing installed, no temp file left
    assert updater.check_once().status == "skipped" and server.downloads() == 1
    clock.now = 599.0
    assert updater.check_once().status == "skipped" and server.downloads() == 1
    clock.now = 601.0  # backoff over: one more try, which fails again and doubles the wait
    assert updater.check_once().status == "failed" and server.downloads() == 2
    clock.now = 601.0 + 1199.0
    assert updater.check_once().status == "skipped"
    assert updater.counts["model.update_errors"] == 2
    server.offer(V2, "lin-2")  # the server offers other (good) bytes: tried at once
    assert updater.check_once().status == "updated"


@pytest.mark.parametrize(
    ("data", "version", "expected"),
    [
        (b"this is not an onnx file", "junk-1", "does not load"),
        (linear_onnx(version="lin-9"), "lin-3", "model_version 'lin-9'"),
        (linear_onnx(version="lin-1", seed=5), "lin-1", "running model's name"),
    ],
    ids=["not-onnx", "version-mismatch", "same-version-other-bytes"],
)
def test_a_model_that_fails_to_load_leaves_the_old_one(
    tmp_path: Path,
    server: FakeModelServer,
    clock: Clock,
    data: bytes,
    version: str,
    expected: str,
) -> None:
    old = OnnxModel(V1)
    updater = updater_for(old, server, tmp_path / "models", clock)
    server.offer(data, version)
    outcome = updater.check_once()
    assert outcome.status == "failed" and outcome.reason is not None
    assert expected in outcome.reason and "\n" not in outcome.reason
    assert updater.counts["model.update_errors"] == 1 and updater.take() is None
    assert not list((tmp_path / "models").iterdir())


def test_contract_breaking_model_is_refused(
    tmp_path: Path, server: FakeModelServer, clock: Clock
) -> None:
    from curator.inference import ModelMetadata, linear_model

    meta = ModelMetadata(
        model_version="bad-1", class_names=("a", "b"), embedding_dim=4, input_size=(8, 8),
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3 * 64, 4)).astype(np.float32)
    good = linear_model(w, np.zeros(4, np.float32), np.ones((4, 2), np.float32),
                        np.zeros(2, np.float32), meta)  # fmt: skip
    import onnx

    proto = onnx.load_from_string(good)
    for prop in proto.metadata_props:
        if prop.key == "curator.embedding_dim":
            prop.value = "5"  # the graph says 4
    bad = proto.SerializeToString()
    old = OnnxModel(V1)
    updater = updater_for(old, server, tmp_path / "models", clock)
    server.offer(bad, "bad-1")
    outcome = updater.check_once()
    assert outcome.status == "failed" and outcome.reason is not None
    assert "does not load" in outcome.reason and "embedding" in outcome.reason
    assert updater.counts["model.update_errors"] == 1


def test_size_larger_than_announced_is_refused(
    tmp_path: Path, server: FakeModelServer, clock: Clock
) -> None:
    updater = updater_for(OnnxModel(V1), server, tmp_path / "models", clock)
    server.offer(V2, "lin-2", size=len(V2) - 1)
    outcome = updater.check_once()
    assert outcome.status == "failed" and "larger than" in (outcome.reason or "")


def test_304_404_and_unreachable_change_nothing(
    tmp_path: Path, server: FakeModelServer, clock: Clock
) -> None:
    old = OnnxModel(V1)
    updater = updater_for(old, server, tmp_path / "models", clock)
    assert updater.check_once().status == "unchanged"  # 404
    server.offer(V1, "lin-1")
    assert updater.check_once().status == "unchanged"  # 304
    assert server.requests[-1].headers["if-none-match"] == f'"{old.sha256}"'
    assert server.downloads() == 0
    server.fail_latest = 503
    outcome = updater.check_once()
    assert outcome.status == "unreachable" and "HTTP 503" in (outcome.reason or "")
    assert updater.counts["model.check_errors"] == 1
    assert "model.update_errors" not in updater.counts

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    offline = ModelUpdater(
        old, server=SERVER, token=TOKEN, model_dir=tmp_path / "models", load=load,
        client=httpx.Client(transport=httpx.MockTransport(refuse)),
    )  # fmt: skip
    outcome = offline.check_once()
    assert outcome.status == "unreachable" and "ConnectError" in (outcome.reason or "")
    assert offline.take() is None


def test_bad_model_info_is_a_check_error(tmp_path: Path, clock: Clock) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"model_version": "x", "sha256": "nope"})

    updater = ModelUpdater(
        OnnxModel(V1), server=SERVER, token=TOKEN, model_dir=tmp_path / "m", load=load,
        client=httpx.Client(transport=httpx.MockTransport(answer)),
    )  # fmt: skip
    outcome = updater.check_once()
    assert outcome.status == "unreachable" and "not a ModelInfo" in (outcome.reason or "")


def test_restart_picks_the_model_in_current_json(
    tmp_path: Path, server: FakeModelServer, clock: Clock
) -> None:
    models = tmp_path / "models"
    given = OnnxModel(V1)
    updater = updater_for(given, server, models, clock)
    server.offer(V2, "lin-2")
    assert updater.check_once().status == "updated"
    # a restart with the same --model starts lin-2
    started = installed_model(OnnxModel(V1), models, load)
    assert started.model_version == "lin-2" and started.sha256 == hashlib.sha256(V2).hexdigest()
    # the restarted updater keeps --model's sha as the base, so later updates still apply
    again = updater_for(started, server, models, clock)
    assert again.given_sha256 == started.sha256  # default: the model it was given
    assert updater.given_sha256 == given.sha256
    # an operator who points --model at another file gets that file
    other = OnnxModel(linear_onnx(version="lin-7", seed=7))
    assert installed_model(other, models, load) is other
    # a tampered installed file is not used
    (models / "lin-2.onnx").write_bytes(linear_onnx(version="lin-2", seed=3))
    assert installed_model(given, models, load) is given
    # nor is an unreadable record; no record at all: --model
    (models / CURRENT_FILE).write_text("{not json")
    assert installed_model(given, models, load) is given
    assert installed_model(given, tmp_path / "nowhere", load) is given


def test_a_second_update_keeps_one_previous_file(
    tmp_path: Path, server: FakeModelServer, clock: Clock
) -> None:
    models = tmp_path / "models"
    updater = updater_for(OnnxModel(V1), server, models, clock)
    for n in (2, 3, 4):
        server.offer(linear_onnx(version=f"lin-{n}", seed=n), f"lin-{n}")
        assert updater.check_once().status == "updated"
    assert sorted(p.name for p in models.glob("*.onnx")) == ["lin-3.onnx", "lin-4.onnx"]
    assert json.loads((models / CURRENT_FILE).read_text())["model_version"] == "lin-4"
    assert updater.take() is not None and updater.counts["model.updates"] == 1  # latest only


def test_run_swaps_between_batches_and_a_restart_keeps_the_update(
    tmp_path: Path, server: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_selector import run as run_module
    from edge_selector.settings import EdgeSettings, load_settings

    (tmp_path / "m.onnx").write_bytes(V1)

    def settings_for(frames: int) -> EdgeSettings:
        flags = {"source": str(bikes_path()), "model": str(tmp_path / "m.onnx"),
                 "buffer": str(tmp_path / "edge.db"), "max_frames": frames, "batch_size": 16,
                 "keep_ratio": 0.5, "threads": 1, "progress": "off"}  # fmt: skip
        return load_settings(flags, None, {})

    made: list[ModelUpdater] = []

    def fake_updater(settings: EdgeSettings, model: OnnxModel, given: str) -> ModelUpdater:
        client = httpx.Client(transport=httpx.MockTransport(server))
        load = run_module.model_loader(settings)
        folder = settings.models_folder
        made.append(
            ModelUpdater(
                model,
                server=SERVER,
                token=TOKEN,
                model_dir=folder,
                load=load,
                given_sha256=given,
                client=client,
            )
        )
        return made[-1]

    new_sha = hashlib.sha256(V2).hexdigest()

    def hold_first_batch(selector: Selector) -> None:  # until the poller installed lin-2
        deadline = time.monotonic() + 30
        while made[0].current_sha256 != new_sha and time.monotonic() < deadline:
            time.sleep(0.01)

    server.offer(V2, "lin-2")
    monkeypatch.setattr(run_module, "_updater", fake_updater)
    summary = run_module.run(settings_for(96), threading.Event(), on_batch=hold_first_batch)
    c = summary.counters
    dropped = sum(v for k, v in c.items() if k.startswith("dropped."))
    assert c["frames.seen"] == 96 == c["frames.kept"] + dropped
    assert c["model.updates"] == 1 and "model.update_errors" not in c
    assert (tmp_path / "edge.db.models" / "lin-2.onnx").read_bytes() == V2
    with FrameBuffer(tmp_path / "edge.db", max_bytes=BIG) as buffer:
        held = sorted(all_frames(buffer), key=lambda f: f.device_seq)
    versions = [f.frame.model_version for f in held]
    first_new = versions.index("lin-2")
    assert first_new > 0 and set(versions[first_new:]) == {"lin-2"}  # swapped once, in order
    monkeypatch.undo()  # a restart, offline this time, with the same --model
    run_module.run(settings_for(128), threading.Event())
    with FrameBuffer(tmp_path / "edge.db", max_bytes=BIG) as buffer:
        later = [f for f in all_frames(buffer) if f.device_seq > held[-1].device_seq]
    assert later and {f.frame.model_version for f in later} == {"lin-2"}


def _admin_token(data_dir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "server", "token", "create", "--role", "admin",
         "--data-dir", str(data_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=clean_env(), check=True,
    )  # fmt: skip
    return done.stdout.strip()


def _versions_in_catalog(data_dir: Path, device_id: str) -> list[str]:
    """``model_version`` of the device's frames in the server's catalog, by ``device_seq``."""
    with sqlite3.connect(f"file:{data_dir / 'catalog.sqlite'}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT model_version FROM frames WHERE device_id = ? ORDER BY device_seq",
            (device_id,),
        ).fetchall()
    return [str(v) for (v,) in rows]


def _wait_for(condition: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, (
            f"{what} not within {timeout} s:\n" + (log.read_text()[-3000:])
        )
        time.sleep(0.2)


@pytest.mark.integration
def test_selector_picks_up_a_model_promoted_on_the_real_server(tmp_path: Path) -> None:
    """A real server, a real selector process: after an admin registers and promotes lin-2,
    the selector's next uploads carry lin-2, and it keeps lin-2 on disk for a restart."""
    device, data = "cam-09", tmp_path / "data"
    token, admin = create_token(data, device), _admin_token(data)
    server = ServeProcess(data, tmp_path / "logs")
    (tmp_path / "m.onnx").write_bytes(V1)
    log = tmp_path / "selector.log"
    command = [
        sys.executable, "-m", "edge_selector", "run", "--source", str(bikes_path()), "--loop",
        "--max-frames", "6000", "--fps", "100", "--model", str(tmp_path / "m.onnx"),
        "--buffer", str(tmp_path / "edge.db"), "--server", server.base, "--device-id", device,
        "--keep-ratio", "0.3", "--duplicate-similarity", "1.5", "--upload-batch-frames", "16",
        "--model-poll-s", "0.5", "--drain-timeout-s", "30", "--progress", "off",
        "--log-format", "json",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("CURATOR_")}
    env["CURATOR_EDGE_TOKEN"] = token
    server.start()
    with log.open("wb") as out:
        selector = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=out, env=env)
    try:
        _wait_for(lambda: len(_versions_in_catalog(data, device)) >= 5, 60, "lin-1 uploads", log)
        answer = httpx.post(
            f"{server.base}/v1/models",
            params={"promote": "yes"},
            content=V2,
            headers={"Authorization": f"Bearer {admin}",
                     "Content-Type": "application/octet-stream"},
            timeout=30,
        )  # fmt: skip
        assert answer.status_code == 201, answer.text
        assert ModelInfo.model_validate_json(answer.content).model_version == "lin-2"
        _wait_for(lambda: "lin-2" in _versions_in_catalog(data, device), 60, "lin-2 uploads", log)
        selector.send_signal(signal.SIGTERM)
        assert selector.wait(timeout=60) == 0, log.read_text()[-3000:]
        versions = _versions_in_catalog(data, device)
        first = versions.index("lin-2")
        assert first > 0 and set(versions[first:]) == {"lin-2"}, versions
        models = tmp_path / "edge.db.models"
        assert (models / "lin-2.onnx").read_bytes() == V2
        assert json.loads((models / CURRENT_FILE).read_text())["model_version"] == "lin-2"
        assert "model update refused" not in log.read_text()
    finally:
        if selector.poll() is None:
            selector.kill()
            selector.wait()
        server.kill()
