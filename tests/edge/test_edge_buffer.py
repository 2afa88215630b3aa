"""FrameBuffer on real SQLite files: device_seq, eviction order, claim/ack/release/drop, reopen."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from testkit.edge import T0
from testkit.edge import kept_frame as kept

from curator.errors import InvalidInputError, WireFormatError
from curator.wire import BatchUpload, decode_batch, encode_batch, frame_problems
from edge_selector.buffer import FrameBuffer, FrameTooLargeError
from edge_selector.buffer_schema import BUFFER_MIGRATIONS

CAP = 4 * 2**20


def seqs_in(path: Path) -> list[int]:
    with sqlite3.connect(path) as c:
        return [s for (s,) in c.execute("SELECT device_seq FROM frames ORDER BY device_seq")]


def test_device_seq_starts_at_one_and_never_repeats_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with FrameBuffer(path, max_bytes=CAP) as buf:
        got = [buf.add(kept(0.5, seed=i)).device_seq for i in range(3)]
        assert got == [1, 2, 3]
        buf.ack([2, 3])  # the newest rows are gone: the counter row still remembers 3
    with FrameBuffer(path, max_bytes=CAP) as buf:
        assert buf.add(kept(0.5, seed=9)).device_seq == 4
        assert buf.ack([1, 4]) == 2
    with FrameBuffer(path, max_bytes=CAP) as buf:  # empty buffer, still no reuse
        assert buf.stats().frames == 0
        assert buf.add(kept(0.5, seed=10)).device_seq == 5


def test_lowest_value_unclaimed_frames_are_evicted_first(tmp_path: Path) -> None:
    with FrameBuffer(tmp_path / "b.db", max_bytes=2**20, headroom=512 * 1024) as buf:
        values = [0.5, 0.1, 0.9, 0.1, 0.3, 0.7]
        outcomes = [buf.add(kept(v, size=70_000, seed=i)) for i, v in enumerate(values)]
        assert all(o.stored and not o.evicted for o in outcomes)
        assert buf.limits.budget // (buf.stats().stored_bytes // 6) == 6  # the 7th must evict
        claimed = buf.claim(1)  # seq 3 (0.9): claimed frames are never evicted
        assert [f.device_seq for f in claimed] == [3]
        out = buf.add(kept(0.8, size=70_000, seed=20))
        # ties on value: the newer (seq 4) goes before the older (seq 2)
        lowest_first = [4, 2, 5, 1, 6]
        assert out.stored and out.evicted == (4,)
        out2 = buf.add(kept(0.8, size=150_000, seed=23))
        assert out.evicted + out2.evicted == tuple(lowest_first[: 1 + len(out2.evicted)])
        # a frame worth less than every evictable frame is dropped, nothing is evicted
        before = set(seqs_in(buf.path))
        low = buf.add(kept(0.05, size=70_000, seed=21))
        assert not low.stored and low.dropped == "low_value" and low.evicted == ()
        # equal value does not evict either: ties keep what is buffered
        floor = min(buf.claim(100, None), key=lambda f: f.frame.value)
        buf.release(range(1, 100))
        tie = buf.add(kept(floor.frame.value, size=150_000, seed=22))
        assert tie.dropped == "low_value"
        assert set(seqs_in(buf.path)) == before
        stats = buf.stats()
        assert stats.evicted == 1 + len(out2.evicted) and stats.dropped == {"low_value": 2}


def test_claimed_frames_survive_pressure_and_high_value_new_frames_drop_when_all_claimed(
    tmp_path: Path,
) -> None:
    with FrameBuffer(tmp_path / "b.db", max_bytes=2**20, headroom=512 * 1024) as buf:
        n = 0
        while buf.stats().stored_bytes + 40_000 < buf.limits.budget:
            buf.add(kept(0.1, size=30_000, seed=n))
            n += 1
        everything = buf.claim(1000)
        assert len(everything) == n
        out = buf.add(kept(0.99, size=30_000, seed=99))
        assert out.dropped == "low_value" and seqs_in(buf.path) == list(range(1, n + 1))


def test_frame_too_big_for_the_cap_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with FrameBuffer(tmp_path / "b.db", max_bytes=2**20) as buf:
        with pytest.raises(FrameTooLargeError, match=r"max_bytes=1048576"):
            buf.add(kept(0.5, size=buf.limits.max_frame_cost))
        assert buf.stats().frames == 0
    with pytest.raises(InvalidInputError, match="headroom"):
        FrameBuffer(tmp_path / "c.db", max_bytes=100_000, headroom=50_000)
    with pytest.raises(InvalidInputError, match="max_bytes"):
        FrameBuffer(tmp_path / "d.db", max_bytes=0)


def test_bad_frames_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    with FrameBuffer(tmp_path / "b.db", max_bytes=CAP) as buf:
        with pytest.raises(InvalidInputError, match="value must be finite"):
            buf.add(kept(float("nan")))
        with pytest.raises(InvalidInputError, match="embedding holds 1 NaN"):
            buf.add(kept(0.5, embedding=np.array([1.0, np.nan], dtype=np.float32)))
        with pytest.raises(WireFormatError, match="captured_at"):
            buf.add(kept(0.5, captured_at=datetime(2024, 1, 1)))
        with pytest.raises(WireFormatError, match="scores"):
            buf.add(kept(0.5, scores={"bad name!": 1.0}))
        with pytest.raises(InvalidInputError, match="KeptFrame"):
            buf.add({"image": b"x"})  # type: ignore[arg-type]
        assert buf.stats().last_device_seq == 0


def test_claim_orders_by_value_then_seq_and_skips_claimed(tmp_path: Path) -> None:
    with FrameBuffer(tmp_path / "b.db", max_bytes=CAP) as buf:
        for i, v in enumerate([0.2, 0.9, 0.5, 0.9, 0.1]):
            buf.add(kept(v, seed=i))
        assert [f.device_seq for f in buf.claim(2)] == [2, 4]
        assert [f.device_seq for f in buf.claim(10)] == [3, 1, 5]
        assert buf.claim(10) == []
        assert buf.release([4, 5, 77]) == 2
        assert [f.device_seq for f in buf.claim(10)] == [4, 5]
        with pytest.raises(InvalidInputError, match="limit"):
            buf.claim(0)
        with pytest.raises(InvalidInputError, match="integers"):
            buf.ack(["1"])  # type: ignore[list-item]


def test_claim_max_bytes_bounds_the_batch_but_always_gives_one(tmp_path: Path) -> None:
    with FrameBuffer(tmp_path / "b.db", max_bytes=CAP) as buf:
        for i in range(4):
            buf.add(kept(1.0 - i / 10, size=20_000, seed=i))
        one = buf.claim(10, max_bytes=10)
        assert [f.device_seq for f in one] == [1]
        two = buf.claim(10, max_bytes=2 * one[0].cost_bytes)
        assert [f.device_seq for f in two] == [2, 3]


def test_ack_deletes_and_counts_uploaded_idempotently(tmp_path: Path) -> None:
    with FrameBuffer(tmp_path / "b.db", max_bytes=CAP) as buf:
        for i in range(3):
            buf.add(kept(0.5, seed=i))
        batch = buf.claim(3)
        assert buf.ack([batch[0].device_seq, batch[1].device_seq]) == 2
        assert buf.ack([batch[0].device_seq]) == 0
        assert buf.drop([batch[2].device_seq], "image_too_large: 20000000 bytes") == 1
        assert buf.drop([batch[2].device_seq], "image_too_large") == 0
        with pytest.raises(InvalidInputError, match="reason"):
            buf.drop([1], ": no code")
        s = buf.stats()
        assert (s.frames, s.uploaded, s.dropped, s.claimed) == (0, 2, {"image_too_large": 1}, 0)


def test_reopen_keeps_frames_and_counters_and_releases_claims(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with FrameBuffer(path, max_bytes=CAP) as buf:
        for i in range(4):
            buf.add(kept(0.1 * i, seed=i))
        claimed = buf.claim(2)
        buf.ack([claimed[0].device_seq])
        buf.drop([claimed[1].device_seq], "embedding_zero_norm")
        buf.add(kept(0.0, size=buf.limits.max_frame_cost // 2, seed=5))
        buf.claim(5)
        before = buf.stats()
    with FrameBuffer(path, max_bytes=CAP) as buf:
        after = buf.stats()
        assert after.claimed == 0 and len(buf.claim(10)) == before.frames
        assert (after.frames, after.uploaded, after.dropped, after.last_device_seq) == (
            before.frames,
            before.uploaded,
            before.dropped,
            before.last_device_seq,
        )


def test_reopen_with_a_smaller_cap_evicts_down_to_it(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with FrameBuffer(path, max_bytes=CAP) as buf:
        for i in range(40):
            buf.add(kept(i / 40, size=30_000, seed=i))
    with FrameBuffer(path, max_bytes=2**20) as buf:
        s = buf.stats()
        assert s.stored_bytes <= s.budget_bytes and s.evicted == 40 - s.frames
        assert min(seqs_in(path)) == 40 - s.frames + 1  # the lowest values went


def test_buffered_frame_becomes_the_wire_record(tmp_path: Path) -> None:
    probs = np.array([0.7, 0.2, 0.1], dtype=np.float32)
    frame = kept(
        0.75,
        quality={"blur": 12.5},
        predicted_class=0,
        class_probabilities=probs,
        keep_threshold=0.4,
    )
    with FrameBuffer(tmp_path / "b.db", max_bytes=CAP, clock=lambda: T0) as buf:
        buf.add(frame)
        (got,) = buf.claim(1)
    record = got.to_record("cam-7")
    assert got.buffered_at == T0 and got.frame_id == hashlib.sha256(frame.image).hexdigest()
    assert record.frame_id == got.frame_id and record.device_seq == 1
    assert record.image == frame.image and record.captured_at == frame.captured_at
    assert np.array_equal(record.embedding_array(), np.asarray(frame.embedding))
    assert record.class_probabilities == tuple(float(p) for p in probs)
    assert (record.keep_value, record.keep_threshold, record.quality) == (0.75, 0.4, {"blur": 12.5})
    assert frame_problems(record) is None
    batch = BatchUpload(batch_id="b-1", device_id="cam-7", frames=(record,))
    assert decode_batch(encode_batch(batch)) == batch


def test_schema_is_recorded_as_named_migrations_and_settings_are_durable(tmp_path: Path) -> None:
    with FrameBuffer(tmp_path / "b.db", max_bytes=CAP) as buf:
        status = buf.status()
    assert status["migrations"] == [name for name, _ in BUFFER_MIGRATIONS]
    assert (status["journal_mode"], status["synchronous"]) == ("wal", "FULL")
    assert status["frames"] == 0 and status["files"]["db"] > 0
    with sqlite3.connect(tmp_path / "b.db") as c:
        assert c.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental


def test_a_closed_buffer_refuses_work(tmp_path: Path) -> None:
    buf = FrameBuffer(tmp_path / "b.db", max_bytes=CAP)
    buf.close()
    buf.close()
    with pytest.raises(InvalidInputError, match="closed"):
        buf.add(kept(0.5))
