"""SqliteSink beyond the shared contract: the file, its locks, and all-or-nothing writes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server.errors import WarehouseUnavailable
from server.warehouse import SqliteSink
from server.warehouse.sqlite import create_table_sql, upsert_sql
from server.warehouse.tables import TABLES

Rows = Callable[..., list[dict[str, Any]]]


def test_the_file_is_created_in_wal_mode_with_the_tables(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "warehouse.sqlite"
    SqliteSink(path).ensure_tables()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names == set(TABLES)
    conn.close()


def test_sqlite_enforces_the_natural_key(tmp_path: Path, rows_of: Rows) -> None:
    sink = SqliteSink(tmp_path / "w.sqlite")
    sink.write("device_heartbeats", rows_of("device_heartbeats", 1))
    conn = sqlite3.connect(sink.path)
    (device_id, sent_at) = conn.execute(
        "SELECT device_id, sent_at FROM device_heartbeats"
    ).fetchone()
    assert sent_at == "2024-05-01T12:00:00.123456+00:00"  # UTC text, fixed width: sorts by time
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO device_heartbeats (device_id, sent_at) VALUES (?, ?)", (device_id, sent_at)
        )
    conn.close()


def test_a_locked_file_is_unavailable_until_released(tmp_path: Path, rows_of: Rows) -> None:
    sink = SqliteSink(tmp_path / "w.sqlite", busy_timeout=0.05)
    sink.ensure_tables()
    other = sqlite3.connect(sink.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(WarehouseUnavailable, match="locked"):
        sink.write("labels", rows_of("labels", 2))
    other.execute("ROLLBACK")
    other.close()
    sink.write("labels", rows_of("labels", 2))
    assert sink.count("labels") == 2


def test_a_write_that_fails_midway_writes_nothing(tmp_path: Path, rows_of: Rows) -> None:
    sink = SqliteSink(tmp_path / "w.sqlite")
    sink.write("labels", rows_of("labels", 1, start=9))
    conn = sqlite3.connect(sink.path)
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON labels WHEN NEW.label_id = 'label_id-0002' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    conn.commit()
    conn.close()
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        sink.write("labels", rows_of("labels", 4))
    assert [r["label_id"] for r in sink.read("labels")] == ["label_id-0009"]


def test_a_path_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path)  # a folder, not a file
    with pytest.raises(WarehouseUnavailable, match="cannot open"):
        sink.ping()


def test_the_sql_upserts_every_non_key_column() -> None:
    sql = upsert_sql(TABLES["device_heartbeats"])
    assert sql == (
        "INSERT INTO device_heartbeats (device_id, sent_at, counters, received_at, started_at, "
        "model_version, software_version, buffer_frames, buffer_bytes, buffer_max_bytes, "
        "last_device_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (device_id, sent_at) DO UPDATE SET counters = excluded.counters, "
        "received_at = excluded.received_at, started_at = excluded.started_at, "
        "model_version = excluded.model_version, software_version = excluded.software_version, "
        "buffer_frames = excluded.buffer_frames, buffer_bytes = excluded.buffer_bytes, "
        "buffer_max_bytes = excluded.buffer_max_bytes, last_device_seq = excluded.last_device_seq"
    )
    assert "PRIMARY KEY (device_id, sent_at)" in create_table_sql(TABLES["device_heartbeats"])
