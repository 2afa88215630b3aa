"""Device heartbeats in the catalog, on a real SQLite file: idempotent on (device_id, sent_at),
stored together with their warehouse outbox row, newest per device."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curator.errors import InvalidInputError
from curator.wire import DeviceHeartbeat
from server.catalog import CATALOG_MIGRATIONS, Catalog
from server.catalog.heartbeats import HeartbeatRow, HeartbeatStore
from server.db import SQLiteFile, applied_migrations, migrate
from server.warehouse import Outbox, SqliteSink
from server.warehouse.tables import DEVICE_HEARTBEATS, validate_rows

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 1, 1, 12, 0, 5, 250_000, tzinfo=UTC)


def beat(n: int = 0, device: str = "cam-1", **fields: Any) -> DeviceHeartbeat:
    """Heartbeat ``n`` of ``device``: sent ``n`` minutes after T0."""
    values: dict[str, Any] = {
        "device_id": device,
        "sent_at": T0 + timedelta(minutes=n),
        "started_at": T0 - timedelta(hours=1),
        "model_version": "m1",
        "software_version": "0.1.0",
        "counters": {"frames.seen": 100 * n, "frames.kept": n, "dropped.black": 0},
        "buffer_frames": n,
        "buffer_bytes": 1000 * n,
        "buffer_max_bytes": 10**9,
        "last_device_seq": n,
    }
    values.update(fields)
    return DeviceHeartbeat(**values)


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall())
            for t in ("device_heartbeats", "latest_heartbeats", "warehouse_outbox")
        }
    finally:
        conn.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "catalog.sqlite"


@pytest.fixture
def catalog(path: Path) -> Any:
    with Catalog(path) as cat:
        yield cat


@pytest.fixture
def outbox(path: Path, catalog: Catalog) -> Any:
    box = Outbox(path)
    yield box
    box.close()


@pytest.fixture
def store(catalog: Catalog, outbox: Outbox) -> HeartbeatStore:
    return HeartbeatStore(catalog, outbox, clock=lambda: RECEIVED)


def outbox_rows(path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT table_name, row FROM warehouse_outbox ORDER BY id").fetchall()
    finally:
        conn.close()
    assert {table for table, _ in rows} <= {"device_heartbeats"}
    return [json.loads(row) for _, row in rows]


def test_a_heartbeat_is_stored_with_its_warehouse_row(
    store: HeartbeatStore, path: Path, tmp_path: Path
) -> None:
    hb = beat(3, sent_at=datetime(2026, 1, 1, 14, 3, tzinfo=timezone(timedelta(hours=2))))
    recorded = store.record(hb)
    assert not recorded.duplicate
    expected = HeartbeatRow(
        device_id="cam-1",
        sent_at=datetime(2026, 1, 1, 12, 3, tzinfo=UTC),
        received_at=RECEIVED,
        started_at=T0 - timedelta(hours=1),
        model_version="m1",
        software_version="0.1.0",
        counters={"frames.seen": 300, "frames.kept": 3, "dropped.black": 0},
        buffer_frames=3,
        buffer_bytes=3000,
        buffer_max_bytes=10**9,
        last_device_seq=3,
        schema_version=1,
    )
    assert recorded.row == expected
    assert store.get("cam-1", hb.sent_at) == expected
    assert store.history("cam-1") == [expected] and store.latest() == [expected]
    assert store.count() == 1
    assert recorded.row.to_ack(duplicate=False).model_dump() == {
        "device_id": "cam-1",
        "received_at": RECEIVED,
        "duplicate": False,
    }
    # the outbox holds exactly its warehouse row, and it drains into the warehouse as given
    (queued,) = outbox_rows(path)
    assert queued["sent_at"] == "2026-01-01T12:03:00+00:00"
    sink = SqliteSink(tmp_path / "warehouse.sqlite")
    assert store.outbox is not None and store.outbox.drain(sink) == 1
    assert sink.read("device_heartbeats") == validate_rows(
        DEVICE_HEARTBEATS, [expected.warehouse_row()]
    )
    sink.close()


def test_the_same_heartbeat_again_is_a_duplicate_and_writes_nothing(
    store: HeartbeatStore, path: Path
) -> None:
    first = store.record(beat(1))
    before = dump(path)
    later = RECEIVED + timedelta(minutes=5)
    again = store.record(beat(1), received_at=later)
    assert again.duplicate and again.row == first.row
    assert again.row.received_at == RECEIVED
    # the same instant with another UTC offset is the same key; other content keeps the first
    shifted = beat(1, sent_at=(T0 + timedelta(minutes=1)).astimezone(timezone(-timedelta(hours=7))))
    changed = beat(1, counters={"frames.seen": 999})
    for copy in (shifted, changed):
        answer = store.record(copy, received_at=later)
        assert answer.duplicate and answer.row == first.row
    assert dump(path) == before
    assert store.count() == 1 and len(outbox_rows(path)) == 1


def test_one_microsecond_later_is_another_heartbeat(store: HeartbeatStore) -> None:
    store.record(beat(1))
    other = store.record(beat(1, sent_at=T0 + timedelta(minutes=1, microseconds=1)))
    assert not other.duplicate
    assert store.count() == 2


def test_latest_is_the_newest_sent_at_per_device_whatever_the_arrival_order(
    store: HeartbeatStore,
) -> None:
    for n, device in [(5, "cam-b"), (2, "cam-b"), (1, "cam-a"), (7, "cam-a"), (3, "cam-a")]:
        store.record(beat(n, device))
    latest = store.latest()
    assert [(r.device_id, r.sent_at) for r in latest] == [
        ("cam-a", T0 + timedelta(minutes=7)),
        ("cam-b", T0 + timedelta(minutes=5)),
    ]
    assert [r.sent_at.minute for r in store.history("cam-a")] == [1, 3, 7]
    assert store.history("cam-none") == [] and store.get("cam-a", T0) is None


def test_a_failed_transaction_leaves_neither_heartbeat_nor_warehouse_row(
    catalog: Catalog, store: HeartbeatStore, path: Path
) -> None:
    before = dump(path)
    with pytest.raises(RuntimeError, match="after"), catalog.atomic() as conn:
        store.record(beat(1), conn=conn)
        raise RuntimeError("after the heartbeat, before commit")
    assert dump(path) == before
    assert store.latest() == []


def test_an_outbox_on_another_file_stores_nothing(catalog: Catalog, tmp_path: Path) -> None:
    elsewhere = Outbox(tmp_path / "other.sqlite")
    try:
        with pytest.raises(InvalidInputError, match="outbox file"):
            HeartbeatStore(catalog, elsewhere).record(beat(1))
    finally:
        elsewhere.close()
    assert HeartbeatStore(catalog).count() == 0


def test_without_an_outbox_only_the_catalog_is_written(catalog: Catalog, path: Path) -> None:
    HeartbeatStore(catalog, clock=lambda: RECEIVED).record(beat(1))
    assert HeartbeatStore(catalog).count() == 1
    conn = sqlite3.connect(path)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert "warehouse_outbox" not in names


def test_bad_arguments_are_refused(store: HeartbeatStore) -> None:
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        store.record(beat(1), received_at=datetime(2026, 1, 1))
    with pytest.raises(InvalidInputError, match="DeviceHeartbeat"):
        store.record({"device_id": "cam-1"})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        store.get("cam-1", datetime(2026, 1, 1))
    naive_clock = HeartbeatStore(store.catalog, clock=lambda: datetime(2026, 1, 1))
    with pytest.raises(InvalidInputError, match="received_at"):
        naive_clock.record(beat(1))
    assert store.count() == 0


def test_the_table_refuses_rows_the_wire_would_refuse(catalog: Catalog) -> None:
    conn = catalog.db.connection
    insert = (
        "INSERT INTO device_heartbeats VALUES ('cam', 't', 't', 't', NULL, 'v', ?, ?, 0, 0, 0, 1)"
    )
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(insert, ("{}", -1))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(insert, ("not json", 0))


def test_a_catalog_from_before_heartbeats_gains_the_tables_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite"
    with SQLiteFile(path) as db:
        migrate(db, CATALOG_MIGRATIONS[:1])
        db.connection.execute(
            "INSERT INTO devices VALUES ('cam-1', '2025-01-01T00:00:00+00:00',"
            " '2025-01-01T00:00:00+00:00', 4)"
        )
    with Catalog(path) as catalog:
        assert list(applied_migrations(catalog.db)) == [m.name for m in CATALOG_MIGRATIONS]
        device = catalog.device("cam-1")
        assert device is not None and device.last_seq == 4
        HeartbeatStore(catalog).record(beat(1))
        assert HeartbeatStore(catalog).count() == 1


# --- invariants against a brute-force oracle -----------------------------------------------

_SENDS = st.lists(
    st.tuples(st.sampled_from(["cam-a", "cam-b", "cam-c"]), st.integers(0, 5), st.integers(0, 9)),
    min_size=1,
    max_size=25,
)


@given(sends=_SENDS)
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_sequence_of_sends_stores_each_key_once_with_its_first_arrival(
    tmp_path_factory: pytest.TempPathFactory, sends: list[tuple[str, int, int]]
) -> None:
    """(device, minute, counter value), possibly repeated: the first send of each key wins,
    the outbox gets one row per key, latest is the per-device maximum."""
    path = tmp_path_factory.mktemp("hb") / "catalog.sqlite"
    with Catalog(path) as catalog:
        outbox = Outbox(path)
        store = HeartbeatStore(catalog, outbox)
        first: dict[tuple[str, int], tuple[int, datetime]] = {}
        for i, (device, minute, value) in enumerate(sends):
            at = RECEIVED + timedelta(seconds=i)
            got = store.record(beat(minute, device, counters={"v": value}), received_at=at)
            key = (device, minute)
            assert got.duplicate == (key in first)
            first.setdefault(key, (value, at))
            assert (got.row.counters["v"], got.row.received_at) == first[key]
        assert store.count() == len(first) == outbox.pending()
        newest = {d: max(m for dd, m in first if dd == d) for d, _ in first}
        assert [(r.device_id, r.sent_at) for r in store.latest()] == [
            (d, T0 + timedelta(minutes=newest[d])) for d in sorted(newest)
        ]
        outbox.close()
