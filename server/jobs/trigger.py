"""When to fine-tune, and on what: dataset snapshots and the trigger policy.

A **snapshot** is the set of current labels as of a label watermark: the labels with
``rowid <= watermark`` that no label with ``rowid <= watermark`` supersedes. Labels are only ever
appended (a correction is a new row), so a watermark pins the data set for good and a job can
re-read exactly what it was created for, however many labels arrived since.
:func:`snapshot_key` names it: sha256 over the sorted ``(frame_id, label_id)`` pairs.

The **policy** (:func:`decide`, pure): start a job when at least ``every_labels`` labels were
given since the last job's watermark, or when an admin asks; never for an empty snapshot, and
never twice for the same snapshot (the store returns the existing job). :func:`trigger` reads
the labels, applies the policy, creates the job and dispatches it.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from curator.errors import InvalidInputError
from server.jobs.queue import JobQueue
from server.jobs.store import DEFAULT_MAX_ATTEMPTS, Job, JobStore

__all__ = [
    "SnapshotLabel",
    "TriggerDecision",
    "TriggerOutcome",
    "current_watermark",
    "decide",
    "snapshot_key",
    "snapshot_labels",
    "trigger",
]


@dataclass(frozen=True)
class SnapshotLabel:
    """One labeled frame of a snapshot: its current label."""

    frame_id: str
    label_id: str
    class_name: str


@dataclass(frozen=True)
class TriggerDecision:
    """Whether to start a job, and why."""

    start: bool
    reason: str


@dataclass(frozen=True)
class TriggerOutcome:
    """What :func:`trigger` did: the decision and the job (new or existing), if any."""

    decision: TriggerDecision
    job: Job | None
    created: bool


def snapshot_key(labels: Iterable[tuple[str, str] | SnapshotLabel]) -> str:
    """The key of a dataset snapshot: sha256 hex over its sorted ``(frame_id, label_id)`` pairs.

    Order does not matter; a corrected label (a new ``label_id``) changes the key.

    Raises:
        InvalidInputError: a pair whose ids are not non-empty strings without tab or newline.
    """
    pairs: list[tuple[str, str]] = []
    for item in labels:
        pair = (item.frame_id, item.label_id) if isinstance(item, SnapshotLabel) else item
        if (
            not isinstance(pair, tuple)
            or len(pair) != 2
            or not all(isinstance(p, str) and p and not set(p) & {"\t", "\n"} for p in pair)
        ):
            raise InvalidInputError(
                f"labels must be (frame_id, label_id) string pairs without tabs or newlines, "
                f"got {item!r}"
            )
        pairs.append(pair)
    digest = hashlib.sha256()
    for frame_id, label_id in sorted(pairs):
        digest.update(f"{frame_id}\t{label_id}\n".encode())
    return digest.hexdigest()


def current_watermark(conn: sqlite3.Connection) -> int:
    """The highest ``labels`` rowid (0 when there are no labels)."""
    return int(conn.execute("SELECT coalesce(max(rowid), 0) FROM labels").fetchone()[0])


def snapshot_labels(conn: sqlite3.Connection, watermark: int) -> list[SnapshotLabel]:
    """The current labels as of ``watermark``, by frame_id.

    Raises:
        InvalidInputError: ``watermark`` is not an int >= 0.
    """
    if isinstance(watermark, bool) or not isinstance(watermark, int) or watermark < 0:
        raise InvalidInputError(f"watermark must be an int >= 0, got {watermark!r}")
    rows = conn.execute(
        "SELECT l.frame_id, l.label_id, l.class_name FROM labels l WHERE l.rowid <= ?"
        " AND NOT EXISTS (SELECT 1 FROM labels n WHERE n.supersedes = l.label_id"
        " AND n.rowid <= ?) ORDER BY l.frame_id",
        (watermark, watermark),
    )
    return [SnapshotLabel(*r) for r in rows]


def decide(
    new_labels: int, every_labels: int, *, requested: bool = False, snapshot_size: int = 1
) -> TriggerDecision:
    """The trigger policy.

    Args:
        new_labels: labels given since the last job's snapshot (all of them, if none yet).
        every_labels: how many new labels start a job (>= 1).
        requested: an admin asked for a run now.
        snapshot_size: current labels in the snapshot a job would train on.

    Raises:
        InvalidInputError: negative counts or ``every_labels < 1``.
    """
    for name, value, low in (
        ("new_labels", new_labels, 0),
        ("every_labels", every_labels, 1),
        ("snapshot_size", snapshot_size, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidInputError(f"{name} must be an int >= {low}, got {value!r}")
    if snapshot_size == 0:
        return TriggerDecision(False, "no labels to train on")
    if requested:
        return TriggerDecision(True, f"requested by an admin ({new_labels} new labels)")
    if new_labels >= every_labels:
        return TriggerDecision(True, f"{new_labels} new labels (every {every_labels})")
    return TriggerDecision(False, f"{new_labels} new labels of {every_labels} needed")


def trigger(
    store: JobStore,
    queue: JobQueue,
    *,
    every_labels: int,
    requested_by: str | None = None,
    params: Mapping[str, Any] | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    now: datetime | None = None,
) -> TriggerOutcome:
    """Apply the policy to the catalog's labels now; create and dispatch a job if it says so.

    ``requested_by`` set means an admin asked (the policy's ``requested``). A snapshot that
    already has a job returns it (``created=False``) and dispatches nothing.

    Raises:
        InvalidInputError: see :func:`decide` and :meth:`JobStore.create`.
    """
    conn = store.db.connection
    watermark = current_watermark(conn)
    last = store.latest()
    since = 0 if last is None else last.label_watermark
    new_labels = int(
        conn.execute("SELECT count(*) FROM labels WHERE rowid > ?", (since,)).fetchone()[0]
    )
    labels = snapshot_labels(conn, watermark)
    decision = decide(
        new_labels, every_labels, requested=requested_by is not None, snapshot_size=len(labels)
    )
    if not decision.start:
        return TriggerOutcome(decision, None, False)
    job, created = store.create(
        snapshot_key(labels),
        label_watermark=watermark,
        label_count=len(labels),
        params=params,
        requested_by=requested_by,
        max_attempts=max_attempts,
        now=now,
    )
    if created:
        queue.dispatch(job.job_id)
        store.mark_dispatched(job.job_id, now=now)
    return TriggerOutcome(decision, job, created)
