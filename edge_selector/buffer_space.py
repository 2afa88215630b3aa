"""How the buffer splits its byte cap: :class:`SpaceLimits`, and the real size of its files.

The cap ``max_bytes`` bounds the database file plus its ``-wal`` and ``-shm`` files. The frames'
accounted costs (whole pages, see :func:`edge_selector.buffer_frames.cost_bytes`) may fill the
``budget``; the ``headroom`` above it is for what SQLite itself needs: the shared-memory index,
pages that hold no frame (schema, counters, b-tree interior and index pages, pointer maps) and
the write-ahead log, which is checkpointed and truncated after every write transaction (so
it holds at most one, and the database file, not the log, holds the frames: on a full disk,
freed pages in the database can be reused without growing anything). The largest frame is the
one whose transaction still fits the log's share of the headroom.
docs/edge-buffer.md works through the numbers.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from curator.errors import InvalidInputError

__all__ = ["SHM_RESERVE", "SpaceLimits", "database_files_bytes", "is_disk_full"]

SHM_RESERVE = 64 * 1024
"""Bytes kept for the ``-shm`` index (32 KiB covers a log of ~4,000 pages; twice that, safe)."""

_FIXED_PAGES = 32
_TXN_EXTRA_PAGES = 16  # b-tree leaf and interior pages, index, counters, freelist, pointer map
_WAL_FRAME_HEADER = 24
_WAL_HEADER = 32
_SQLITE_FULL = 13


@dataclass(frozen=True)
class SpaceLimits:
    """The cap split into the frames' budget and SQLite's headroom (all in bytes).

    Attributes:
        max_bytes: cap on the database, ``-wal`` and ``-shm`` files together.
        headroom: the part of the cap frames may not use.
        budget: ``max_bytes - headroom``: the most the frames' accounted costs may sum to.
        wal_limit: a write that leaves the log larger than this checkpoints and truncates it
            (0: every write).
        max_frame_cost: the largest accounted cost of one frame.
        page_size: the database's page size.
    """

    max_bytes: int
    headroom: int
    budget: int
    wal_limit: int
    max_frame_cost: int
    page_size: int

    @classmethod
    def split(cls, max_bytes: int, headroom: int | None, page_size: int) -> SpaceLimits:
        """Split ``max_bytes``; ``headroom=None`` takes ``max(max_bytes // 8, 512 KiB)``.

        Raises:
            InvalidInputError: a value that is not a positive integer, or a cap too small
                for its headroom to hold even one page-sized frame's transaction.
        """
        max_bytes = _positive_int(max_bytes, "max_bytes")
        headroom = max(max_bytes // 8, 512 * 1024) if headroom is None else headroom
        headroom = _positive_int(headroom, "headroom")
        budget = max_bytes - headroom
        reserve_db = _FIXED_PAGES * page_size + max(budget, 0) // 32
        wal_room = headroom - SHM_RESERVE - reserve_db
        wal_limit = 0  # checkpoint after every write: the log never holds more than one
        txn_pages = (wal_room - wal_limit - _WAL_HEADER) // (page_size + _WAL_FRAME_HEADER)
        max_frame_cost = min(budget, (txn_pages - _TXN_EXTRA_PAGES) * page_size)
        if budget <= 0 or max_frame_cost < 2 * page_size:
            raise InvalidInputError(
                f"max_bytes={max_bytes} with headroom={headroom} leaves no room for frames: "
                f"the headroom must exceed {SHM_RESERVE + reserve_db} bytes for SQLite's own "
                "pages plus room for the log, and the budget (max_bytes - headroom) must be "
                "positive"
            )
        return cls(max_bytes, headroom, budget, wal_limit, max_frame_cost, page_size)

    def txn_wal_bytes(self, new_cost: int) -> int:
        """An upper bound on the log bytes of a transaction that inserts a frame of that cost."""
        pages = new_cost // self.page_size + _TXN_EXTRA_PAGES
        return _WAL_HEADER + pages * (self.page_size + _WAL_FRAME_HEADER)


def database_files_bytes(path: Path) -> dict[str, int]:
    """Sizes on disk of ``path`` and its ``-wal`` and ``-shm`` files (0 when absent)."""
    sizes: dict[str, int] = {}
    for name, suffix in (("db", ""), ("wal", "-wal"), ("shm", "-shm")):
        try:
            sizes[name] = os.stat(f"{path}{suffix}").st_size
        except FileNotFoundError:
            sizes[name] = 0
    return sizes


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's ``SQLITE_FULL`` ("database or disk is full")."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return bool((code & 0xFF) == _SQLITE_FULL)
    return "database or disk is full" in str(exc)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return value
