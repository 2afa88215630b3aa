"""The labels themselves, over a connection on the catalog's file: storing one (a correction
when the frame has one already) and reading the current label and the history.

A correction is a new row whose ``supersedes`` is the frame's current label; nothing is updated
or deleted, and the current label is the one no row supersedes. :class:`~server.labeling.LabelStore`
calls these inside its transactions.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from curator.errors import InvalidInputError
from server.catalog.answers import iso
from server.errors import Forbidden, NotFound
from server.labeling.classes import class_names
from server.labeling.errors import UnknownClassName
from server.labeling.leases import get_lease
from server.labeling.rows import LabelRow

if TYPE_CHECKING:
    from server.warehouse.outbox import Outbox

__all__ = ["WAREHOUSE_TABLE", "current_label", "current_labels", "label_history", "store_label"]

WAREHOUSE_TABLE = "labels"
"""The warehouse table each new label is enqueued to."""

_LABEL_COLS = (
    "label_id, frame_id, class_name, model_version, labeler, created_at, supersedes, lease_id"
)


def _label(values: Sequence[Any]) -> LabelRow:
    return LabelRow(
        values[0], values[1], values[2], values[3], values[4],
        datetime.fromisoformat(values[5]), values[6], values[7],
    )  # fmt: skip


def store_label(
    c: sqlite3.Connection,
    frame_id: str,
    class_name: str,
    labeler: str,
    now: datetime,
    *,
    lease_id: str | None,
    admin: bool,
    outbox: Outbox | None,
) -> LabelRow:
    """Store a label for ``frame_id``, end its open lease and enqueue the warehouse row.

    Run it inside a write transaction (:func:`server.db.atomic`); arguments as for
    :meth:`server.labeling.LabelStore.label`.

    Raises:
        NotFound: no accepted frame ``frame_id``, or no lease ``lease_id``.
        UnknownClassName: ``class_name`` is not a class of the frame's model version.
        InvalidInputError: ``lease_id`` is another frame's lease.
        Forbidden: ``lease_id`` is held by someone else (and the caller is not an admin).
    """
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
        lease = get_lease(c, lease_id)
        if lease.frame_id != frame_id:
            raise InvalidInputError(f"lease {lease_id} is for another frame")
        if not admin and lease.holder != labeler:
            raise Forbidden(f"lease {lease_id} is held by another labeler")
    previous = current_label(c, frame_id)
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
    if outbox is not None:
        outbox.enqueue(WAREHOUSE_TABLE, [row.warehouse_row()], conn=c)
    return row


def current_label(c: sqlite3.Connection, frame_id: str) -> LabelRow | None:
    """The frame's current label (the newest of its chain), or None."""
    row = c.execute(
        f"SELECT {_LABEL_COLS} FROM labels l WHERE frame_id = ? AND NOT EXISTS"
        " (SELECT 1 FROM labels n WHERE n.supersedes = l.label_id)",
        (frame_id,),
    ).fetchone()
    return None if row is None else _label(row)


def label_history(c: sqlite3.Connection, frame_id: str) -> list[LabelRow]:
    """Every label of ``frame_id``, oldest first (each later one supersedes the one before)."""
    rows = c.execute(
        f"SELECT {_LABEL_COLS} FROM labels WHERE frame_id = ? ORDER BY created_at, rowid",
        (frame_id,),
    )
    return [_label(r) for r in rows]


def current_labels(c: sqlite3.Connection) -> list[LabelRow]:
    """The current label of every labeled frame, by frame ingest order."""
    rows = c.execute(
        f"SELECT {', '.join('l.' + col.strip() for col in _LABEL_COLS.split(','))} FROM labels l"
        " JOIN frames f ON f.frame_id = l.frame_id WHERE NOT EXISTS"
        " (SELECT 1 FROM labels n WHERE n.supersedes = l.label_id) ORDER BY f.ingest_seq"
    )
    return [_label(r) for r in rows]
