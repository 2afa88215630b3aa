"""The lease rows (``label_leases``), over a connection on the catalog's file: their limits,
reading one, checking who may act on it, expiring the stale ones and recording a new one.

A lease is open while ``now < expires_at`` and it was not released. Its ``release_reason`` says
how it ended: ``released`` (given back by its holder or an admin; the labeling page's skip),
``labeled`` or ``expired``. :class:`~server.labeling.LabelStore` calls these inside its
transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from curator.errors import InvalidInputError
from server.catalog.answers import iso
from server.errors import Forbidden, NotFound
from server.labeling.errors import LeaseConflict
from server.labeling.rows import Lease

__all__ = [
    "MAX_LEASE_COUNT",
    "MAX_LEASE_S",
    "check_lease_count",
    "check_lease_s",
    "expire_leases",
    "get_lease",
    "insert_lease",
    "open_lease_of",
]

MAX_LEASE_COUNT = 100
"""The most tasks one lease call hands out."""
MAX_LEASE_S = 24 * 3600.0
"""The longest lease, in seconds."""

_LEASE_COLS = (
    "lease_id, frame_id, holder, leased_at, expires_at, strategy, model_version, released_at,"
    " release_reason"
)


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _lease(values: Sequence[Any]) -> Lease:
    return Lease(
        values[0], values[1], values[2], datetime.fromisoformat(values[3]),
        datetime.fromisoformat(values[4]), values[5], values[6], _time(values[7]), values[8],
    )  # fmt: skip


def check_lease_s(lease_s: float) -> timedelta:
    """``lease_s`` as a duration.

    Raises:
        InvalidInputError: not a number, or outside ``(0, MAX_LEASE_S]``.
    """
    if isinstance(lease_s, bool) or not isinstance(lease_s, int | float):
        raise InvalidInputError(f"lease_s must be a number of seconds, got {lease_s!r}")
    if not 0 < lease_s <= MAX_LEASE_S:
        raise InvalidInputError(f"lease_s must be in (0, {MAX_LEASE_S:g}], got {lease_s!r}")
    return timedelta(seconds=float(lease_s))


def check_lease_count(count: int) -> int:
    """``count`` when it is an int in ``[1, MAX_LEASE_COUNT]``.

    Raises:
        InvalidInputError: anything else.
    """
    if isinstance(count, bool) or not isinstance(count, int):
        raise InvalidInputError(f"count must be an int, got {count!r}")
    if not 1 <= count <= MAX_LEASE_COUNT:
        raise InvalidInputError(f"count must be in [1, {MAX_LEASE_COUNT}], got {count}")
    return count


def get_lease(c: sqlite3.Connection, lease_id: str) -> Lease:
    """The lease ``lease_id`` as stored.

    Raises:
        NotFound: no such lease.
    """
    row = c.execute(f"SELECT {_LEASE_COLS} FROM label_leases WHERE lease_id = ?", (lease_id,))
    values = row.fetchone()
    if values is None:
        raise NotFound(f"no label task lease {lease_id!r}")
    return _lease(values)


def open_lease_of(
    c: sqlite3.Connection, lease_id: str, holder: str, admin: bool, now: datetime
) -> Lease:
    """The lease ``lease_id``, when ``holder`` (or an admin) may act on it and it is open.

    Raises:
        NotFound: no such lease.
        Forbidden: ``holder`` does not hold it and is not ``admin``.
        LeaseConflict: it expired, was released, or its frame was labeled.
    """
    lease = get_lease(c, lease_id)
    if not admin and lease.holder != holder:
        raise Forbidden(f"lease {lease_id} is held by another labeler")
    if not lease.is_open(now):
        state = lease.release_reason or "expired"
        raise LeaseConflict(f"lease {lease_id} is no longer open ({state})")
    return lease


def expire_leases(c: sqlite3.Connection, now: datetime) -> None:
    """Mark the open leases past their ``expires_at`` as ``expired`` (at that time)."""
    c.execute(
        "UPDATE label_leases SET released_at = expires_at, release_reason = 'expired'"
        " WHERE released_at IS NULL AND expires_at <= ?",
        (iso(now),),
    )


def insert_lease(c: sqlite3.Connection, lease: Lease) -> None:
    """Record a new open lease (the partial unique index refuses a second open one per frame)."""
    c.execute(
        "INSERT INTO label_leases (lease_id, frame_id, holder, leased_at, expires_at, strategy,"
        " model_version) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (lease.lease_id, lease.frame_id, lease.holder, iso(lease.leased_at),
         iso(lease.expires_at), lease.strategy, lease.model_version),
    )  # fmt: skip
