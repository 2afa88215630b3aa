"""The durable frame buffer between the selector and the uploader: :class:`FrameBuffer`.

A priority queue of kept frames in one SQLite file (WAL, ``synchronous=FULL``) under a byte
cap that the files on disk never exceed. The selector calls :meth:`FrameBuffer.add`; when a frame
does not fit, the lowest-value unclaimed frames below it are evicted, or the frame itself is
dropped, and both are counted. The uploader calls :meth:`~FrameBuffer.claim` (most valuable
first), then :meth:`~FrameBuffer.ack`, :meth:`~FrameBuffer.release` or
:meth:`~FrameBuffer.drop`. ``device_seq`` comes from a counter row bumped in the insert's
transaction, so it never repeats, across restarts and crashes. "Database or disk is full" never
reaches the caller. What is durable when: docs/edge-buffer.md. This module holds the lock,
the claims and the argument checks; the SQL is in :mod:`edge_selector.buffer_store`, making
room in :mod:`edge_selector.buffer_evict`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from curator.errors import InvalidInputError
from edge_selector.buffer_evict import (
    evict,
    eviction_plan,
    filesystem_room,
    fit_budget,
    recover_from_disk_full,
)
from edge_selector.buffer_frames import BufferedFrame, KeptFrame, check_frame, cost_bytes, meta_json
from edge_selector.buffer_outcomes import AddOutcome, BufferStats, FrameTooLargeError
from edge_selector.buffer_space import SpaceLimits, database_files_bytes
from edge_selector.buffer_state import load_state, recent_embeddings, save_state
from edge_selector.buffer_store import CHUNK, BufferFile, DiskFull

__all__ = ["AddOutcome", "BufferStats", "BufferedFrame", "FrameBuffer", "FrameTooLargeError"]

_REASON_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")


class FrameBuffer:
    """Kept frames in a SQLite file under a byte cap, handed to the uploader by value.

    Args:
        path: the database file; created with its schema when missing (its folder must exist).
        max_bytes: cap on the database, ``-wal`` and ``-shm`` files together.
        headroom: bytes of the cap left to SQLite (log, schema, index pages); default
            ``max(max_bytes // 8, 512 KiB)``. See :class:`edge_selector.buffer_space.SpaceLimits`.
        clock: returns the aware time recorded as ``buffered_at``; default UTC now.
        busy_timeout_s: how long a write waits for another connection's lock.

    Safe to share between threads (one lock, one connection). Claims live in memory: reopening
    the file releases them all, and the uploader re-sends idempotently.

    Raises:
        InvalidInputError: a cap too small for its headroom, or a non-positive value.
        sqlite3.DatabaseError: ``path`` is not a database.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int,
        headroom: int | None = None,
        clock: Callable[[], datetime] | None = None,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._claimed: set[int] = set()
        file = BufferFile(
            self.path,
            max_bytes=max_bytes,
            headroom=headroom,
            clock=self._now,
            busy_timeout_s=busy_timeout_s,
        )
        try:
            fit_budget(file)  # a cap lowered since the file was written
        except BaseException:
            file.conn.close()
            raise
        self._file: BufferFile | None = file
        self.limits: SpaceLimits = file.limits

    def add(self, frame: KeptFrame) -> AddOutcome:
        """Store ``frame`` with the next ``device_seq``, evicting lower-value frames if needed.

        When the frame does not fit the budget, unclaimed frames worth strictly less are
        evicted, lowest value first (newest first among equal values), until it fits; if even
        all of them would not make room, nothing is evicted and the frame is dropped
        (``"low_value"``). On "database or disk is full" the buffer checkpoints, evicts
        lower-value frames, returns their space to the filesystem and tries once more, then
        drops the frame (``"disk_full"``); that error never propagates.

        Raises:
            InvalidInputError: ``frame`` is malformed (non-finite value or embedding).
            FrameTooLargeError: the frame alone costs more than the cap can hold.
            WireFormatError: a field the wire contract refuses.
        """
        record = check_frame(frame)
        cost = cost_bytes(record, meta_json(record), self.limits.page_size)
        if cost > self.limits.max_frame_cost:
            raise FrameTooLargeError(
                f"frame of {len(record.image)} image bytes costs {cost} bytes in the buffer; "
                f"the largest that fits max_bytes={self.limits.max_bytes} is "
                f"{self.limits.max_frame_cost} (raise max_bytes or headroom, or encode smaller)"
            )
        value = float(frame.value)
        with self._lock:
            file = self._open_file()
            room = filesystem_room(file, cost)
            if room is None:  # the log alone would not fit on the filesystem: write nothing
                file.count_disk_full(dropped=True)
                return AddOutcome(None, dropped="disk_full")
            over_budget = cost - (self.limits.budget - file.stored)
            plan = eviction_plan(file, self._claimed, value, max(over_budget, room))
            if plan is None:
                if room > over_budget:
                    file.count_disk_full(dropped=True)
                    return AddOutcome(None, dropped="disk_full")
                file.pending_drops["low_value"] += 1
                return AddOutcome(None, dropped="low_value")
            try:
                evicted = evict(file, plan)
                return AddOutcome(file.insert(record, value, cost), evicted)
            except DiskFull:
                evicted = recover_from_disk_full(file, self._claimed, value, cost)
            try:
                return AddOutcome(file.insert(record, value, cost), evicted)
            except DiskFull:
                file.count_disk_full(dropped=True)
                return AddOutcome(None, evicted, "disk_full")

    def claim(self, limit: int, max_bytes: int | None = None) -> list[BufferedFrame]:
        """Up to ``limit`` unclaimed frames, most valuable first (ties: lowest device_seq).

        Args:
            limit: most frames to return (>= 1).
            max_bytes: stop before the frames' summed ``cost_bytes`` pass this; the first frame
                is always returned, so a large frame is never stuck.

        Raises:
            InvalidInputError: ``limit`` or ``max_bytes`` is not a positive integer.
        """
        limit = _positive(limit, "limit")
        budget = None if max_bytes is None else _positive(max_bytes, "max_bytes")
        with self._lock:
            file = self._open_file()
            chosen: list[int] = []
            total = 0
            query = "SELECT device_seq, cost_bytes FROM frames ORDER BY value DESC, device_seq"
            with contextlib.closing(file.conn.execute(query)) as rows:
                for seq, cost in rows:
                    if seq in self._claimed:
                        continue
                    if chosen and budget is not None and total + cost > budget:
                        break
                    chosen.append(seq)
                    total += cost
                    if len(chosen) == limit:
                        break
            frames = {f.device_seq: f for f in file.select(chosen)}
            self._claimed.update(chosen)
            return [frames[s] for s in chosen]

    def ack(self, device_seqs: Iterable[int]) -> int:
        """Delete frames the server answered for (accepted or duplicate); count them uploaded.

        Unknown sequence numbers are ignored, so acking twice is harmless. If the disk is full
        the rows stay, their claims are released (the uploader re-sends them; the server
        answers the same) and 0 is returned.

        Returns:
            How many frames were deleted.
        """
        return self._delete(_seqs(device_seqs), "uploaded", None)

    def drop(self, device_seqs: Iterable[int], reason: str) -> int:
        """Delete frames the server rejected; count them under ``reason``'s code.

        Args:
            device_seqs: the rejected frames.
            reason: the server's ``"code: detail"`` (the code before ``:`` is kept) or a code.

        Raises:
            InvalidInputError: the code is empty or not ``[a-z0-9_.-]``, at most 64 characters.
        """
        code = reason.split(":", 1)[0].strip() if isinstance(reason, str) else ""
        if not code or len(code) > 64 or not set(code) <= _REASON_OK:
            raise InvalidInputError(
                f"reason must start with a code of [a-z0-9_.-] (at most 64), got {reason!r}"
            )
        return self._delete(_seqs(device_seqs), None, code)

    def release(self, device_seqs: Iterable[int]) -> int:
        """Return claimed frames to the pool (after a transport error); returns how many."""
        seqs = _seqs(device_seqs)
        with self._lock:
            released = self._claimed.intersection(seqs)
            self._claimed.difference_update(released)
            return len(released)

    def stats(self) -> BufferStats:
        """Frames, bytes and the counters (including counts not yet written to the file)."""
        with self._lock:
            file = self._open_file()
            counters, dropped = file.counters()
            return BufferStats(
                frames=file.frames,
                claimed=len(self._claimed),
                stored_bytes=file.stored,
                file_bytes=self.file_bytes(),
                max_bytes=self.limits.max_bytes,
                budget_bytes=self.limits.budget,
                last_device_seq=counters["last_device_seq"],
                evicted=counters["evicted"],
                uploaded=counters["uploaded"],
                disk_full=counters["disk_full"],
                dropped=dict(sorted(dropped.items())),
            )

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary for ``edge-selector status --buffer``: stats, files, settings."""
        with self._lock:
            stats = self.stats()
            return {
                "path": str(self.path),
                **dataclasses.asdict(stats),
                "headroom_bytes": self.limits.headroom,
                "max_frame_cost": self.limits.max_frame_cost,
                **self._open_file().describe(),
            }

    def save_state(self, name: str, value: dict[str, Any]) -> bool:
        """Keep JSON data under ``name`` in the file (the selector's resumable state).

        Returns:
            False when the disk was full and nothing was written (counted, never raised).

        Raises:
            TypeError, ValueError: ``value`` is not JSON data.
        """
        with self._lock:
            return save_state(self._open_file(), name, value, self._now().isoformat())

    def load_state(self, name: str) -> dict[str, Any] | None:
        """The JSON data last saved under ``name``, or None."""
        with self._lock:
            return load_state(self._open_file(), name)

    def recent_embeddings(self, model_version: str, limit: int) -> npt.NDArray[np.float32]:
        """``(n, D)`` float32: the newest ``limit`` buffered embeddings of ``model_version``,
        oldest first; ``(0, 0)`` when there are none."""
        with self._lock:
            return recent_embeddings(self._open_file(), model_version, _positive(limit, "limit"))

    def file_bytes(self) -> int:
        """Bytes the database, ``-wal`` and ``-shm`` files take on disk now."""
        return sum(database_files_bytes(self.path).values())

    def close(self) -> None:
        """Write pending counts (best effort), checkpoint, close. Further calls raise."""
        with self._lock:
            if self._file is None:
                return
            self._file.close()
            self._file = None
            self._claimed.clear()

    def __enter__(self) -> FrameBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FrameBuffer({str(self.path)!r}, max_bytes={self.limits.max_bytes})"

    # -- internals -------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    def _open_file(self) -> BufferFile:
        if self._file is None:
            raise InvalidInputError(f"the buffer {self.path} is closed")
        return self._file

    def _delete(self, seqs: list[int], counter: str | None, drop_reason: str | None) -> int:
        with self._lock:
            file = self._open_file()
            deleted = 0
            try:
                for start in range(0, len(seqs), CHUNK):
                    part = seqs[start : start + CHUNK]
                    deleted += file.delete_rows(part, counter, drop_reason)
                    self._claimed.difference_update(part)
            except DiskFull:
                file.count_disk_full(dropped=False)
            self._claimed.difference_update(seqs)
            file.maybe_checkpoint()
            return deleted


def _seqs(device_seqs: Iterable[int]) -> list[int]:
    """``device_seqs`` as distinct ints, in order.

    Raises:
        InvalidInputError: an item is not an integer.
    """
    if isinstance(device_seqs, str | bytes):
        raise InvalidInputError(f"device_seqs must be integers, got {device_seqs!r}")
    seqs: list[int] = []
    for s in device_seqs:
        if isinstance(s, bool):
            raise InvalidInputError(f"device_seqs must be integers, got {s!r}")
        try:
            seqs.append(operator.index(s))
        except TypeError as exc:
            raise InvalidInputError(f"device_seqs must be integers, got {s!r}") from exc
    return list(dict.fromkeys(seqs))


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return value
