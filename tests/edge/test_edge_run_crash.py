"""The real ``edge-selector run`` on a real video, SIGKILLed at random moments 20 times.

Each run logs ``frame kept`` (device_seq, frame_id) at DEBUG after the buffer's commit, so a
logged frame is one the selector promised to keep. After every kill and restart, and at the end:
``PRAGMA integrity_check`` is ok, every logged frame is still buffered with the same id (the run
is offline and the cap is large, so nothing may leave), ``device_seq`` runs 1..N without a gap
or repeat, and the selector resumes instead of failing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testkit.edge import kept_in_log
from testkit.models import write_linear_onnx
from testkit.videos import bikes_path

ROOT = Path(__file__).resolve().parents[2]
VIDEO = bikes_path()
KILLS = 20

pytestmark = pytest.mark.integration


def _buffered(path: Path) -> dict[int, str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT device_seq, frame_id FROM frames ORDER BY device_seq")
        return dict(rows.fetchall())


def test_sigkill_at_random_moments_loses_no_committed_frame(tmp_path: Path) -> None:
    model = write_linear_onnx(tmp_path / "m.onnx", size=32)
    buffer = tmp_path / "edge.db"
    command = [
        sys.executable, "-m", "edge_selector", "run", "--source", str(VIDEO), "--loop",
        "--model", str(model), "--buffer", str(buffer), "--keep-ratio", "0.5",
        "--duplicate-similarity", "1.5",  # keep re-seen frames too: commits all the time
        "--batch-size", "8", "--log-level", "DEBUG", "--log-format", "json", "--progress", "off",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("CURATOR_EDGE_")}
    rng = random.Random(20)
    promised: dict[int, str] = {}
    for cycle in range(KILLS):
        log = tmp_path / f"run-{cycle}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=out, env=env)
        try:
            deadline = time.monotonic() + 60
            while not kept_in_log(log) and time.monotonic() < deadline:  # wait until it is keeping
                assert proc.poll() is None, log.read_text()[-2000:]
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        kept = kept_in_log(log)
        assert kept, f"cycle {cycle} kept nothing:\n{log.read_text()[-2000:]}"
        for seq, frame_id in kept.items():
            assert promised.setdefault(seq, frame_id) == frame_id, f"device_seq {seq} reused"
        buffered = _buffered(buffer)
        missing = {s: f for s, f in promised.items() if buffered.get(s) != f}
        assert not missing, f"cycle {cycle}: committed frames lost: {sorted(missing)[:10]}"
        assert list(buffered) == list(range(1, len(buffered) + 1))  # no gap, no repeat

    status = subprocess.run(
        [sys.executable, "-m", "edge_selector", "status", "--buffer", str(buffer), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env, check=True,
    )  # fmt: skip
    report = json.loads(status.stdout)
    assert report["frames"] == len(_buffered(buffer)) >= len(promised)
    assert report["last_device_seq"] == max(_buffered(buffer))
