"""The buffer's SQLite file: connection settings, one transaction helper, named migrations.

- :func:`connect`: WAL, ``synchronous=FULL``, 4 KiB pages, ``auto_vacuum=INCREMENTAL``,
  ``secure_delete=OFF``, a busy timeout; autocommit mode, so the only transactions are the ones
  :func:`atomic` opens.
- :func:`atomic`: ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception.
- :data:`BUFFER_MIGRATIONS` and :func:`migrate`: the schema as named migrations, each applied
  once and recorded in ``_migrations`` (the same table layout the server uses).

Why these settings is in docs/edge-buffer.md ("What is durable when").
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime

import sqlite_utils

__all__ = ["BUFFER_MIGRATIONS", "MIGRATIONS_TABLE", "PAGE_SIZE", "atomic", "connect", "migrate"]

PAGE_SIZE = 4096
"""Page size of a new buffer file; the space accounting counts whole pages of this size."""

MIGRATIONS_TABLE = "_migrations"

BUFFER_MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "edge_buffer.0001_create",
        """
        CREATE TABLE frames (
            device_seq INTEGER PRIMARY KEY CHECK (device_seq >= 1),
            frame_id TEXT NOT NULL CHECK (length(frame_id) = 64),
            value REAL NOT NULL,
            cost_bytes INTEGER NOT NULL CHECK (cost_bytes > 0),
            captured_at TEXT NOT NULL,
            buffered_at TEXT NOT NULL,
            model_version TEXT NOT NULL,
            image_format TEXT NOT NULL CHECK (image_format IN ('jpeg', 'png')),
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            keep_reason TEXT NOT NULL,
            keep_threshold REAL,
            predicted_class INTEGER,
            meta TEXT NOT NULL CHECK (json_valid(meta)),
            embedding BLOB NOT NULL,
            image BLOB NOT NULL
        ) STRICT;
        CREATE INDEX frames_by_value ON frames (value DESC, device_seq, cost_bytes);
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT,
            WITHOUT ROWID;
        INSERT INTO counters (name, value) VALUES
            ('last_device_seq', 0), ('evicted', 0), ('uploaded', 0), ('disk_full', 0);
        CREATE TABLE drops (reason TEXT PRIMARY KEY, count INTEGER NOT NULL) STRICT,
            WITHOUT ROWID;
        """,
    ),
    (
        "edge_buffer.0002_state",
        """
        CREATE TABLE state (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL CHECK (json_valid(value)),
            saved_at TEXT NOT NULL
        ) STRICT, WITHOUT ROWID;
        """,
    ),
)
"""(name, SQL) pairs in the order they apply; append new ones, never edit a shipped one."""


def connect(path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0) -> sqlite3.Connection:
    """Open (or create) the buffer file at ``path`` with the buffer's settings.

    ``page_size`` and ``auto_vacuum`` only take effect on a new, empty file (they are set
    before WAL mode, which freezes them).

    Raises:
        sqlite3.OperationalError: the file cannot be opened or is not a database.
    """
    conn = sqlite3.connect(
        os.fspath(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA secure_delete = OFF")  # freed pages are not rewritten (no WAL churn)
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def atomic(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block in one ``BEGIN IMMEDIATE`` transaction; roll back if it raises.

    Not reentrant: the buffer never nests transactions.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLITE_FULL may already have rolled the transaction back
            conn.execute("ROLLBACK")
        raise


def migrate(conn: sqlite3.Connection, clock: Callable[[], datetime]) -> list[str]:
    """Apply the :data:`BUFFER_MIGRATIONS` not yet recorded; return the names applied.

    Each migration commits together with its ``_migrations`` row, and whether it is pending is
    decided inside that transaction, so two processes opening one file apply it once.
    """
    db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
    if MIGRATIONS_TABLE not in db.table_names():
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
            "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL) STRICT"
        )
    applied: list[str] = []
    for name, sql in BUFFER_MIGRATIONS:
        with atomic(conn):
            done = conn.execute(
                f"SELECT 1 FROM {MIGRATIONS_TABLE} WHERE name = ?", (name,)
            ).fetchone()
            if done:
                continue
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (?, ?)",
                (name, clock().isoformat(timespec="microseconds")),
            )
        applied.append(name)
    return applied


def _statements(sql: str) -> Iterator[str]:
    """The complete statements of ``sql`` (``executescript`` would commit first)."""
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                yield pending
            pending = ""
