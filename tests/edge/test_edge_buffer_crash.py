"""A process adding frames is SIGKILLed at random moments; the file stays whole and exact."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from datetime import UTC, datetime
import numpy as np
from edge_selector.buffer import FrameBuffer
from edge_selector.buffer_frames import KeptFrame

rng = np.random.default_rng(int(sys.argv[2]))
buf = FrameBuffer(sys.argv[1], max_bytes=256 * 2**20)
print("open", flush=True)
for i in range(100_000):
    frame = KeptFrame(
        image=b"\\xff\\xd8\\xff" + rng.bytes(int(rng.integers(100, 20_000))),
        width=8, height=8, embedding=rng.standard_normal(16).astype(np.float32),
        model_version="m-1", scores={"entropy": 0.5}, value=float(rng.random()),
        captured_at=datetime.now(UTC), keep_reason="value_above_threshold",
    )
    out = buf.add(frame)
    print("add", out.device_seq, flush=True)
    if i % 10 == 9:
        batch = [f.device_seq for f in buf.claim(3)]
        print("claim", *batch, flush=True)
        buf.ack(batch)
        print("acked", *batch, flush=True)
"""


@pytest.mark.integration
def test_sigkill_at_random_moments_loses_no_committed_frame(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    rng = np.random.default_rng(11)
    added: list[int] = []
    in_flight: set[int] = set()  # claimed for an ack that may or may not have committed
    acked: set[int] = set()
    for run in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(run)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "open"
        lines = []
        while not lines or not lines[-1].startswith("add "):  # a busy machine starts slowly
            lines.append(child.stdout.readline().strip())
            assert lines[-1], "the child ended before adding a frame"
        time.sleep(float(rng.uniform(0.1, 0.6)))
        child.send_signal(signal.SIGKILL)
        lines += child.stdout.read().splitlines()
        child.stdout.close()
        child.wait()
        assert child.returncode == -signal.SIGKILL
        run_added = []
        for line in lines:
            kind, *nums = line.split()
            if kind == "add" and nums != ["None"]:
                run_added.append(int(nums[0]))
            elif kind == "claim":
                in_flight.update(map(int, nums))
            elif kind == "acked":
                acked.update(map(int, nums))
        assert run_added, "the child was killed before it committed anything"
        assert not added or min(run_added) > max(added)  # never reused after a crash
        added += run_added
    assert len(added) == len(set(added))
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        buffered = {s for (s,) in c.execute("SELECT device_seq FROM frames")}
        (last,) = c.execute("SELECT value FROM counters WHERE name = 'last_device_seq'").fetchone()
    assert not buffered & acked
    missing = set(added) - buffered - acked
    assert missing <= in_flight - acked  # only frames whose ack was under way may be gone
    assert last >= max(added)
