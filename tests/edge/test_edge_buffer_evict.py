"""Making room: eviction plans against a brute-force oracle, and SQLITE_FULL on a real tmpfs."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from testkit.edge import kept_frame

import edge_selector.buffer as buffer_module
from edge_selector.buffer import FrameBuffer
from edge_selector.buffer_evict import eviction_plan, fit_budget
from edge_selector.buffer_frames import KeptFrame, check_frame, cost_bytes, meta_json
from edge_selector.buffer_store import BufferFile

CAP = 2**20
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def kept(value: float, size: int, seed: int) -> KeptFrame:
    return kept_frame(
        value,
        size,
        seed,
        dim=8,
        width=64,
        height=48,
        scores={"entropy": 0.5},
        captured_at=T0,
    )


def open_file(path: Path, max_bytes: int = 4 * CAP) -> BufferFile:
    return BufferFile(path, max_bytes=max_bytes, headroom=None, clock=lambda: T0, busy_timeout_s=1)


def insert(file: BufferFile, value: float, size: int, seed: int) -> tuple[int, int]:
    record = check_frame(kept(value, size, seed))
    cost = cost_bytes(record, meta_json(record), file.limits.page_size)
    return file.insert(record, value, cost), cost


@settings(max_examples=25, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from([0.1, 0.2, 0.5, 0.9]), st.integers(10, 12_000)), max_size=12
    ),
    claimed_mask=st.lists(st.booleans(), min_size=12, max_size=12),
    value=st.sampled_from([0.0, 0.2, 0.6, 1.0]),
    need=st.integers(-1, 60_000),
)
def test_eviction_plan_matches_a_brute_force_oracle(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[float, int]],
    claimed_mask: list[bool],
    value: float,
    need: int,
) -> None:
    file = open_file(tmp_path_factory.mktemp("evict") / "b.db")
    try:
        stored = {}  # device_seq -> (value, cost)
        for i, (v, size) in enumerate(rows):
            seq, cost = insert(file, v, size, i)
            stored[seq] = (v, cost)
        claimed = {s for s, flag in zip(stored, claimed_mask, strict=False) if flag}
        got = eviction_plan(file, claimed, value, need)
    finally:
        file.close()
    # oracle: unclaimed, worth strictly less, lowest value first and newest first among ties
    candidates = sorted(
        (s for s, (v, _) in stored.items() if v < value and s not in claimed),
        key=lambda s: (stored[s][0], -s),
    )
    if need <= 0:
        assert got == []
        return
    total, expected = 0, []
    for s in candidates:
        expected.append(s)
        total += stored[s][1]
        if total >= need:
            break
    assert got == (expected if total >= need else None)


def test_fit_budget_evicts_the_lowest_values_down_to_the_budget(tmp_path: Path) -> None:
    file = open_file(tmp_path / "b.db")
    values = [0.3, 0.1, 0.9, 0.1, 0.7, 0.5]
    costs = dict(insert(file, v, 100_000, i) for i, v in enumerate(values))
    file.close()
    small = open_file(tmp_path / "b.db", max_bytes=CAP)  # budget: 512 KiB, fits 4 of 6
    try:
        fit_budget(small)
        left = sorted(s for (s,) in small.conn.execute("SELECT device_seq FROM frames"))
        assert left == [1, 3, 5, 6]  # the two 0.1 frames went, newest first
        assert small.stored == sum(costs[s] for s in left) <= small.limits.budget
        assert small.counters()[0]["evicted"] == 2
    finally:
        small.close()


@pytest.mark.parametrize("spare_pages", [0, 12, 21, 64])
def test_sqlite_full_mid_insert_never_raises_and_evicts_only_lower_values(
    tmp_path: Path, tmpfs: Any, monkeypatch: pytest.MonkeyPatch, spare_pages: int
) -> None:
    """The filesystem fills until the free-space check drops frames; then another process takes
    all but ``spare_pages`` of what is left and the check is blinded (it looked before that),
    so SQLite itself reports SQLITE_FULL mid-insert and the recovery path runs for real.
    Whether the frame then fits depends on the spare room; the contract holds either way."""
    with tmpfs(tmp_path / "mnt", 3 * CAP) as mnt:
        buf = FrameBuffer(mnt / "b.db", max_bytes=64 * CAP)
        (mnt / "filler").write_bytes(b"\0" * (2 * CAP))
        outcomes = [buf.add(kept(1.0 - i / 100, 60_000, i)) for i in range(40)]
        dropped = [o for o in outcomes if not o.stored]
        assert dropped and all(o.dropped == "disk_full" and not o.evicted for o in dropped)
        before = buf.stats()
        stored = [o.device_seq for o in outcomes if o.device_seq is not None]
        st = os.statvfs(mnt)
        (mnt / "taken").write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - spare_pages * 4096))
        monkeypatch.setattr(buffer_module, "filesystem_room", lambda file, cost: 0)
        better = buf.add(kept(2.0, 60_000, 500))
        assert better.stored == (better.dropped is None)
        assert better.dropped in (None, "disk_full")
        # values fall with the seed: the newest stored frames are the least valuable
        assert better.evicted == tuple(sorted(stored, reverse=True)[: len(better.evicted)])
        after = buf.stats()
        assert after.frames == before.frames - len(better.evicted) + better.stored
        assert after.evicted == before.evicted + len(better.evicted)
        assert after.dropped.get("disk_full") == len(dropped) + (not better.stored)
        if spare_pages == 21:  # the window where evicting makes room (SQLite 3, 4 KiB pages)
            assert better.stored and better.evicted
        (mnt / "filler").unlink()
        (mnt / "taken").unlink()
        assert buf.add(kept(0.001, 60_000, 600)).stored  # space back: the next add just works
        buf.close()
        with sqlite3.connect(mnt / "b.db") as c:
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            seqs = {s for (s,) in c.execute("SELECT device_seq FROM frames")}
            assert not seqs & set(better.evicted)
            assert better.device_seq is None or better.device_seq in seqs
