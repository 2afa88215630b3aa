"""Device heartbeats in the catalog: :class:`HeartbeatStore` over ``device_heartbeats``.

Every :class:`curator.wire.DeviceHeartbeat` a device sent is one row, keyed by (``device_id``,
``sent_at``): the same heartbeat sent again (a retry after a lost answer) finds its row and
stores nothing more, and its answer carries the first ``received_at``. A new heartbeat and its
warehouse row (table ``device_heartbeats``) are written in one transaction on the catalog's
file, the way ingest writes frames with theirs, so the warehouse log gets each heartbeat once
and never one the catalog lacks. ``latest_heartbeats`` points at each device's newest
``sent_at`` (the device's clock), which :meth:`HeartbeatStore.latest` reads.

The tables come with the catalog's migrations (``catalog.0002_device_heartbeats``): open a
:class:`~server.catalog.Catalog` on the file first.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from curator.errors import InvalidInputError
from curator.wire import DeviceHeartbeat, HeartbeatAck
from server.catalog.answers import iso
from server.catalog.store import Catalog
from server.db import atomic

if TYPE_CHECKING:
    from server.warehouse.outbox import Outbox

__all__ = ["HeartbeatRow", "HeartbeatStore", "RecordedHeartbeat"]

WAREHOUSE_TABLE = "device_heartbeats"

_COLUMNS = (
    "device_id",
    "sent_at",
    "received_at",
    "started_at",
    "model_version",
    "software_version",
    "counters",
    "buffer_frames",
    "buffer_bytes",
    "buffer_max_bytes",
    "last_device_seq",
    "schema_version",
)
_TIMES = ("sent_at", "received_at", "started_at")
_SELECT = f"SELECT {', '.join(f'h.{c}' for c in _COLUMNS)} FROM device_heartbeats h"
_INSERT = (
    f"INSERT INTO device_heartbeats ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_COLUMNS))}) ON CONFLICT (device_id, sent_at) DO NOTHING"
)
_POINT_LATEST = (
    "INSERT INTO latest_heartbeats (device_id, sent_at) VALUES (?, ?) "
    "ON CONFLICT (device_id) DO UPDATE SET sent_at = max(sent_at, excluded.sent_at)"
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class HeartbeatRow:
    """One stored heartbeat: the device's report and when the server first received it."""

    device_id: str
    sent_at: datetime
    received_at: datetime
    started_at: datetime
    model_version: str | None
    software_version: str
    counters: Mapping[str, int] = field(default_factory=dict)
    buffer_frames: int = 0
    buffer_bytes: int = 0
    buffer_max_bytes: int = 0
    last_device_seq: int = 0
    schema_version: int = 1

    @classmethod
    def from_heartbeat(cls, heartbeat: DeviceHeartbeat, received_at: datetime) -> HeartbeatRow:
        """The row for ``heartbeat`` received at ``received_at`` (timezone-aware).

        Raises:
            InvalidInputError: ``heartbeat`` is not a :class:`DeviceHeartbeat`, or
                ``received_at`` is naive.
        """
        if not isinstance(heartbeat, DeviceHeartbeat):
            raise InvalidInputError(f"expected DeviceHeartbeat, got {type(heartbeat).__name__}")
        iso(received_at, "received_at")
        return cls(
            device_id=heartbeat.device_id,
            sent_at=heartbeat.sent_at,
            received_at=received_at.astimezone(UTC),
            started_at=heartbeat.started_at,
            model_version=heartbeat.model_version,
            software_version=heartbeat.software_version,
            counters=dict(heartbeat.counters),
            buffer_frames=heartbeat.buffer_frames,
            buffer_bytes=heartbeat.buffer_bytes,
            buffer_max_bytes=heartbeat.buffer_max_bytes,
            last_device_seq=heartbeat.last_device_seq,
            schema_version=heartbeat.schema_version,
        )

    def warehouse_row(self) -> dict[str, Any]:
        """The row of the warehouse table ``device_heartbeats``
        (:data:`server.warehouse.tables.DEVICE_HEARTBEATS`)."""
        return {
            "device_id": self.device_id,
            "sent_at": self.sent_at,
            "counters": dict(self.counters),
            "received_at": self.received_at,
            "started_at": self.started_at,
            "model_version": self.model_version,
            "software_version": self.software_version,
            "buffer_frames": self.buffer_frames,
            "buffer_bytes": self.buffer_bytes,
            "buffer_max_bytes": self.buffer_max_bytes,
            "last_device_seq": self.last_device_seq,
        }

    def to_ack(self, *, duplicate: bool) -> HeartbeatAck:
        """The wire answer: this row's device and first ``received_at``."""
        return HeartbeatAck(
            device_id=self.device_id, received_at=self.received_at, duplicate=duplicate
        )


