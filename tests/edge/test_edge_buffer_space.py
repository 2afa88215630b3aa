"""The byte cap: real file sizes under random workloads, and a real full filesystem (tmpfs)."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from testkit.edge import kept_frame

from edge_selector.buffer import FrameBuffer
from edge_selector.buffer_frames import KeptFrame

CAP = 2**20


def kept(value: float, size: int, seed: int) -> KeptFrame:
    return kept_frame(
        value,
        size,
        seed,
        dim=32,
        width=64,
        height=48,
        scores={"entropy": 0.5},
        captured_at=datetime(2024, 5, 1, tzinfo=UTC),
    )


class BufferUnderPressure(RuleBasedStateMachine):
    """Random add/claim/ack/release/drop/reopen against a model of what must be buffered."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="edge-buffer-"))
        self.buf = FrameBuffer(self.dir / "b.db", max_bytes=CAP)
        self.model: dict[int, float] = {}  # device_seq -> value
        self.claimed: set[int] = set()
        self.seed = 0
        self.last_seq = 0

    @rule(value=st.floats(0, 1), size=st.integers(10, 140_000))
    def add(self, value: float, size: int) -> None:
        self.seed += 1
        frame = kept(value, size, self.seed)
        lower_unclaimed = sorted(
            ((v, -s) for s, v in self.model.items() if v < value and s not in self.claimed)
        )
        out = self.buf.add(frame)
        for seq in out.evicted:  # evicted: lower value, unclaimed, in (value, -seq) order
            assert (self.model.pop(seq), -seq) == lower_unclaimed.pop(0)
        if out.stored:
            assert out.device_seq is not None and out.device_seq > self.last_seq
            self.last_seq = out.device_seq
            self.model[out.device_seq] = value
        else:
            assert out.dropped == "low_value" and out.evicted == ()

    @rule(limit=st.integers(1, 5))
    def claim(self, limit: int) -> None:
        got = [f.device_seq for f in self.buf.claim(limit)]
        free = sorted((-v, s) for s, v in self.model.items() if s not in self.claimed)
        assert got == [s for _, s in free[:limit]]
        self.claimed.update(got)

    @precondition(lambda self: self.claimed)
    @rule(data=st.data(), action=st.sampled_from(["ack", "release", "drop"]))
    def answer(self, data: st.DataObject, action: str) -> None:
        seqs = data.draw(st.sets(st.sampled_from(sorted(self.claimed)), min_size=1))
        if action == "release":
            assert self.buf.release(seqs) == len(seqs)
        else:
            done = self.buf.ack(seqs) if action == "ack" else self.buf.drop(seqs, "bad: x")
            assert done == len(seqs)
            for s in seqs:
                del self.model[s]
        self.claimed -= seqs

    @rule()
    def reopen(self) -> None:
        self.buf.close()
        self.buf = FrameBuffer(self.dir / "b.db", max_bytes=CAP)
        self.claimed.clear()

    @invariant()
    def cap_holds_on_disk(self) -> None:
        stats = self.buf.stats()
        files = sum(p.stat().st_size for p in self.dir.iterdir())
        assert files <= CAP and stats.file_bytes <= CAP
        assert stats.stored_bytes <= stats.budget_bytes
        assert stats.frames == len(self.model) and stats.claimed == len(self.claimed)

    def teardown(self) -> None:
        self.buf.close()
        with sqlite3.connect(self.dir / "b.db") as c:
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert sorted(s for (s,) in c.execute("SELECT device_seq FROM frames")) == sorted(
                self.model
            )
        shutil.rmtree(self.dir)


TestBufferUnderPressure = BufferUnderPressure.TestCase
TestBufferUnderPressure.settings = settings(max_examples=15, stateful_step_count=40, deadline=None)


def test_long_random_run_never_exceeds_the_cap_on_disk(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    peak = 0
    with FrameBuffer(tmp_path / "b.db", max_bytes=CAP) as buf:
        for i in range(400):
            buf.add(kept(float(rng.random()), int(rng.integers(10, 140_000)), i))
            if i % 7 == 0:
                batch = buf.claim(int(rng.integers(1, 6)))
                half = len(batch) // 2
                buf.ack([f.device_seq for f in batch[:half]])
                buf.release([f.device_seq for f in batch[half:]])
            peak = max(peak, sum(p.stat().st_size for p in tmp_path.iterdir()))
        stats = buf.stats()
    assert peak <= CAP and stats.evicted > 0 and stats.dropped.get("low_value", 0) > 0


def test_on_a_tmpfs_the_size_of_the_cap_sqlite_never_runs_out(tmp_path: Path, tmpfs: Any) -> None:
    with tmpfs(tmp_path / "mnt", CAP) as mnt, FrameBuffer(mnt / "b.db", max_bytes=CAP) as buf:
        rng = np.random.default_rng(3)
        for i in range(250):
            buf.add(kept(float(rng.random()), int(rng.integers(10, 140_000)), i))
            if i % 5 == 0:
                buf.ack([f.device_seq for f in buf.claim(2)])
        stats = buf.stats()
        assert stats.disk_full == 0 and stats.evicted > 0 and stats.file_bytes <= CAP


def test_disk_full_never_reaches_the_caller_and_the_buffer_recovers(
    tmp_path: Path, tmpfs: Any
) -> None:
    with tmpfs(tmp_path / "mnt", 3 * CAP) as mnt:
        buf = FrameBuffer(mnt / "b.db", max_bytes=64 * CAP)  # the filesystem fills first
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * (2 * CAP))
        outcomes = [buf.add(kept(1.0 - i / 100, 60_000, i)) for i in range(40)]
        dropped = [o for o in outcomes if o.dropped == "disk_full"]
        assert dropped and all(not o.evicted for o in dropped)  # nothing worth less to evict
        kept_before = buf.stats().frames
        assert kept_before > 0 and buf.stats().disk_full >= len(dropped)
        # a more valuable frame evicts the cheapest ones to make room on the full disk
        better = buf.add(kept(2.0, 60_000, 500))
        assert better.stored and better.evicted
        filler.unlink()  # space returns
        after = [buf.add(kept(0.01, 60_000, 1000 + i)) for i in range(10)]
        assert all(o.stored for o in after)
        stats = buf.stats()
        assert stats.dropped["disk_full"] == len(dropped)
        every = buf.claim(1000)
        assert len(every) == stats.frames
        assert all(f.to_record("cam-1").image == f.frame.image for f in every)
        buf.close()
        with sqlite3.connect(mnt / "b.db") as c:
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            (count,) = c.execute("SELECT count FROM drops WHERE reason = 'disk_full'").fetchone()
            assert count == len(dropped)  # the counts reached the file
