"""Making room for a frame: which frames to evict, and what to do when the disk is full.

- :func:`eviction_plan`: the unclaimed frames worth strictly less than a new one, lowest value
  first (newest first among equal values), that free enough bytes; None when they cannot.
- :func:`filesystem_room`: how many bytes of frames must go so an insert and its checkpoint
  fit the free space of the filesystem (``statvfs``), before anything is written.
- :func:`evict`: delete a plan, in transactions of :data:`~edge_selector.buffer_store.CHUNK`.
- :func:`fit_budget`: on open, evict down to a cap lowered since the file was written.
- :func:`recover_from_disk_full`: after ``SQLITE_FULL``, truncate the log, evict lower-value
  frames and give their pages back to the filesystem, so the insert can be tried once more.

docs/edge-buffer.md ("Value, eviction, drops" and "A full disk") explains the rules.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Set

from edge_selector.buffer_store import CHUNK, BufferFile, DiskFull

__all__ = ["evict", "eviction_plan", "filesystem_room", "fit_budget", "recover_from_disk_full"]


def eviction_plan(file: BufferFile, claimed: Set[int], value: float, need: int) -> list[int] | None:
    """Unclaimed frames worth less than ``value`` freeing ``need`` bytes; None if impossible.

    Args:
        file: the open buffer file.
        claimed: sequence numbers the uploader holds; never evicted.
        value: the new frame's value; only frames worth strictly less are candidates.
        need: accounted bytes to free (``<= 0``: nothing to evict).

    Returns:
        Sequence numbers, lowest value first (newest first among equal values), whose costs
        sum to at least ``need``; ``[]`` when ``need <= 0``; None when all candidates together
        free less (then nothing should be evicted).
    """
    if need <= 0:
        return []
    plan: list[int] = []
    query = (
        "SELECT device_seq, cost_bytes FROM frames WHERE value < ?"
        " ORDER BY value ASC, device_seq DESC"
    )
    with contextlib.closing(file.conn.execute(query, (value,))) as rows:
        for seq, cost in rows:
            if seq not in claimed:
                plan.append(seq)
                need -= cost
                if need <= 0:
                    return plan
    return None


def filesystem_room(file: BufferFile, cost: int) -> int | None:
    """Bytes of frames to evict so the insert and its checkpoint fit the free disk space.

    A committed transaction must always be checkpointable: the log needs room for the
    transaction, then the database may grow by the pages the free list cannot supply.

    Returns:
        The bytes to free (``<= 0``: none), or None when even the log would not fit.
    """
    limits = file.limits
    st = os.statvfs(file.path.parent)
    free = st.f_bavail * st.f_frsize - limits.page_size  # keep one page spare
    txn = limits.txn_wal_bytes(cost)
    if free < txn:
        return None
    (freelist,) = file.conn.execute("PRAGMA freelist_count").fetchone()
    return int(cost - freelist * limits.page_size - (free - txn))


def evict(file: BufferFile, plan: list[int]) -> tuple[int, ...]:
    """Delete the frames of ``plan``, counted ``evicted``; returns ``plan`` as a tuple.

    Raises:
        DiskFull: a chunk could not commit (the chunks before it did).
    """
    for start in range(0, len(plan), CHUNK):
        file.delete_rows(plan[start : start + CHUNK], "evicted", None)
        file.maybe_checkpoint()
    return tuple(plan)


def fit_budget(file: BufferFile) -> None:
    """Evict the lowest-value frames until the stored costs fit the budget (nothing claimed)."""
    if file.stored > file.limits.budget:
        plan = eviction_plan(file, frozenset(), float("inf"), file.stored - file.limits.budget)
        evict(file, plan or [])


def recover_from_disk_full(
    file: BufferFile, claimed: Set[int], value: float, cost: int
) -> tuple[int, ...]:
    """After ``SQLITE_FULL`` on an insert: count it, free space; returns the evicted frames.

    Truncates the log, evicts unclaimed frames worth less than ``value`` (enough for twice
    ``cost``, or all of them when they are fewer), then returns free pages to the filesystem.
    Every step is best effort: a full disk stops it quietly.
    """
    file.count_disk_full(dropped=False)
    file.checkpoint()
    evicted: tuple[int, ...] = ()
    plan = eviction_plan(file, claimed, value, 2 * cost)
    if plan is None:  # not enough to free 2 * cost: take every frame worth less
        lower = file.conn.execute("SELECT device_seq FROM frames WHERE value < ?", (value,))
        plan = [s for (s,) in lower.fetchall() if s not in claimed]
    with contextlib.suppress(DiskFull):
        evicted = evict(file, plan)
    file.shrink()
    return evicted