class RecordedHeartbeat(NamedTuple):
    """What :meth:`HeartbeatStore.record` did: the stored row, and whether it was there before."""

    row: HeartbeatRow
    duplicate: bool


class HeartbeatStore:
    """The catalog's heartbeats; cheap to build (it opens nothing and runs no migration).

    Args:
        catalog: the open catalog whose file holds the tables.
        outbox: the warehouse outbox, in the same file (as :class:`~server.ingest.IngestService`
            needs it): each new heartbeat's warehouse row is enqueued in the transaction that
            stores it. None: the catalog only (tests, tools).
        clock: the time stamped as ``received_at`` (timezone-aware).
    """

    def __init__(
        self,
        catalog: Catalog,
        outbox: Outbox | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.catalog = catalog
        self.outbox = outbox
        self._clock = clock

    def record(
        self,
        heartbeat: DeviceHeartbeat,
        *,
        received_at: datetime | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> RecordedHeartbeat:
        """Store ``heartbeat`` unless its (device_id, sent_at) is stored already.

        A new heartbeat is stored with ``received_at`` (default: the clock), the device's
        latest pointer moves forward if it is newer, and its warehouse row is enqueued, all in
        one transaction. A stored one is returned as stored (its first ``received_at`` and
        content, even if this copy differs) with ``duplicate=True``, and nothing is written.

        Args:
            heartbeat: the validated wire model.
            received_at: when the server received it; timezone-aware.
            conn: a connection in an open transaction (from :meth:`Catalog.atomic`) to join.

        Raises:
            InvalidInputError: not a :class:`DeviceHeartbeat`, or a naive ``received_at``.
            Unavailable: the outbox's file cannot be written.
        """
        row = HeartbeatRow.from_heartbeat(
            heartbeat, self._clock() if received_at is None else received_at
        )
        with atomic(conn or self.catalog.db.connection) as c:
            inserted = c.execute(_INSERT, _to_sql(row)).rowcount == 1
            if not inserted:
                stored = self._get(c, row.device_id, row.sent_at)
                assert stored is not None  # the conflict was on this key, in this transaction
                return RecordedHeartbeat(stored, duplicate=True)
            c.execute(_POINT_LATEST, (row.device_id, iso(row.sent_at)))
            if self.outbox is not None:
                self.outbox.enqueue(WAREHOUSE_TABLE, [row.warehouse_row()], conn=c)
        return RecordedHeartbeat(row, duplicate=False)

    def get(self, device_id: str, sent_at: datetime) -> HeartbeatRow | None:
        """The stored heartbeat of ``device_id`` sent at ``sent_at``, or None.

        Raises:
            InvalidInputError: a naive ``sent_at``.
        """
        return self._get(self.catalog.db.connection, device_id, sent_at)

    def latest(self) -> list[HeartbeatRow]:
        """Each device's newest heartbeat (largest ``sent_at``), ordered by device id."""
        rows = self.catalog.db.connection.execute(
            f"{_SELECT} JOIN latest_heartbeats l"
            " ON l.device_id = h.device_id AND l.sent_at = h.sent_at ORDER BY h.device_id"
        )
        return [_from_sql(values) for values in rows]

    def history(self, device_id: str) -> list[HeartbeatRow]:
        """Every stored heartbeat of ``device_id``, oldest ``sent_at`` first."""
        rows = self.catalog.db.connection.execute(
            f"{_SELECT} WHERE h.device_id = ? ORDER BY h.sent_at", (device_id,)
        )
        return [_from_sql(values) for values in rows]

    def count(self) -> int:
        """The number of stored heartbeats, all devices."""
        (n,) = self.catalog.db.connection.execute(
            "SELECT count(*) FROM device_heartbeats"
        ).fetchone()
        return int(n)

    @staticmethod
    def _get(c: sqlite3.Connection, device_id: str, sent_at: datetime) -> HeartbeatRow | None:
        values = c.execute(
            f"{_SELECT} WHERE h.device_id = ? AND h.sent_at = ?",
            (device_id, iso(sent_at, "sent_at")),
        ).fetchone()
        return None if values is None else _from_sql(values)


def _to_sql(row: HeartbeatRow) -> tuple[Any, ...]:
    values = {
        name: getattr(row, name) for name in _COLUMNS if name not in _TIMES and name != "counters"
    }
    values.update({name: iso(getattr(row, name), name) for name in _TIMES})
    values["counters"] = json.dumps(dict(row.counters), sort_keys=True, allow_nan=False)
    return tuple(values[name] for name in _COLUMNS)


def _from_sql(values: tuple[Any, ...]) -> HeartbeatRow:
    data = dict(zip(_COLUMNS, values, strict=True))
    for name in _TIMES:
        data[name] = datetime.fromisoformat(data[name])
    data["counters"] = json.loads(data["counters"])
    return HeartbeatRow(**data)
