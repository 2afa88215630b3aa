"""Heartbeat rows in the warehouse, on SqliteSink and SnowflakeSink (fakesnow): a row round
trips, the MERGE keeps one row per (device_id, sent_at), the catalog's outbox delivers each
heartbeat once, and a table from before the new columns gains them in place."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import snowflake.connector

from curator.errors import InvalidInputError
from curator.wire import DeviceHeartbeat
from server.catalog import Catalog
from server.catalog.heartbeats import HeartbeatStore
from server.warehouse import MetadataSink, Outbox, SqliteSink
from server.warehouse.snowflake import SnowflakeSink
from server.warehouse.tables import DEVICE_HEARTBEATS, validate_rows

SinkFactory = Callable[[], MetadataSink]
T0 = dt.datetime(2026, 1, 1, 12, 0, 0, 654321, tzinfo=dt.UTC)
DATABASE = "CURATOR_TEST"
OLD_COLUMNS = ("device_id", "sent_at", "counters", "received_at")
NEW_COLUMNS = (
    "started_at",
    "model_version",
    "software_version",
    "buffer_frames",
    "buffer_bytes",
    "buffer_max_bytes",
    "last_device_seq",
)


def beat(n: int, device: str = "cam-1", **fields: Any) -> DeviceHeartbeat:
    values: dict[str, Any] = {
        "device_id": device,
        "sent_at": T0 + dt.timedelta(seconds=30 * n),
        "started_at": T0 - dt.timedelta(days=2),
        "model_version": None if n == 0 else f"m{n}",
        "software_version": "0.1.0",
        "counters": {"frames.seen": 10 * n, "frames.kept": n, "uploaded": 2**62 + n},
        "buffer_frames": n,
        "buffer_bytes": 4096 * n,
        "buffer_max_bytes": 2**40,
        "last_device_seq": 2**53 + n,  # past float precision: must stay exact
    }
    values.update(fields)
    return DeviceHeartbeat(**values)


def test_the_table_adds_the_heartbeat_fields_after_the_first_four_columns() -> None:
    assert DEVICE_HEARTBEATS.column_names == OLD_COLUMNS + NEW_COLUMNS
    assert DEVICE_HEARTBEATS.key == ("device_id", "sent_at")
    wire_fields = set(DeviceHeartbeat.model_fields) - {"schema_version"}
    assert wire_fields | {"received_at"} == set(DEVICE_HEARTBEATS.column_names)


def test_heartbeat_rows_round_trip_and_merge_on_the_natural_key(
    make_sink: SinkFactory, tmp_path: Path
) -> None:
    received = T0 + dt.timedelta(hours=1)
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        store = HeartbeatStore(catalog, clock=lambda: received)
        rows = [store.record(beat(n, d)).row.warehouse_row() for n in (0, 1, 2) for d in "ab"]
    sink = make_sink()
    sink.write("device_heartbeats", rows)
    sink.write("device_heartbeats", rows[::-1])  # loaded twice: still one row per key
    expected = sorted(
        validate_rows(DEVICE_HEARTBEATS, rows), key=lambda r: (r["device_id"], r["sent_at"])
    )
    assert sink.count("device_heartbeats") == 6
    got = sink.read("device_heartbeats")
    assert got == expected
    assert got[0]["model_version"] is None and got[1]["last_device_seq"] == 2**53 + 1
    assert got[1]["counters"]["uploaded"] == 2**62 + 1


def test_the_outbox_delivers_each_heartbeat_once_even_when_sent_twice(
    make_sink: SinkFactory, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.sqlite"
    sink = make_sink()
    with Catalog(path) as catalog:
        outbox = Outbox(path)
        store = HeartbeatStore(catalog, outbox)
        first = [store.record(beat(n)) for n in range(3)]
        assert outbox.drain(sink) == 3
        again = [store.record(beat(n)) for n in range(3)]  # a device retrying after a cut
        assert all(a.duplicate for a in again) and outbox.pending() == 0
        assert outbox.drain(sink) == 0
        outbox.close()
    got = sink.read("device_heartbeats")
    assert got == validate_rows(DEVICE_HEARTBEATS, [r.row.warehouse_row() for r in first])


def _old_row() -> dict[str, Any]:
    return {"device_id": "cam-old", "sent_at": T0, "counters": {"seen": 1}, "received_at": T0}


def test_an_older_sqlite_table_gains_the_new_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE device_heartbeats (device_id TEXT NOT NULL, sent_at TEXT NOT NULL, "
        "counters TEXT, received_at TEXT, PRIMARY KEY (device_id, sent_at))"
    )
    at = T0.isoformat(timespec="microseconds")
    conn.execute(
        "INSERT INTO device_heartbeats VALUES ('cam-old', ?, '{\"seen\": 1}', ?)", (at, at)
    )
    conn.commit()
    conn.close()
    sink = SqliteSink(path)
    new = beat(1).model_dump()
    new = {k: v for k, v in new.items() if k != "schema_version"} | {"received_at": T0}
    sink.write("device_heartbeats", [new])
    assert sink.read("device_heartbeats") == validate_rows(DEVICE_HEARTBEATS, [new, _old_row()])
    sink.ensure_tables()  # idempotent: nothing more to add
    conn = sqlite3.connect(path)
    columns = [r[1] for r in conn.execute("PRAGMA table_info(device_heartbeats)")]
    conn.close()
    assert tuple(columns) == OLD_COLUMNS + NEW_COLUMNS
    sink.close()


def test_an_sqlite_table_missing_a_key_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE device_heartbeats (device_id TEXT PRIMARY KEY, counters TEXT)")
    conn.commit()
    conn.close()
    sink = SqliteSink(path)
    with pytest.raises(InvalidInputError, match=r"lacks key column\(s\) \['sent_at'\]"):
        sink.ensure_tables()
    sink.close()


def test_an_older_snowflake_table_gains_the_new_columns_and_keeps_its_rows(
    fakesnow_server: Any,
) -> None:
    schema = f"HB_OLD_{uuid.uuid4().hex[:12].upper()}"
    kwargs = {**fakesnow_server.connect_kwargs(), "database": DATABASE, "schema": schema}
    with snowflake.connector.connect(**kwargs) as conn:
        cur = conn.cursor()
        cur.execute(
            f"CREATE TABLE {DATABASE}.{schema}.DEVICE_HEARTBEATS (device_id VARCHAR, "
            "sent_at TIMESTAMP_TZ, counters VARIANT, received_at TIMESTAMP_TZ)"
        )
        at = T0.isoformat(timespec="microseconds")
        cur.execute(
            f"INSERT INTO {DATABASE}.{schema}.DEVICE_HEARTBEATS "
            f"SELECT 'cam-old', '{at}', PARSE_JSON('{{\"seen\": 1}}'), '{at}'"
        )
    sink = SnowflakeSink(fakesnow_server.connect_kwargs(), DATABASE, schema, retries=0)
    new = {k: v for k, v in beat(1).model_dump().items() if k != "schema_version"}
    new["received_at"] = T0
    sink.write("device_heartbeats", [new])
    sink.write("device_heartbeats", [new])
    assert sink.read("device_heartbeats") == validate_rows(DEVICE_HEARTBEATS, [new, _old_row()])
    sink.close()
    again = SnowflakeSink(fakesnow_server.connect_kwargs(), DATABASE, schema, retries=0)
    again.ensure_tables()  # nothing left to add
    assert again.count("device_heartbeats") == 2
    again.close()
