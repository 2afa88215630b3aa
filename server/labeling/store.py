"""The label queue and the labels: :class:`LabelStore`, over the catalog's SQLite file.

- :meth:`LabelStore.lease`: sweeps expired leases, chooses a batch with a pool strategy
  (:mod:`server.labeling.pool`) and inserts one lease per frame, all in ONE ``BEGIN IMMEDIATE``
  transaction: two labelers leasing at once are serialised by SQLite's write lock, and the
  second sees the first's leases. A partial unique index (one open lease per frame) backs this.
- :meth:`LabelStore.renew` / :meth:`LabelStore.release`: only the holder (or an admin), only
  while the lease is open.
- :meth:`LabelStore.label`: validates the class against the frame's model version
  (:mod:`server.labeling.classes`), stores a new row (superseding the frame's current label:
  a correction), closes the frame's open lease and enqueues the warehouse row ``labels``, in one
  transaction.

Time comes from an injectable clock; a lease is open while ``now < expires_at``.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from curator.errors import InvalidInputError
from curator.selection.pool import DEFAULT_STRATEGY, STRATEGIES
from server.catalog.answers import iso
from server.catalog.store import Catalog
from server.db import atomic
from server.errors import Forbidden, NotFound
from server.labeling.classes import class_names, register_class_names
from server.labeling.errors import LeaseConflict, UnknownClassName
from server.labeling.pool import choose_frames
from server.labeling.rows import LabelRow, LabelTask, Lease

if TYPE_CHECKING:
    from server.warehouse.outbox import Outbox

__all__ = ["MAX_LEASE_COUNT", "MAX_LEASE_S", "LabelStore"]

MAX_LEASE_COUNT = 100
"""The most tasks one lease call hands out."""
MAX_LEASE_S = 24 * 3600.0
"""The longest lease, in seconds."""
WAREHOUSE_TABLE = "labels"

_LEASE_COLS = (
    "lease_id, frame_id, holder, leased_at, expires_at, strategy, model_version, released_at,"
    " release_reason"
)
_LABEL_COLS = (
    "label_id, frame_id, class_name, model_version, labeler, created_at, supersedes, lease_id"
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _lease(values: Sequence[Any]) -> Lease:
    return Lease(
        values[0], values[1], values[2], datetime.fromisoformat(values[3]),
        datetime.fromisoformat(values[4]), values[5], values[6], _time(values[7]), values[8],
    )  # fmt: skip


def _label(values: Sequence[Any]) -> LabelRow:
    return LabelRow(
        values[0], values[1], values[2], values[3], values[4],
        datetime.fromisoformat(values[5]), values[6], values[7],
    )  # fmt: skip


def _check_lease_s(lease_s: float) -> timedelta:
    if isinstance(lease_s, bool) or not isinstance(lease_s, int | float):
        raise InvalidInputError(f"lease_s must be a number of seconds, got {lease_s!r}")
    if not 0 < lease_s <= MAX_LEASE_S:
        raise InvalidInputError(f"lease_s must be in (0, {MAX_LEASE_S:g}], got {lease_s!r}")
    return timedelta(seconds=float(lease_s))


class LabelStore:
    """Label tasks, leases and labels in the catalog's file; cheap to build (opens nothing).

    Args:
        catalog: the open catalog (its migrations create the tables).
        outbox: the warehouse outbox in the same file; each new label's warehouse row is
            enqueued in the transaction that stores it. None: the catalog only.
        clock: the current time (timezone-aware).
        rng: breaks ties in the selection; a seed makes batches reproducible.
        strategy: the pool strategy (:data:`curator.selection.pool.STRATEGIES`).
        strategy_params: its own parameters.

    Raises:
        ValueError: an unknown strategy (the message lists the valid ones).
    """

    def __init__(
        self,
        catalog: Catalog,
        outbox: Outbox | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
        rng: np.random.Generator | int | None = None,
        strategy: str = DEFAULT_STRATEGY,
        strategy_params: dict[str, object] | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(
                f"unknown selection strategy {strategy!r}; valid: {', '.join(sorted(STRATEGIES))}"
            )
        self.catalog = catalog
        self.outbox = outbox
        self.strategy = strategy
        self._params = dict(strategy_params or {})
        self._clock = clock
        self._rng = np.random.default_rng(rng)

    @property
    def _conn(self) -> sqlite3.Connection:
        return self.catalog.db.connection

    def _now(self) -> datetime:
        now = self._clock()
        iso(now, "clock()")
        return now.astimezone(UTC)

    def lease(self, holder: str, count: int = 10, lease_s: float = 300.0) -> list[LabelTask]:
        """Lease up to ``count`` frames to ``holder``, the most valuable first.

        Args:
            holder: who takes them (a token id).
            count: ``1..MAX_LEASE_COUNT``.
            lease_s: seconds until the leases expire, ``(0, MAX_LEASE_S]``.

        Returns:
            One task per leased frame, in selection order; fewer (or none) when the pool runs
            out of unlabeled frames without an open lease.

        Raises:
            InvalidInputError: a bad ``count``, ``lease_s`` or ``holder``.
        """
        if isinstance(count, bool) or not isinstance(count, int):
            raise InvalidInputError(f"count must be an int, got {count!r}")
        if not 1 <= count <= MAX_LEASE_COUNT:
            raise InvalidInputError(f"count must be in [1, {MAX_LEASE_COUNT}], got {count}")
        if not isinstance(holder, str) or not holder:
            raise InvalidInputError(f"holder must be a non-empty string, got {holder!r}")
        length = _check_lease_s(lease_s)
        tasks: list[LabelTask] = []
        with atomic(self._conn) as c:
            now = self._now()
            at, until = iso(now), iso(now + length)
            c.execute(
                "UPDATE label_leases SET released_at = expires_at, release_reason = 'expired'"
                " WHERE released_at IS NULL AND expires_at <= ?",
                (at,),
            )
            picks = choose_frames(
                c, count, at, strategy=self.strategy, rng=self._rng, params=self._params
            )
            for pick in picks:
                lease = Lease(
                    "lease_" + secrets.token_hex(12), pick.frame_id, holder, now,
                    now + length, pick.strategy, pick.model_version,
                )  # fmt: skip
                c.execute(
                    "INSERT INTO label_leases (lease_id, frame_id, holder, leased_at, expires_at,"
                    " strategy, model_version) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (lease.lease_id, lease.frame_id, holder, at, until, pick.strategy,
                     pick.model_version),
                )  # fmt: skip
                tasks.append(self._task(c, lease))
        return tasks

    def _task(self, c: sqlite3.Connection, lease: Lease) -> LabelTask:
        version, predicted, probs = c.execute(
            "SELECT model_version, predicted_class, class_probabilities FROM frames"
            " WHERE frame_id = ?",
            (lease.frame_id,),
        ).fetchone()
        confidence = None
        if probs is not None and predicted is not None:
            confidence = float(json.loads(probs)[predicted])
        return LabelTask(lease, version, class_names(c, version), predicted, confidence)

    def get_lease(self, lease_id: str) -> Lease:
        """The lease ``lease_id`` as stored.

        Raises:
            NotFound: no such lease.
        """
        return self._get_lease(self._conn, lease_id)

    @staticmethod
    def _get_lease(c: sqlite3.Connection, lease_id: str) -> Lease:
        row = c.execute(
            f"SELECT {_LEASE_COLS} FROM label_leases WHERE lease_id = ?", (lease_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no label task lease {lease_id!r}")
        return _lease(row)

    def _open_lease_of(
        self, c: sqlite3.Connection, lease_id: str, holder: str, admin: bool, now: datetime
    ) -> Lease:
        lease = self._get_lease(c, lease_id)
        if not admin and lease.holder != holder:
            raise Forbidden(f"lease {lease_id} is held by another labeler")
        if not lease.is_open(now):
            state = lease.release_reason or "expired"
            raise LeaseConflict(f"lease {lease_id} is no longer open ({state})")
        return lease

    def renew(
        self, lease_id: str, holder: str, lease_s: float = 300.0, *, admin: bool = False
    ) -> Lease:
        """Extend an open lease to ``now + lease_s``.

        Raises:
            NotFound: no such lease.
            Forbidden: ``holder`` does not hold it and is not ``admin``.
            LeaseConflict: it expired, was released, or its frame was labeled.
            InvalidInputError: a bad ``lease_s``.
        """
        length = _check_lease_s(lease_s)
        with atomic(self._conn) as c:
            now = self._now()
            self._open_lease_of(c, lease_id, holder, admin, now)
            c.execute(
                "UPDATE label_leases SET expires_at = ? WHERE lease_id = ?",
                (iso(now + length), lease_id),
            )
            return self._get_lease(c, lease_id)

    def release(self, lease_id: str, holder: str, *, admin: bool = False) -> Lease:
        """Give an open lease's frame back to the pool now.

        Raises:
            NotFound, Forbidden, LeaseConflict: as for :meth:`renew`.
        """
        with atomic(self._conn) as c:
            now = self._now()
            self._open_lease_of(c, lease_id, holder, admin, now)
            c.execute(
                "UPDATE label_leases SET released_at = ?, release_reason = 'released'"
                " WHERE lease_id = ?",
                (iso(now), lease_id),
            )
            return self._get_lease(c, lease_id)

    def label(
        self,
        frame_id: str,
        class_name: str,
        labeler: str,
        *,
        lease_id: str | None = None,
        admin: bool = False,
    ) -> LabelRow:
        """Store a label for ``frame_id``; if it has one, the new row is a correction of it.

        The frame's open lease (whoever holds it) ends with reason ``labeled``; the warehouse
        row is enqueued in the same transaction.

        Args:
            frame_id: an accepted frame.
            class_name: one of the class names of the frame's model version.
            labeler: who labels (a token id).
            lease_id: the caller's lease on this frame, if it has one; recorded with the label.
            admin: whether the caller is an admin (may name another holder's lease).

        Raises:
            NotFound: no accepted frame ``frame_id``, or no lease ``lease_id``.
            UnknownClassName: ``class_name`` is not a class of the frame's model version.
            InvalidInputError: ``lease_id`` is another frame's lease.
            Forbidden: ``lease_id`` is held by someone else (and the caller is not an admin).
        """
        with atomic(self._conn) as c:
            now = self._now()
            frame = c.execute(
                "SELECT model_version FROM frames WHERE frame_id = ? AND status = 'accepted'",
                (frame_id,),
            ).fetchone()
            if frame is None:
                raise NotFound(f"no accepted frame {frame_id!r}")
            version = frame[0]
            valid = class_names(c, version)
            if class_name not in valid:
                raise UnknownClassName(class_name, version, valid)
            if lease_id is not None:
                lease = self._get_lease(c, lease_id)
                if lease.frame_id != frame_id:
                    raise InvalidInputError(f"lease {lease_id} is for another frame")
                if not admin and lease.holder != labeler:
                    raise Forbidden(f"lease {lease_id} is held by another labeler")
            previous = self._current(c, frame_id)
            row = LabelRow(
                "label_" + secrets.token_hex(12), frame_id, class_name, version, labeler,
                now, None if previous is None else previous.label_id, lease_id,
            )  # fmt: skip
            c.execute(
                f"INSERT INTO labels ({_LABEL_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (row.label_id, frame_id, class_name, version, labeler, iso(now),
                 row.supersedes, lease_id),
            )  # fmt: skip
            c.execute(
                "UPDATE label_leases SET released_at = ?, release_reason = 'labeled'"
                " WHERE frame_id = ? AND released_at IS NULL",
                (iso(now), frame_id),
            )
            if self.outbox is not None:
                self.outbox.enqueue(WAREHOUSE_TABLE, [row.warehouse_row()], conn=c)
        return row

    @staticmethod
    def _current(c: sqlite3.Connection, frame_id: str) -> LabelRow | None:
        row = c.execute(
            f"SELECT {_LABEL_COLS} FROM labels l WHERE frame_id = ? AND NOT EXISTS"
            " (SELECT 1 FROM labels n WHERE n.supersedes = l.label_id)",
            (frame_id,),
        ).fetchone()
        return None if row is None else _label(row)

    def current_label(self, frame_id: str) -> LabelRow | None:
        """The frame's current label (the newest of its chain), or None."""
        return self._current(self._conn, frame_id)

    def history(self, frame_id: str) -> list[LabelRow]:
        """Every label of ``frame_id``, oldest first (each later one supersedes the one before)."""
        rows = self._conn.execute(
            f"SELECT {_LABEL_COLS} FROM labels WHERE frame_id = ? ORDER BY created_at, rowid",
            (frame_id,),
        )
        return [_label(r) for r in rows]

    def current_labels(self) -> list[LabelRow]:
        """The current label of every labeled frame, by frame ingest order."""
        rows = self._conn.execute(
            f"SELECT {', '.join('l.' + c.strip() for c in _LABEL_COLS.split(','))} FROM labels l"
            " JOIN frames f ON f.frame_id = l.frame_id WHERE NOT EXISTS"
            " (SELECT 1 FROM labels n WHERE n.supersedes = l.label_id) ORDER BY f.ingest_seq"
        )
        return [_label(r) for r in rows]

    def class_names(self, model_version: str | None) -> tuple[str, ...]:
        """The class names labels of ``model_version``'s frames are checked against."""
        return class_names(self._conn, model_version)

    def register_class_names(self, model_version: str, names: Sequence[str]) -> None:
        """Record the class names of ``model_version`` (e.g. its ``curator.class_names``)."""
        register_class_names(self._conn, model_version, names, self._now())
