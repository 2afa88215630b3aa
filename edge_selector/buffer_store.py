"""The buffer's open SQLite file and its write primitives: :class:`BufferFile`.

:class:`BufferFile` owns the connection, the :class:`~edge_selector.buffer_space.SpaceLimits`,
the running totals (frames, accounted bytes) and the counts kept in memory when a write could
not commit (``SQLITE_FULL``): each :meth:`BufferFile.transaction` writes them along with its own
work. A write that hits a full disk rolls back and raises :class:`DiskFull`, which the buffer
handles; it never reaches the buffer's caller. Not thread-safe by itself: the
:class:`~edge_selector.buffer.FrameBuffer` holding it serialises every call under its lock.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from edge_selector.buffer_frames import COLUMNS, BufferedFrame, frame_from_row, row_values
from edge_selector.buffer_schema import atomic, connect, migrate
from edge_selector.buffer_space import SpaceLimits, database_files_bytes, is_disk_full

__all__ = ["CHUNK", "COUNTERS", "BufferFile", "DiskFull"]

CHUNK = 256
"""Most rows one statement (and one delete transaction) touches."""

COUNTERS = ("evicted", "uploaded", "disk_full")
"""The counters rows besides ``last_device_seq``."""

_INSERT = f"INSERT INTO frames ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_COUNT_DROP = (
    "INSERT INTO drops (reason, count) VALUES (?, ?)"
    " ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count"
)


class DiskFull(Exception):
    """SQLITE_FULL inside a write; the transaction was rolled back."""


class BufferFile:
    """An open buffer file: connection, cap, totals and the counts not yet written.

    Args:
        path: the database file; created with its schema when missing.
        max_bytes, headroom: see :meth:`SpaceLimits.split`.
        clock: returns the aware UTC time recorded for migrations and ``buffered_at``.
        busy_timeout_s: how long a write waits for another connection's lock.

    Opening heals the ``last_device_seq`` counter to at least the largest stored
    ``device_seq``, loads the totals and empties the log; fitting a cap lowered since is the
    caller's (:func:`edge_selector.buffer_evict.fit_budget`).

    Raises:
        InvalidInputError: a cap too small for its headroom, or a non-positive value.
        sqlite3.DatabaseError: ``path`` is not a database.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        headroom: int | None,
        clock: Callable[[], datetime],
        busy_timeout_s: float,
    ) -> None:
        self.path = path
        self.clock = clock
        self.pending: Counter[str] = Counter()
        self.pending_drops: Counter[str] = Counter()
        self.conn = connect(path, busy_timeout_s=busy_timeout_s)
        try:
            page_size = int(self.conn.execute("PRAGMA page_size").fetchone()[0])
            self.limits = SpaceLimits.split(max_bytes, headroom, page_size)
            migrate(self.conn, clock)
            with self.transaction() as c:
                c.execute(
                    "UPDATE counters SET value = max(value, (SELECT coalesce(max(device_seq), 0)"
                    " FROM frames)) WHERE name = 'last_device_seq'"
                )
            totals = self.conn.execute("SELECT count(*), coalesce(sum(cost_bytes), 0) FROM frames")
            self.frames, self.stored = totals.fetchone()
            self.checkpoint()
        except BaseException:
            self.conn.close()
            raise

    def count_disk_full(self, *, dropped: bool) -> None:
        """Count one ``SQLITE_FULL`` (and, when ``dropped``, one frame dropped for it)."""
        self.pending["disk_full"] += 1
        if dropped:
            self.pending_drops["disk_full"] += 1

    def insert(self, record: Any, value: float, cost: int) -> int:
        """Store ``record`` under the next ``device_seq`` (bumped in the same transaction).

        Raises:
            DiskFull: the transaction could not commit; nothing changed.
        """
        sizes = database_files_bytes(self.path)
        if sum(sizes.values()) + self.limits.txn_wal_bytes(cost) > self.limits.max_bytes:
            self.checkpoint()
        with self.transaction() as c:
            (seq,) = c.execute(
                "UPDATE counters SET value = value + 1 WHERE name = 'last_device_seq'"
                " RETURNING value"
            ).fetchone()
            row = row_values(
                record, device_seq=seq, value=value, buffered_at=self.clock(), cost=cost
            )
            c.execute(_INSERT, row)
        self.frames += 1
        self.stored += cost
        self.maybe_checkpoint()
        return int(seq)

    def delete_rows(self, seqs: list[int], counter: str | None, drop_reason: str | None) -> int:
        """Delete up to :data:`CHUNK` rows in one transaction, counting them; returns how many.

        Raises:
            DiskFull: the transaction could not commit; nothing changed.
        """
        marks = ", ".join("?" * len(seqs))
        with self.transaction() as c:
            costs = [
                cost
                for (cost,) in c.execute(
                    f"DELETE FROM frames WHERE device_seq IN ({marks}) RETURNING cost_bytes", seqs
                )
            ]
            if counter is not None and costs:
                c.execute(
                    "UPDATE counters SET value = value + ? WHERE name = ?", (len(costs), counter)
                )
            if drop_reason is not None and costs:
                c.execute(_COUNT_DROP, (drop_reason, len(costs)))
        self.frames -= len(costs)
        self.stored -= sum(costs)
        return len(costs)

    def select(self, seqs: list[int]) -> list[BufferedFrame]:
        """The stored frames among ``seqs`` (any order)."""
        found: list[BufferedFrame] = []
        for start in range(0, len(seqs), CHUNK):
            part = seqs[start : start + CHUNK]
            sql = f"SELECT {', '.join(COLUMNS)} FROM frames WHERE device_seq IN "
            sql += f"({', '.join('?' * len(part))})"
            found += [frame_from_row(r) for r in self.conn.execute(sql, part)]
        return found

    def counters(self) -> tuple[dict[str, int], Counter[str]]:
        """The counters and the drops per reason, counts not yet written included."""
        counters = dict(self.conn.execute("SELECT name, value FROM counters").fetchall())
        for name in COUNTERS:
            counters[name] += self.pending[name]
        dropped = Counter(dict(self.conn.execute("SELECT reason, count FROM drops")))
        dropped.update(self.pending_drops)
        return counters, dropped

    def describe(self) -> dict[str, Any]:
        """The files' sizes, SQLite settings, what the frames span and the migrations applied."""
        c = self.conn
        oldest, newest, low, high = c.execute(
            "SELECT min(captured_at), max(captured_at), min(value), max(value) FROM frames"
        ).fetchone()
        migrations = [r[0] for r in c.execute("SELECT name FROM _migrations ORDER BY rowid")]
        return {
            "files": database_files_bytes(self.path),
            "page_size": self.limits.page_size,
            "freelist_pages": c.execute("PRAGMA freelist_count").fetchone()[0],
            "journal_mode": c.execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                c.execute("PRAGMA synchronous").fetchone()[0], "?"
            ),
            "oldest_captured_at": oldest,
            "newest_captured_at": newest,
            "value_range": None if low is None else [low, high],
            "migrations": migrations,
        }

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that also writes the counts kept in memory since the last one.

        Raises:
            DiskFull: ``SQLITE_FULL``; the transaction was rolled back, the counts stay pending.
        """
        counts, drops = Counter(self.pending), Counter(self.pending_drops)
        try:
            with atomic(self.conn) as c:
                yield c
                for name, n in counts.items():
                    c.execute("UPDATE counters SET value = value + ? WHERE name = ?", (n, name))
                for reason, n in drops.items():
                    c.execute(_COUNT_DROP, (reason, n))
        except sqlite3.OperationalError as exc:
            if is_disk_full(exc):
                raise DiskFull(str(exc)) from exc
            raise
        self.pending.subtract(counts)
        self.pending_drops.subtract(drops)
        self.pending, self.pending_drops = +self.pending, +self.pending_drops

    def maybe_checkpoint(self) -> None:
        """Checkpoint when the log is over :attr:`SpaceLimits.wal_limit`."""
        if database_files_bytes(self.path)["wal"] > self.limits.wal_limit:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Copy the log into the database and truncate it (best effort when the disk is full)."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            self.pending["disk_full"] += 1

    def shrink(self) -> None:
        """Give free pages back to the filesystem, then checkpoint (best effort)."""
        try:
            self.conn.execute("PRAGMA incremental_vacuum").fetchall()
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
        self.checkpoint()

    def close(self) -> None:
        """Write pending counts (best effort), checkpoint and close the connection."""
        with contextlib.suppress(DiskFull):
            if self.pending or self.pending_drops:
                with self.transaction():
                    pass
        self.checkpoint()
        self.conn.close()
