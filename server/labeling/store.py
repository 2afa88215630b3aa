"""The label queue and the labels: :class:`LabelStore`, over the catalog's SQLite file.

- :meth:`LabelStore.lease`: sweeps expired leases, chooses a batch with a pool strategy
  (:mod:`server.labeling.pool`) and inserts one lease per frame, all in ONE ``BEGIN IMMEDIATE``
  transaction: two labelers leasing at once are serialised by SQLite's write lock, and the
  second sees the first's leases. A partial unique index (one open lease per frame) backs this.
  A frame the labeler gave back (skipped) within the last ``skip_cooldown_s`` is not handed to
  that labeler; colleagues still get it.
- :meth:`LabelStore.renew` / :meth:`LabelStore.release`: only the holder (or an admin), only
  while the lease is open (:mod:`server.labeling.leases`).
- :meth:`LabelStore.label`: validates the class against the frame's model version
  (:mod:`server.labeling.classes`), stores a new row (superseding the frame's current label:
  a correction), closes the frame's open lease and enqueues the warehouse row ``labels``, in one
  transaction (:mod:`server.labeling.labels`).

Time comes from an injectable clock; a lease is open while ``now < expires_at``.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from curator.errors import InvalidInputError
from curator.selection.pool import DEFAULT_STRATEGY, STRATEGIES
from server.catalog.answers import iso
from server.catalog.store import Catalog
from server.db import atomic
from server.labeling import labels, leases
from server.labeling.classes import class_names, register_class_names
from server.labeling.leases import MAX_LEASE_COUNT, MAX_LEASE_S
from server.labeling.pool import choose_frames, skipped_frames
from server.labeling.rows import LabelRow, LabelTask, Lease

if TYPE_CHECKING:
    from server.warehouse.outbox import Outbox

__all__ = ["MAX_LEASE_COUNT", "MAX_LEASE_S", "SKIP_COOLDOWN_S", "LabelStore"]

SKIP_COOLDOWN_S = 15 * 60.0
"""How long a frame a labeler gave back (skipped) is kept from that labeler, in seconds."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _check_cooldown(skip_cooldown_s: float) -> timedelta:
    if isinstance(skip_cooldown_s, bool) or not isinstance(skip_cooldown_s, int | float):
        raise InvalidInputError(
            f"skip_cooldown_s must be a number of seconds, got {skip_cooldown_s!r}"
        )
    if not 0 <= skip_cooldown_s <= leases.MAX_LEASE_S:
        raise InvalidInputError(
            f"skip_cooldown_s must be in [0, {leases.MAX_LEASE_S:g}], got {skip_cooldown_s!r}"
        )
    return timedelta(seconds=float(skip_cooldown_s))


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
        skip_cooldown_s: seconds after a labeler gives a frame back (releases its lease) during
            which that frame is not leased to the same labeler again, ``[0, MAX_LEASE_S]``;
            0 turns the cool-down off.

    Raises:
        ValueError: an unknown strategy (the message lists the valid ones).
        InvalidInputError: a bad ``skip_cooldown_s``.
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
        skip_cooldown_s: float = SKIP_COOLDOWN_S,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(
                f"unknown selection strategy {strategy!r}; valid: {', '.join(sorted(STRATEGIES))}"
            )
        self.catalog = catalog
        self.outbox = outbox
        self.strategy = strategy
        self.skip_cooldown = _check_cooldown(skip_cooldown_s)
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

        Frames ``holder`` released within the last ``skip_cooldown_s`` are left out (for this
        holder only).

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
        leases.check_lease_count(count)
        if not isinstance(holder, str) or not holder:
            raise InvalidInputError(f"holder must be a non-empty string, got {holder!r}")
        length = leases.check_lease_s(lease_s)
        tasks: list[LabelTask] = []
        with atomic(self._conn) as c:
            now = self._now()
            leases.expire_leases(c, now)
            skipped = frozenset[str]()
            if self.skip_cooldown:
                skipped = skipped_frames(c, holder, iso(now - self.skip_cooldown))
            picks = choose_frames(
                c,
                count,
                iso(now),
                strategy=self.strategy,
                rng=self._rng,
                params=self._params,
                skipped=skipped,
            )
            for pick in picks:
                lease = Lease(
                    "lease_" + secrets.token_hex(12), pick.frame_id, holder, now,
                    now + length, pick.strategy, pick.model_version,
                )  # fmt: skip
                leases.insert_lease(c, lease)
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
        return leases.get_lease(self._conn, lease_id)

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
        length = leases.check_lease_s(lease_s)
        with atomic(self._conn) as c:
            now = self._now()
            leases.open_lease_of(c, lease_id, holder, admin, now)
            c.execute(
                "UPDATE label_leases SET expires_at = ? WHERE lease_id = ?",
                (iso(now + length), lease_id),
            )
            return leases.get_lease(c, lease_id)

    def release(self, lease_id: str, holder: str, *, admin: bool = False) -> Lease:
        """Give an open lease's frame back to the pool now (the labeling page's skip).

        Other labelers may lease the frame at once; the lease's holder gets it again only
        after ``skip_cooldown_s``.

        Raises:
            NotFound, Forbidden, LeaseConflict: as for :meth:`renew`.
        """
        with atomic(self._conn) as c:
            now = self._now()
            leases.open_lease_of(c, lease_id, holder, admin, now)
            c.execute(
                "UPDATE label_leases SET released_at = ?, release_reason = 'released'"
                " WHERE lease_id = ?",
                (iso(now), lease_id),
            )
            return leases.get_lease(c, lease_id)

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
            return labels.store_label(
                c, frame_id, class_name, labeler, self._now(),
                lease_id=lease_id, admin=admin, outbox=self.outbox,
            )  # fmt: skip

    def current_label(self, frame_id: str) -> LabelRow | None:
        """The frame's current label (the newest of its chain), or None."""
        return labels.current_label(self._conn, frame_id)

    def history(self, frame_id: str) -> list[LabelRow]:
        """Every label of ``frame_id``, oldest first (each later one supersedes the one before)."""
        return labels.label_history(self._conn, frame_id)

    def current_labels(self) -> list[LabelRow]:
        """The current label of every labeled frame, by frame ingest order."""
        return labels.current_labels(self._conn)

    def class_names(self, model_version: str | None) -> tuple[str, ...]:
        """The class names labels of ``model_version``'s frames are checked against."""
        return class_names(self._conn, model_version)

    def register_class_names(self, model_version: str, names: Sequence[str]) -> None:
        """Record the class names of ``model_version`` (e.g. its ``curator.class_names``)."""
        register_class_names(self._conn, model_version, names, self._now())
