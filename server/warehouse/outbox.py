"""A durable outbox for warehouse rows, so ingest never waits on Snowflake.

The ingest path calls :meth:`Outbox.enqueue`: a local SQLite append (WAL, ``synchronous=FULL``:
each commit is fsync'd). Passing the caller's open ``sqlite3`` connection on the same file makes
the rows part of the caller's transaction, so a catalog write and its warehouse rows commit
together or not at all. An :class:`OutboxDrainer` thread moves the rows to a
:class:`~server.warehouse.base.MetadataSink` in the background.

Delivery is at least once. :meth:`Outbox.drain` deletes rows only after ``sink.write`` returned,
so a crash between the two delivers those rows again on the next drain; that is harmless because
sink writes are idempotent upserts on the natural key (a ``MERGE`` on Snowflake). Rows are drained
oldest first and a table's rows keep their order, so the newest version of a key wins even when
an older one is delivered twice. Run one drainer per outbox file: two drainers racing could
deliver an older version of a key after a newer one.

When the sink fails, :meth:`Outbox.drain` keeps the undelivered rows and re-raises; rows of other
tables already delivered in that call are deleted. Rows are validated at enqueue, so a row that
reaches the outbox is one every sink accepts.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curator.errors import InvalidInputError
from server.errors import Unavailable
from server.warehouse.base import MetadataSink
from server.warehouse.tables import decode_row, encode_row, get_table, validate_rows

__all__ = ["DrainerStats", "Outbox", "OutboxDrainer"]

log = logging.getLogger(__name__)

_DDL = (
    "CREATE TABLE IF NOT EXISTS warehouse_outbox ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, table_name TEXT NOT NULL, "
    "row TEXT NOT NULL, enqueued_at REAL NOT NULL)"
)
_INSERT = "INSERT INTO warehouse_outbox (table_name, row, enqueued_at) VALUES (?, ?, ?)"


class Outbox:
    """Warehouse rows waiting for delivery, in the table ``warehouse_outbox`` of a SQLite file.

    Args:
        path: the SQLite file; it may be the catalog's own file.
        busy_timeout: seconds to wait for another writer's lock.
        clock: wall-clock seconds, stamped on each row as ``enqueued_at``.

    Thread-safe. ``delivered_rows`` counts the rows this object has delivered.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self.delivered_rows = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute(_DDL)
        except (sqlite3.Error, OSError) as exc:
            raise Unavailable(f"cannot open the warehouse outbox {self.path}: {exc}") from exc

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r})"

    def _write(self, statements: Iterable[tuple[str, list[tuple[Any, ...]]]]) -> None:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    for sql, params in statements:
                        self._conn.executemany(sql, params)
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise Unavailable(f"warehouse outbox {self.path}: {exc}") from exc

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise Unavailable(f"warehouse outbox {self.path}: {exc}") from exc

    def _check_same_file(self, conn: sqlite3.Connection) -> None:
        main = next((r[2] for r in conn.execute("PRAGMA database_list") if r[1] == "main"), "")
        if not main or os.path.realpath(main) != os.path.realpath(self.path):
            raise InvalidInputError(
                f"conn must be a connection to the outbox file {self.path}, got one to {main!r}"
            )

    def enqueue(
        self,
        table: str,
        rows: Iterable[Mapping[str, Any]],
        *,
        conn: sqlite3.Connection | None = None,
    ) -> int:
        """Append ``rows`` for ``table``; returns how many.

        Args:
            table: a warehouse table name.
            rows: dicts of column name to value, validated here.
            conn: an open connection to this outbox's file. The rows are then written in its
                current transaction, which the caller commits (or rolls back), and its errors
                propagate as ``sqlite3`` errors. Without it the rows are committed (fsync'd)
                before this returns.

        Raises:
            InvalidInputError: an unknown table, a bad row (nothing is enqueued), or ``conn`` on
                another file.
            Unavailable: the outbox file cannot be written (locked past the timeout, disk full).
        """
        spec = get_table(table)
        clean = validate_rows(spec, rows)
        if not clean:
            return 0
        now = self._clock()
        params = [
            (
                spec.name,
                json.dumps(encode_row(spec, r), allow_nan=False, separators=(",", ":")),
                now,
            )
            for r in clean
        ]
        if conn is None:
            self._write([(_INSERT, params)])
        else:
            self._check_same_file(conn)
            conn.executemany(_INSERT, params)
        return len(params)

    def pending(self) -> int:
        """The number of rows not delivered yet."""
        return int(self._query("SELECT COUNT(*) FROM warehouse_outbox")[0][0])

    def oldest_enqueued_at(self) -> float | None:
        """The ``enqueued_at`` of the oldest pending row, or None when the outbox is empty."""
        value = self._query("SELECT MIN(enqueued_at) FROM warehouse_outbox")[0][0]
        return None if value is None else float(value)

    def drain(self, sink: MetadataSink, *, batch_size: int = 500) -> int:
        """Deliver the rows pending when called to ``sink``, oldest first.

        Each batch of up to ``batch_size`` rows is grouped by table; each table's rows go to
        ``sink.write`` in one call and are deleted once it returned. Rows enqueued meanwhile wait
        for the next call, so a drain ends even while ingest keeps enqueueing.

        Returns:
            The number of rows delivered.

        Raises:
            InvalidInputError: ``batch_size`` is not a positive int.
            WarehouseUnavailable: (or any error of ``sink.write``) the undelivered rows stay.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
        delivered = 0
        with self._drain_lock:
            (upto,) = self._query("SELECT COALESCE(MAX(id), 0) FROM warehouse_outbox")[0]
            while True:
                batch = self._query(
                    "SELECT id, table_name, row FROM warehouse_outbox WHERE id <= ? "
                    "ORDER BY id LIMIT ?",
                    (upto, batch_size),
                )
                groups: dict[str, list[tuple[int, str]]] = {}
                for row_id, table, row in batch:
                    groups.setdefault(table, []).append((row_id, row))
                for table, items in groups.items():
                    spec = get_table(table)
                    sink.write(table, [decode_row(spec, json.loads(r)) for _, r in items])
                    self._write(
                        [("DELETE FROM warehouse_outbox WHERE id = ?", [(i,) for i, _ in items])]
                    )
                    delivered += len(items)
                    self.delivered_rows += len(items)
                if len(batch) < batch_size:
                    return delivered

    def close(self) -> None:
        """Close the outbox's own connection."""
        with self._lock:
            self._conn.close()


