"""The real selector against the real server: offline first, then the link comes and goes.

``edge-selector run`` captures a looped ``bikes.mp4`` while nothing listens on the server's port;
then ``curator-server serve`` starts and the first upload must begin within 60 s; then the server
is SIGKILLed and restarted 10 times while the selector keeps capturing (or, once its source
ends, draining: a selector that has uploaded everything may exit 0 mid-way, but at least half
the kills must land while it runs). At the end
every frame the selector logged as kept is in the server's catalog exactly once, the buffer is
empty, and the server stored the device's heartbeats.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from testkit.edge import kept_in_log
from testkit.models import write_linear_onnx
from testkit.prometheus import metric
from testkit.server import ROOT, ServeProcess, create_token
from testkit.videos import bikes_path

pytestmark = pytest.mark.integration

DEVICE = "cam-07"
TOGGLES = 10


def _answered(server: ServeProcess) -> float:
    try:
        text = httpx.get(f"{server.base}/metrics", timeout=5).text
    except httpx.TransportError:
        return 0.0
    statuses = ("accepted", "duplicate")
    return sum(metric(text, "curator_server_frames_total", status=s) for s in statuses)


def _wait(condition: object, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - start < timeout, f"{what} not within {timeout} s"
        time.sleep(0.1)
    return time.monotonic() - start


def test_offline_capture_then_link_toggling_ends_with_every_frame_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = create_token(data, DEVICE)
    server = ServeProcess(data, tmp_path / "logs")
    model = write_linear_onnx(tmp_path / "m.onnx", size=32)
    log = tmp_path / "selector.log"
    command = [
        sys.executable, "-m", "edge_selector", "run", "--source", str(bikes_path()), "--loop",
        "--max-frames", "6000", "--fps", "100",  # 60 s of capture, as a live camera would give
        "--model", str(model), "--buffer", str(tmp_path / "edge.db"),
        "--server", server.base, "--device-id", DEVICE, "--keep-ratio", "0.3",
        "--duplicate-similarity", "1.5", "--upload-batch-frames", "16",
        "--heartbeat-interval-s", "1", "--drain-timeout-s", "120",
        "--log-level", "DEBUG", "--log-format", "json", "--progress", "off",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("CURATOR_")}
    env["CURATOR_EDGE_TOKEN"] = token  # the token through the environment, as documented
    rng = random.Random(4)
    with log.open("wb") as out:
        selector = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=out, env=env)
    try:
        _wait(lambda: len(kept_in_log(log)) >= 30, 60, "30 frames kept offline")
        server.start()
        first = _wait(lambda: _answered(server) > 0, 60, "the first upload")
        kills_while_running = 0
        for _ in range(TOGGLES):
            time.sleep(rng.uniform(0.5, 2.0))
            if selector.poll() is not None:
                break  # everything was uploaded and the selector finished: nothing left to cut
            server.kill()
            kills_while_running += 1
            time.sleep(rng.uniform(0.5, 2.0))
            assert selector.poll() in (None, 0), log.read_text()[-3000:]
            server.start()
        assert kills_while_running >= TOGGLES // 2, f"only {kills_while_running} kills landed"
        rc = selector.wait(timeout=240)
        assert rc == 0, log.read_text()[-3000:]
        kept = kept_in_log(log)
        with sqlite3.connect(f"file:{data / 'catalog.sqlite'}?mode=ro", uri=True) as conn:
            uploads = conn.execute(
                "SELECT device_seq, frame_id, count(*) FROM uploads WHERE device_id = ? "
                "GROUP BY device_seq",
                (DEVICE,),
            ).fetchall()
            beats = conn.execute(
                "SELECT count(*) FROM device_heartbeats WHERE device_id = ?", (DEVICE,)
            ).fetchone()[0]
        stored = {seq: frame_id for seq, frame_id, _ in uploads}
        assert all(n == 1 for _, _, n in uploads)
        missing, extra = sorted(set(kept) - set(stored)), sorted(set(stored) - set(kept))
        assert stored == kept, f"kept {len(kept)}: missing {missing[:10]}, extra {extra[:10]}"
        assert beats >= 1
        with sqlite3.connect(f"file:{tmp_path / 'edge.db'}?mode=ro", uri=True) as conn:
            assert conn.execute("SELECT count(*) FROM frames").fetchone()[0] == 0
        summary = log.read_text()
        assert "upload: " in summary and f"{len(kept)} acked" in summary
        print(
            f"first upload {first:.1f} s after the server came up; {len(kept)} frames kept; "
            f"{kills_while_running} kills while the selector ran"
        )
    finally:
        if selector.poll() is None:
            selector.kill()
            selector.wait()
        server.kill()
