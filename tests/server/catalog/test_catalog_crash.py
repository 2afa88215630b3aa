"""A process killed with SIGKILL while recording leaves a consistent catalog: all or nothing."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.catalog import Catalog

ROOT = Path(__file__).resolve().parents[3]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX"),
]

_WRITER = """
import hashlib, sys, time
from datetime import UTC, datetime
import numpy as np
from server.blobs import blob_key
from server.catalog import Catalog, FrameRow

path, mode = sys.argv[1], sys.argv[2]
catalog = Catalog(path)
catalog.db.connection.execute("PRAGMA cache_size = 8")  # spill dirty pages to the WAL early
vector = np.arange(16, dtype="<f4").tobytes()

def rows(batch, first_seq, n, pause_at=None):
    for i in range(n):
        if i == pause_at:
            print("mid", flush=True)
            time.sleep(120)
        image = f"{batch}/{i}".encode()
        yield FrameRow(
            frame_id=hashlib.sha256(image).hexdigest(), device_id="cam-1",
            device_seq=first_seq + i, status="accepted", received_at=datetime.now(UTC),
            batch_id=batch, model_version="m1", embedding=vector,
            blob_key=blob_key(image, "jpeg"), scores={"value": i / n}, keep_reason="test",
        )

if mode == "pause":
    catalog.record(rows("committed", 1, 2000))
    print("committed", flush=True)
    with catalog.atomic() as conn:  # one transaction, killed half-way through its rows
        catalog.record(rows("killed", 2001, 6000), conn=conn)
        catalog.record(rows("killed", 8001, 2000, pause_at=0), conn=conn)
else:
    seq = 1
    for b in range(10_000):
        catalog.record(rows(f"b{b}", seq, 300))
        seq += 300
        print(f"b{b}", flush=True)
"""


def _writer(path: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines(proc: subprocess.Popen[str]) -> Iterator[str]:
    assert proc.stdout is not None
    for line in proc.stdout:
        yield line.strip()
    raise AssertionError(f"writer exited: {proc.wait()} {proc.stderr and proc.stderr.read()}")


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)  # reaps it and closes the pipes
    assert proc.returncode == -signal.SIGKILL


def _check_consistent(path: Path) -> dict[str, int]:
    """integrity and foreign keys hold; returns rows per batch_id."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        per_table = [
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("frames", "uploads", "embeddings")
        ]
        assert len(set(per_table)) == 1, per_table  # each frame with its upload and vector
        return dict(conn.execute("SELECT batch_id, count(*) FROM frames GROUP BY batch_id"))
    finally:
        conn.close()


def test_a_kill_in_the_middle_of_a_big_record_leaves_none_of_it(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    proc = _writer(path, "pause")
    lines = _lines(proc)
    try:
        assert next(lines) == "committed"
        wal = Path(f"{path}-wal")
        committed_wal = wal.stat().st_size
        assert next(lines) == "mid"
        # the uncommitted transaction has really reached the disk (the WAL grew)
        assert wal.stat().st_size > committed_wal
    finally:
        _kill(proc)
    assert _check_consistent(path) == {"committed": 2000}
    with Catalog(path) as catalog:  # recovers and goes on
        assert catalog.max_seq() == 2000
        assert len(list(catalog.accepted_since("m1"))) == 2000
        assert catalog.get_many([]) == {}


def test_a_kill_at_any_moment_keeps_every_committed_batch_whole(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    proc = _writer(path, "loop")
    lines = _lines(proc)
    try:
        committed = [next(lines) for _ in range(random.Random(7).randint(2, 4))]
    finally:
        _kill(proc)
    counts = _check_consistent(path)
    assert set(committed) <= set(counts)
    assert set(counts.values()) == {300}  # every batch is whole, the interrupted one absent
