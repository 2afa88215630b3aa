"""``SqliteSink``: the warehouse tables in a local SQLite file, the embedded default.

The demo and the tests run without a Snowflake account: the same tables, the same upsert on the
natural key (``INSERT ... ON CONFLICT (key) DO UPDATE``), one transaction per write. The file is
in WAL mode with a busy timeout, so analysts can read it while the server writes, and its commits
are fsync'd (``synchronous=FULL``): the outbox deletes rows once a write returned. SQLite enforces
the natural key as the table's primary key.

Tables created by an older version that lack columns added since get them on first use
(``ALTER TABLE ... ADD COLUMN``, NULL in the rows already there), in the same transaction as the
``CREATE TABLE IF NOT EXISTS``. A table missing a natural-key column cannot be fixed that way and
is refused.

Storage: booleans as 0/1, timestamps as ISO 8601 text in UTC with microseconds (so text order is
time order and equal instants are equal keys), JSON as text.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from curator.errors import InvalidInputError
from server.errors import WarehouseUnavailable
from server.warehouse.base import MetadataSink
from server.warehouse.tables import Column, Row, Table

__all__ = ["SqliteSink"]

_SQL_TYPES = {
    "text": "TEXT",
    "integer": "INTEGER",
    "real": "REAL",
    "boolean": "INTEGER",
    "timestamp": "TEXT",
    "json": "TEXT",
}


def _to_sql(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if column.type == "boolean":
        return int(value)
    if column.type == "timestamp":
        return value.isoformat(timespec="microseconds")
    if column.type == "json":
        return json.dumps(value, sort_keys=True, allow_nan=False)
    return value


def _from_sql(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if column.type == "boolean":
        return bool(value)
    if column.type == "timestamp":
        return dt.datetime.fromisoformat(value)
    if column.type == "json":
        return json.loads(value)
    if column.type == "real":
        return float(value)
    return value


def create_table_sql(table: Table) -> str:
    """The SQLite DDL of ``table``, with its natural key as primary key."""
    cols = ", ".join(
        f"{c.name} {_SQL_TYPES[c.type]}{' NOT NULL' if c.name in table.key else ''}"
        for c in table.columns
    )
    return f"CREATE TABLE IF NOT EXISTS {table.name} ({cols}, PRIMARY KEY ({', '.join(table.key)}))"


def add_column_sql(table: Table, column: Column) -> str:
    """The DDL adding ``column`` (a non-key column) to an existing ``table``."""
    return f"ALTER TABLE {table.name} ADD COLUMN {column.name} {_SQL_TYPES[column.type]}"


def upsert_sql(table: Table) -> str:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` replacing every non-key column."""
    names = ", ".join(table.column_names)
    marks = ", ".join("?" for _ in table.columns)
    updates = ", ".join(f"{c.name} = excluded.{c.name}" for c in table.non_key_columns)
    action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    return (
        f"INSERT INTO {table.name} ({names}) VALUES ({marks}) "
        f"ON CONFLICT ({', '.join(table.key)}) {action}"
    )


class SqliteSink(MetadataSink):
    """The warehouse tables in one SQLite file.

    Args:
        path: the database file; its parent folder is created if needed.
        busy_timeout: seconds to wait for another writer's lock before giving up.

    Transient failures (the file locked past the busy timeout, disk I/O errors) raise
    :class:`~server.errors.WarehouseUnavailable`.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        super().__init__()
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SqliteSink({str(self.path)!r})"

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    self.path,
                    timeout=self._busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
            except (sqlite3.OperationalError, OSError) as exc:
                raise WarehouseUnavailable(
                    f"cannot open warehouse file {self.path}: {exc}"
                ) from exc
            self._conn = conn
        return self._conn

    def _transaction(self, what: str, work: Callable[[sqlite3.Connection], None]) -> None:
        """Run ``work(conn)`` in one write transaction."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise WarehouseUnavailable(f"{what} failed on {self.path}: {exc}") from exc

    def _run(self, what: str, statements: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        """Run ``statements`` (sql, parameter rows) in one write transaction."""

        def run(conn: sqlite3.Connection) -> None:
            for sql, params in statements:
                if params:
                    conn.executemany(sql, params)
                else:
                    conn.execute(sql)

        self._transaction(what, run)

    def _create_tables(self, tables: tuple[Table, ...]) -> None:
        def create(conn: sqlite3.Connection) -> None:
            for table in tables:
                conn.execute(create_table_sql(table))
                have = {row[1] for row in conn.execute(f"PRAGMA table_info({table.name})")}
                missing = [c for c in table.columns if c.name not in have]
                if any(c.name in table.key for c in missing):
                    raise InvalidInputError(
                        f"warehouse table {table.name} in {self.path} lacks key column(s) "
                        f"{[c.name for c in missing if c.name in table.key]}; it cannot be "
                        "migrated in place"
                    )
                for column in missing:
                    conn.execute(add_column_sql(table, column))

        self._transaction("creating tables", create)

    def _upsert(self, table: Table, rows: list[Row]) -> None:
        params = [tuple(_to_sql(c, row[c.name]) for c in table.columns) for row in rows]
        self._run(f"writing {table.name}", [(upsert_sql(table), params)])

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql).fetchall()
        except sqlite3.OperationalError as exc:
            raise WarehouseUnavailable(f"query failed on {self.path}: {exc}") from exc

    def _select(self, table: Table) -> list[Row]:
        names = ", ".join(table.column_names)
        rows = self._query(f"SELECT {names} FROM {table.name} ORDER BY {', '.join(table.key)}")
        return [
            {c.name: _from_sql(c, v) for c, v in zip(table.columns, row, strict=True)}
            for row in rows
        ]

    def _count(self, table: Table) -> int:
        return int(self._query(f"SELECT COUNT(*) FROM {table.name}")[0][0])

    def _ping(self) -> None:
        self._query("SELECT 1")

    def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()
