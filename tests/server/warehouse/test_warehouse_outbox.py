"""Outbox and OutboxDrainer: durable enqueue, drain after write, at-least-once without doubles."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from curator.errors import InvalidInputError
from server.errors import WarehouseUnavailable
from server.warehouse import MetadataSink, Outbox, OutboxDrainer, Row, SqliteSink, Table
from server.warehouse.snowflake import SnowflakeSink

Rows = Callable[..., list[dict[str, Any]]]
DATABASE = "CURATOR_TEST"


class FlakySink(MetadataSink):
    """Wraps a sink: records each write, and fails as told, before or after writing."""

    def __init__(self, inner: MetadataSink) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[str, int]] = []
        self.fail_before: set[str] = set()  # tables whose writes fail without writing
        self.crash_after = 0  # the next N writes are done, then raise (a crash before delete)

    def _upsert(self, table: Table, rows: list[Row]) -> None:
        self.calls.append((table.name, len(rows)))
        if table.name in self.fail_before:
            raise WarehouseUnavailable(f"{table.name}: down")
        self.inner.write(table.name, rows)
        if self.crash_after:
            self.crash_after -= 1
            raise RuntimeError("crashed after write")

    def _create_tables(self, tables: tuple[Table, ...]) -> None:
        self.inner.ensure_tables()

    def _select(self, table: Table) -> list[Row]:
        return self.inner.read(table.name)

    def _count(self, table: Table) -> int:
        return self.inner.count(table.name)

    def _ping(self) -> None:
        self.inner.ping()

    def _close(self) -> None:
        self.inner.close()


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite")


@pytest.fixture
def sink(tmp_path: Path) -> SqliteSink:
    return SqliteSink(tmp_path / "warehouse.sqlite")


def test_enqueue_then_drain_delivers_every_row_once(
    outbox: Outbox, sink: SqliteSink, rows_of: Rows
) -> None:
    assert outbox.enqueue("frames", rows_of("frames", 3)) == 3
    assert outbox.enqueue("labels", rows_of("labels", 2)) == 2
    assert outbox.enqueue("labels", []) == 0
    assert outbox.pending() == 5
    assert outbox.drain(sink) == 5
    assert outbox.pending() == 0 and outbox.oldest_enqueued_at() is None
    assert sink.read("frames") == SqliteSink(sink.path).read("frames")
    assert [r["frame_id"] for r in sink.read("frames")] == [
        r["frame_id"] for r in rows_of("frames", 3)
    ]
    assert sink.count("labels") == 2
    assert outbox.drain(sink) == 0


def test_rows_survive_the_round_trip_through_the_outbox_unchanged(
    outbox: Outbox, sink: SqliteSink, rows_of: Rows
) -> None:
    direct = SqliteSink(sink.path.with_name("direct.sqlite"))
    for table in ("frames", "device_heartbeats", "model_versions", "training_runs"):
        outbox.enqueue(table, rows_of(table, 4))
        direct.write(table, rows_of(table, 4))
    outbox.drain(sink)
    for table in ("frames", "device_heartbeats", "model_versions", "training_runs"):
        assert sink.read(table) == direct.read(table)


def test_a_bad_row_enqueues_nothing(outbox: Outbox, rows_of: Rows) -> None:
    with pytest.raises(InvalidInputError, match="colour"):
        outbox.enqueue("labels", [*rows_of("labels", 2), {"label_id": "x", "colour": "red"}])
    with pytest.raises(InvalidInputError, match="unknown warehouse table"):
        outbox.enqueue("label", rows_of("labels", 1))
    assert outbox.pending() == 0


def test_enqueue_joins_the_callers_transaction(outbox: Outbox, rows_of: Rows) -> None:
    conn = sqlite3.connect(outbox.path, isolation_level=None)
    conn.execute("CREATE TABLE catalog (frame_id TEXT PRIMARY KEY)")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO catalog VALUES ('f1')")
    outbox.enqueue("frames", rows_of("frames", 2), conn=conn)
    conn.execute("ROLLBACK")
    assert outbox.pending() == 0
    assert conn.execute("SELECT COUNT(*) FROM catalog").fetchone() == (0,)

    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO catalog VALUES ('f1')")
    outbox.enqueue("frames", rows_of("frames", 2), conn=conn)
    assert outbox.pending() == 0  # not visible before the caller commits
    conn.execute("COMMIT")
    assert outbox.pending() == 2
    conn.close()


def test_enqueue_refuses_a_connection_to_another_file(
    outbox: Outbox, tmp_path: Path, rows_of: Rows
) -> None:
    other = sqlite3.connect(tmp_path / "other.sqlite")
    with pytest.raises(InvalidInputError, match="outbox file"):
        outbox.enqueue("labels", rows_of("labels", 1), conn=other)
    other.close()


def test_enqueued_rows_survive_a_process_that_dies_without_closing(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    code = (
        "import os, sys\n"
        "from server.warehouse import Outbox\n"
        "box = Outbox(sys.argv[1])\n"
        "box.enqueue('labels', [{'label_id': f'l{i}', 'class_name': 'shirt'} for i in range(7)])\n"
        "os._exit(0)\n"  # no close, no atexit, no interpreter cleanup
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)
    assert Outbox(path).pending() == 7


def test_drain_leaves_the_rows_when_the_sink_fails(
    outbox: Outbox, sink: SqliteSink, rows_of: Rows
) -> None:
    flaky = FlakySink(sink)
    flaky.fail_before = {"labels"}
    outbox.enqueue("labels", rows_of("labels", 2))
    outbox.enqueue("frames", rows_of("frames", 3))
    outbox.enqueue("labels", rows_of("labels", 1, start=2))
    with pytest.raises(WarehouseUnavailable):
        outbox.drain(flaky)
    assert outbox.pending() == 6  # nothing delivered: labels come first and failed
    assert sink.count("frames") == 0
    flaky.fail_before = set()
    assert outbox.drain(flaky) == 6
    assert flaky.calls[-2:] == [("labels", 3), ("frames", 3)]


def test_tables_delivered_before_a_failure_are_not_kept(
    outbox: Outbox, sink: SqliteSink, rows_of: Rows
) -> None:
    flaky = FlakySink(sink)
    flaky.fail_before = {"labels"}
    outbox.enqueue("frames", rows_of("frames", 3))
    outbox.enqueue("labels", rows_of("labels", 2))
    with pytest.raises(WarehouseUnavailable):
        outbox.drain(flaky)
    assert outbox.pending() == 2 and sink.count("frames") == 3


@pytest.mark.parametrize("kind", ["sqlite", "snowflake"])
def test_a_crash_between_write_and_delete_leaves_no_doubles(
    kind: str, outbox: Outbox, tmp_path: Path, rows_of: Rows, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        inner: MetadataSink = SqliteSink(tmp_path / "warehouse.sqlite")
    else:
        server = request.getfixturevalue("fakesnow_server")
        inner = SnowflakeSink(server.connect_kwargs(), DATABASE, f"CRASH_{uuid.uuid4().hex[:8]}")
    flaky = FlakySink(inner)
    outbox.enqueue("frames", rows_of("frames", 4))
    outbox.enqueue("device_heartbeats", rows_of("device_heartbeats", 3))
    flaky.crash_after = 1
    with pytest.raises(RuntimeError, match="crashed after write"):
        outbox.drain(flaky)
    assert outbox.pending() == 7 and inner.count("frames") == 4  # written, not deleted
    assert inner.count("device_heartbeats") == 0
    assert outbox.drain(flaky) == 7  # delivered again
    assert outbox.pending() == 0
    assert inner.count("frames") == 4 and inner.count("device_heartbeats") == 3
    assert [r["frame_id"] for r in inner.read("frames")] == [
        r["frame_id"] for r in rows_of("frames", 4)
    ]
    inner.close()


def test_a_redelivered_old_version_does_not_beat_a_newer_one(
    outbox: Outbox, sink: SqliteSink, rows_of: Rows
) -> None:
    run = rows_of("training_runs", 1)[0]
    flaky = FlakySink(sink)
    outbox.enqueue("training_runs", [{**run, "status": "running"}])
    flaky.crash_after = 1
    with pytest.raises(RuntimeError):
        outbox.drain(flaky)
    outbox.enqueue("training_runs", [{**run, "status": "succeeded"}])
    assert outbox.drain(flaky) == 2
    assert [r["status"] for r in sink.read("training_runs")] == ["succeeded"]


def test_drain_goes_oldest_first_in_batches(
    outbox: Outbox, sink: SqliteSink, rows_of: Rows
) -> None:
    flaky = FlakySink(sink)
    outbox.enqueue("labels", rows_of("labels", 7))
    assert outbox.drain(flaky, batch_size=3) == 7
    assert flaky.calls == [("labels", 3), ("labels", 3), ("labels", 1)]
    with pytest.raises(InvalidInputError, match="batch_size"):
        outbox.drain(flaky, batch_size=0)


def test_a_drain_delivers_only_what_was_pending_when_it_began(
    outbox: Outbox, sink: SqliteSink, rows_of: Rows
) -> None:
    class EnqueuingSink(SqliteSink):
        """A sink during whose writes ingest enqueues more rows."""

        def _upsert(self, table: Table, rows: list[Row]) -> None:
            super()._upsert(table, rows)
            outbox.enqueue("labels", rows_of("labels", 1, start=100 + self.count("labels")))

    busy = EnqueuingSink(sink.path)
    outbox.enqueue("labels", rows_of("labels", 5))
    assert outbox.drain(busy, batch_size=2) == 5
    assert outbox.pending() == 3  # one per write call, left for the next drain


def test_oldest_enqueued_at_uses_the_clock(tmp_path: Path, rows_of: Rows) -> None:
    now = iter([100.0, 250.0])
    box = Outbox(tmp_path / "o.sqlite", clock=lambda: next(now))
    box.enqueue("labels", rows_of("labels", 1))
    box.enqueue("labels", rows_of("labels", 1, start=1))
    assert box.oldest_enqueued_at() == 100.0


def test_the_drainer_backs_off_exponentially_with_jitter_and_resets_on_success(
    outbox: Outbox, sink: SqliteSink, rows_of: Rows
) -> None:
    flaky = FlakySink(sink)
    flaky.fail_before = {"labels"}
    ticks = iter(range(1000, 2000))
    drainer = OutboxDrainer(
        outbox,
        flaky,
        interval=2.0,
        base_backoff=0.5,
        max_backoff=4.0,
        rng=random.Random(3),
        clock=lambda: float(next(ticks)),
    )
    outbox.enqueue("labels", rows_of("labels", 3))
    delays = [drainer.run_once() for _ in range(7)]
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert all(cap / 2 <= d < cap for d, cap in zip(delays, caps, strict=True))
    assert len(set(delays)) == 7  # jittered
    stats = drainer.stats()
    assert (stats.failures, stats.consecutive_failures, stats.drained_rows) == (7, 7, 0)
    assert stats.last_error == "WarehouseUnavailable: labels: down"
    assert stats.last_success_at is None

    flaky.fail_before = set()
    assert drainer.run_once() == 2.0
    stats = drainer.stats()
    assert (stats.failures, stats.consecutive_failures, stats.drained_rows) == (7, 0, 3)
    assert stats.last_success_at == 1000.0
    flaky.fail_before = {"labels"}
    outbox.enqueue("labels", rows_of("labels", 1))
    assert 0.25 <= drainer.run_once() < 0.5  # the backoff starts over


def test_the_drainer_survives_any_error(outbox: Outbox, sink: SqliteSink, rows_of: Rows) -> None:
    flaky = FlakySink(sink)
    flaky.crash_after = 1
    outbox.enqueue("labels", rows_of("labels", 2))
    drainer = OutboxDrainer(outbox, flaky, rng=random.Random(0))
    assert 0.25 <= drainer.run_once() < 0.5
    assert drainer.stats().last_error == "RuntimeError: crashed after write"
    assert drainer.run_once() == 1.0 and outbox.pending() == 0


def test_the_drainer_thread_delivers_and_stops(
    outbox: Outbox, sink: SqliteSink, rows_of: Rows
) -> None:
    drainer = OutboxDrainer(outbox, sink, interval=30.0)
    drainer.start()
    drainer.start()  # idempotent
    outbox.enqueue("frames", rows_of("frames", 5))
    drainer.wake()
    wait_until(lambda: outbox.pending() == 0)
    assert drainer.stop() is True
    assert drainer.stop() is True
    assert sink.count("frames") == 5 and drainer.stats().drained_rows == 5


def test_bad_drainer_settings_are_refused(outbox: Outbox, sink: SqliteSink) -> None:
    with pytest.raises(InvalidInputError, match="base_backoff"):
        OutboxDrainer(outbox, sink, base_backoff=5.0, max_backoff=1.0)


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.mark.integration
# The connector cancels a query that outlives network_timeout from a timer thread; with the
# server gone, that cancel request fails too and its exception escapes the connector's thread.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_drainer_backfills_the_warehouse_after_an_outage(
    outage_fakesnow: Any, outbox: Outbox, rows_of: Rows
) -> None:
    sink = SnowflakeSink(outage_fakesnow.connect_kwargs(), DATABASE, "BACKFILL", retries=0)
    drainer = OutboxDrainer(
        outbox, sink, interval=0.05, base_backoff=0.05, max_backoff=0.3, rng=random.Random(1)
    )
    drainer.start()
    outbox.enqueue("frames", rows_of("frames", 10))
    wait_until(lambda: outbox.pending() == 0)

    outage_fakesnow.stop()
    started = time.monotonic()
    for i in range(5):  # ingest goes on while the warehouse is down
        outbox.enqueue("frames", rows_of("frames", 4, start=10 + 4 * i))
        outbox.enqueue("frames", rows_of("frames", 2, start=4 * i))  # re-sent frames
        outbox.enqueue("device_heartbeats", rows_of("device_heartbeats", 1, start=i))
    assert time.monotonic() - started < 1.0  # enqueue never waited on the warehouse
    wait_until(lambda: drainer.stats().failures >= 2)
    assert outbox.pending() > 0

    outage_fakesnow.start()
    wait_until(lambda: outbox.pending() == 0)
    assert drainer.stop() is True
    frames = sink.read("frames")
    assert [r["frame_id"] for r in frames] == sorted(r["frame_id"] for r in rows_of("frames", 30))
    assert sink.count("frames") == 30 and sink.count("device_heartbeats") == 5
    assert drainer.stats().consecutive_failures == 0
    sink.close()
