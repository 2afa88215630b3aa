"""The ``MetadataSink`` interface: where the server's decisions are recorded for analysts.

Every sink holds the tables of :mod:`server.warehouse.tables` and shares one contract, tested by
one test class run against each implementation:

- :meth:`MetadataSink.write` is batched and idempotent: rows are upserted on the table's natural
  key, so writing the same rows again leaves one row per key (the last values win), and within
  one batch the last row given for a key wins. Rows are validated once here
  (:func:`~server.warehouse.tables.validate_rows`) before anything is written; a bad row fails
  the whole batch with :class:`~curator.errors.InvalidInputError`.
- A sink that cannot reach its store now raises :class:`~server.errors.WarehouseUnavailable`;
  the caller keeps the rows (see :class:`~server.warehouse.outbox.Outbox`) and tries later.
- :meth:`MetadataSink.read` returns every row of a table ordered by its natural key, values as
  :func:`~server.warehouse.tables.validate_rows` gives them (timestamps in UTC). It reads the
  whole table: it is meant for tests and local analysis, not for the ingest path.
- Tables are created on first use; :meth:`MetadataSink.ensure_tables` does it explicitly and is
  idempotent.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from server.errors import WarehouseUnavailable
from server.warehouse.tables import TABLES, Row, Table, get_table, last_per_key, validate_rows

__all__ = ["MetadataSink"]


class MetadataSink(ABC):
    """A store for the warehouse tables. Thread-safe: one lock serialises its calls."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tables_ready = False
        self._ping_thread: threading.Thread | None = None

    def ensure_tables(self) -> None:
        """Create every table that does not exist yet; existing tables and rows are kept.

        Raises:
            WarehouseUnavailable: the store cannot be reached.
        """
        with self._lock:
            self._create_tables(tuple(TABLES.values()))
            self._tables_ready = True

    def write(self, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Upsert ``rows`` into ``table`` on its natural key, all or nothing.

        Args:
            table: a name from :data:`~server.warehouse.tables.TABLES`.
            rows: dicts of column name to value; an empty batch does nothing.

        Raises:
            InvalidInputError: an unknown table or a bad row; nothing is written.
            WarehouseUnavailable: the store cannot be reached; nothing is written, or the whole
                batch is (writing it again is harmless).
        """
        spec = get_table(table)
        clean = last_per_key(spec, validate_rows(spec, rows))
        if not clean:
            return
        with self._lock:
            self._ready()
            self._upsert(spec, clean)

    def read(self, table: str) -> list[Row]:
        """Every row of ``table``, ordered by its natural key.

        Raises:
            InvalidInputError: an unknown table.
            WarehouseUnavailable: the store cannot be reached.
        """
        spec = get_table(table)
        with self._lock:
            self._ready()
            return self._select(spec)

    def count(self, table: str) -> int:
        """The number of rows in ``table``.

        Raises:
            InvalidInputError: an unknown table.
            WarehouseUnavailable: the store cannot be reached.
        """
        spec = get_table(table)
        with self._lock:
            self._ready()
            return self._count(spec)

    ping_wait_s = 3.0
    """How long :meth:`ping` waits for an answer, a call in progress (the drainer retrying an
    outage, say) included."""

    def ping(self) -> None:
        """Check that the store answers now, within :attr:`ping_wait_s` seconds.

        The check runs in a helper thread so that a client library stuck retrying (until its
        own network timeout) cannot hold up a health check; while one such check is still
        stuck, the next fails at once instead of starting another.

        Raises:
            WarehouseUnavailable: it does not answer in time, or answers with an error.
        """
        stuck = self._ping_thread
        if stuck is not None and stuck.is_alive():
            raise WarehouseUnavailable("an earlier check is still waiting for the warehouse")
        outcome: list[BaseException | None] = []

        def check() -> None:
            try:
                with self._lock:
                    self._ping()
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=check, name="warehouse-ping", daemon=True)
        self._ping_thread = thread
        thread.start()
        thread.join(self.ping_wait_s)
        if not outcome:
            raise WarehouseUnavailable(f"no answer from the warehouse in {self.ping_wait_s:g} s")
        if outcome[0] is not None:
            raise outcome[0]

    def close(self) -> None:
        """Release the connection; later calls reconnect."""
        with self._lock:
            self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _ready(self) -> None:
        if not self._tables_ready:
            self._create_tables(tuple(TABLES.values()))
            self._tables_ready = True

    @abstractmethod
    def _create_tables(self, tables: tuple[Table, ...]) -> None:
        """CREATE TABLE IF NOT EXISTS for each table."""

    @abstractmethod
    def _upsert(self, table: Table, rows: list[Row]) -> None:
        """Upsert validated rows, at most one per natural key, in one transaction."""

    @abstractmethod
    def _select(self, table: Table) -> list[Row]:
        """Every row ordered by the natural key, decoded to the Python types of the table."""

    @abstractmethod
    def _count(self, table: Table) -> int:
        """The number of rows."""

    @abstractmethod
    def _ping(self) -> None:
        """A trivial round trip, raising WarehouseUnavailable when it fails."""

    @abstractmethod
    def _close(self) -> None:
        """Close the connection, ignoring errors."""