@dataclass(frozen=True)
class DrainerStats:
    """A snapshot of an :class:`OutboxDrainer`'s counters (for Prometheus)."""

    drained_rows: int
    failures: int
    consecutive_failures: int
    last_error: str | None
    last_success_at: float | None


class OutboxDrainer:
    """A background thread that drains an :class:`Outbox` into a sink.

    After a successful drain it waits ``interval`` seconds (or until :meth:`wake`); after a
    failure it backs off exponentially, ``base_backoff * 2**(n - 1)`` for the n-th failure in a
    row capped at ``max_backoff``, scaled by a jitter factor uniform in [0.5, 1). Any error is
    counted and retried; the thread never dies of one.

    Args:
        outbox: the rows to deliver.
        sink: where to.
        batch_size: rows per ``sink.write`` call at most.
        interval: seconds between drains while all is well.
        base_backoff: seconds after the first failure.
        max_backoff: the cap of one backoff.
        rng: draws the jitter.
        clock: stamps ``last_success_at`` (monotonic seconds by default).
    """

    def __init__(
        self,
        outbox: Outbox,
        sink: MetadataSink,
        *,
        batch_size: int = 500,
        interval: float = 1.0,
        base_backoff: float = 0.5,
        max_backoff: float = 30.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < base_backoff <= max_backoff or interval < 0:
            raise InvalidInputError(
                "need 0 < base_backoff <= max_backoff and interval >= 0, got "
                f"base_backoff={base_backoff}, max_backoff={max_backoff}, interval={interval}"
            )
        self.outbox, self.sink = outbox, sink
        self.batch_size, self.interval = batch_size, interval
        self.base_backoff, self.max_backoff = base_backoff, max_backoff
        self._rng = rng or random.Random()
        self._clock = clock
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._stats = DrainerStats(0, 0, 0, None, None)
        self._stats_lock = threading.Lock()

    def stats(self) -> DrainerStats:
        """The counters now."""
        with self._stats_lock:
            return self._stats

    def backoff(self, consecutive_failures: int) -> float:
        """Seconds to wait after the ``consecutive_failures``-th failure in a row."""
        cap = min(self.max_backoff, self.base_backoff * 2.0 ** (consecutive_failures - 1))
        return cap * (0.5 + 0.5 * self._rng.random())

    def run_once(self) -> float:
        """Drain once, update the counters, and return the seconds to wait before the next."""
        before = self.outbox.delivered_rows
        try:
            self.outbox.drain(self.sink, batch_size=self.batch_size)
        except Exception as exc:
            with self._stats_lock:
                s = self._stats
                self._stats = DrainerStats(
                    s.drained_rows + self.outbox.delivered_rows - before,
                    s.failures + 1,
                    s.consecutive_failures + 1,
                    f"{type(exc).__name__}: {exc}",
                    s.last_success_at,
                )
                delay = self.backoff(self._stats.consecutive_failures)
            log.warning("warehouse outbox: drain failed (%s); next try in %.2fs", exc, delay)
            return delay
        with self._stats_lock:
            s = self._stats
            self._stats = DrainerStats(
                s.drained_rows + self.outbox.delivered_rows - before,
                s.failures,
                0,
                s.last_error,
                self._clock(),
            )
        return self.interval

    def _loop(self) -> None:
        while not self._stopping.is_set():
            delay = self.run_once()
            self._wake.wait(delay)
            self._wake.clear()

    def start(self) -> None:
        """Start the thread (a no-op when it runs already)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="warehouse-outbox", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Drain now instead of at the end of the current wait."""
        self._wake.set()

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Stop the thread after its current drain; returns whether it stopped within timeout."""
        self._stopping.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self._thread = None
        return True
