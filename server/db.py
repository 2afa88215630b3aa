"""SQLite files the way the server uses them: durable settings, nested transactions, migrations.

- :func:`connect`: one connection with WAL, ``synchronous=FULL``, a busy timeout and foreign
  keys, in autocommit mode so that transactions are only the ones :func:`atomic` opens.
- :func:`atomic`: a transaction (``BEGIN IMMEDIATE``) that nests with ``SAVEPOINT``\\ s.
- :class:`Migration` and :func:`migrate`: named schema changes, each applied once and recorded
  in ``_migrations`` (name, applied_at); safe when several processes start at once.
- :class:`SQLiteFile`: a file shared by several stores (catalog, tokens, warehouse outbox), one
  connection per thread.

Durability: in WAL mode with ``synchronous=FULL`` SQLite fsyncs the write-ahead log at every
commit, so a transaction whose ``COMMIT`` returned survives a process kill and a power cut (on a
disk that honours fsync). A transaction that did not commit leaves nothing behind: recovery
ignores its frames in the log. See docs/server-storage.md.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from curator.errors import InvalidInputError

__all__ = [
    "MIGRATIONS_TABLE",
    "Migration",
    "SQLiteFile",
    "applied_migrations",
    "atomic",
    "connect",
    "migrate",
]

MIGRATIONS_TABLE = "_migrations"
"""The table recording applied migrations: ``name TEXT PRIMARY KEY, applied_at TEXT``."""

MigrationStep = Callable[[sqlite_utils.Database], None]


def connect(path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> sqlite3.Connection:
    """Open ``path`` with the server's settings.

    The connection is in autocommit mode (``isolation_level=None``): each statement outside
    :func:`atomic` commits on its own, and Python never opens a transaction behind your back.
    It may be closed from another thread than the one that opened it (for shutdown), but use it
    from one thread at a time.

    Raises:
        InvalidInputError: ``busy_timeout_s`` is negative.
        sqlite3.OperationalError: the file cannot be opened (missing folder, permissions).
    """
    if busy_timeout_s < 0:
        raise InvalidInputError(f"busy_timeout_s must be >= 0, got {busy_timeout_s!r}")
    conn = sqlite3.connect(
        os.fspath(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def atomic(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block in a transaction, or in a savepoint when one is already open.

    The outermost block starts with ``BEGIN IMMEDIATE`` (it takes the write lock at once, so two
    writers queue on the busy timeout instead of failing on a lock upgrade) and commits when the
    block ends. A nested block is a ``SAVEPOINT``: if it raises, only its own changes are rolled
    back and the exception propagates to the enclosing block, which may catch it and go on.

    Yields:
        ``conn`` itself.
    """
    if conn.in_transaction:
        name = f"sp_{secrets.token_hex(8)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            # an error such as SQLITE_FULL may already have rolled back the whole transaction
            if conn.in_transaction:
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
            raise
        conn.execute(f"RELEASE {name}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@dataclass(frozen=True)
class Migration:
    """One named schema change.

    Attributes:
        name: unique within the file; prefix it with its owner (``"catalog.0001_frames"``),
            since several stores may share one file and one ``_migrations`` table.
        apply: SQL (one or more statements) or a function of a :class:`sqlite_utils.Database`
            over the same connection (``db["t"].transform(...)`` and friends). It runs inside the
            migration's transaction: it must not commit, and cannot ``VACUUM``.
    """

    name: str
    apply: str | MigrationStep


def migrate(
    db: sqlite3.Connection | sqlite_utils.Database | SQLiteFile,
    migrations: Sequence[Migration],
    *,
    clock: Callable[[], datetime] | None = None,
) -> list[str]:
    """Apply the migrations not yet applied, in order, and record each in ``_migrations``.

    Each migration and its record commit together in one ``BEGIN IMMEDIATE`` transaction, and
    whether it is pending is decided inside that transaction. So two processes migrating the
    same file at once apply each migration exactly once: the second waits for the first's write
    lock, then finds it applied. A migration that raises leaves no trace and stops the run.
    Applied names that ``migrations`` does not list (another store's) are left alone.

    Args:
        db: the database to migrate.
        migrations: in the order they must apply.
        clock: returns the aware ``applied_at`` time; defaults to the current UTC time.

    Returns:
        The names applied by this call, in order (empty when everything was applied already).

    Raises:
        InvalidInputError: names are empty or repeated, or a migration ended the transaction.
    """
    conn = _connection_of(db)
    names = [m.name for m in migrations]
    if any(not isinstance(n, str) or not n.strip() for n in names):
        raise InvalidInputError(f"migration names must be non-empty strings, got {names!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidInputError(f"migration names must be unique, repeated: {repeated}")
    now = clock or (lambda: datetime.now(UTC))
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
        "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL) STRICT"
    )
    applied: list[str] = []
    for migration in migrations:
        with atomic(conn):
            done = conn.execute(
                f"SELECT 1 FROM {MIGRATIONS_TABLE} WHERE name = ?", (migration.name,)
            ).fetchone()
            if done:
                continue
            _run_step(conn, migration)
            if not conn.in_transaction:
                raise InvalidInputError(
                    f"migration {migration.name!r} ended the transaction it runs in"
                )
            conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (?, ?)",
                (migration.name, now().astimezone(UTC).isoformat(timespec="microseconds")),
            )
        applied.append(migration.name)
    return applied


def applied_migrations(
    db: sqlite3.Connection | sqlite_utils.Database | SQLiteFile,
) -> dict[str, datetime]:
    """The migrations recorded in ``db``, name -> applied_at, in the order they were applied."""
    conn = _connection_of(db)
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (MIGRATIONS_TABLE,)
    ).fetchone()
    if not exists:
        return {}
    rows = conn.execute(f"SELECT name, applied_at FROM {MIGRATIONS_TABLE} ORDER BY rowid")
    return {name: datetime.fromisoformat(at) for name, at in rows}


def _run_step(conn: sqlite3.Connection, migration: Migration) -> None:
    if isinstance(migration.apply, str):
        for statement in _statements(migration.apply):  # executescript() would COMMIT first
            conn.execute(statement)
    elif callable(migration.apply):
        migration.apply(
            sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
        )
    else:
        raise InvalidInputError(
            f"migration {migration.name!r} must be SQL or a function, "
            f"got {type(migration.apply).__name__}"
        )


def _statements(sql: str) -> Iterator[str]:
    """The complete statements of ``sql`` (semicolons in strings and triggers respected)."""
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                yield pending
            pending = ""


def _connection_of(
    db: sqlite3.Connection | sqlite_utils.Database | SQLiteFile,
) -> sqlite3.Connection:
    if isinstance(db, sqlite3.Connection):
        return db
    if isinstance(db, sqlite_utils.Database):
        return db.conn
    if isinstance(db, SQLiteFile):
        return db.connection
    raise InvalidInputError(
        f"expected a sqlite3.Connection, sqlite_utils.Database or SQLiteFile, "
        f"got {type(db).__name__}"
    )


class SQLiteFile:
    """A SQLite file opened with :func:`connect`, one connection per thread.

    Stores that share a file (the catalog, the token store, the warehouse outbox) share one
    ``SQLiteFile``, so a single :meth:`atomic` block can write to all of them. Each thread gets
    its own connection (a connection carries its transaction state, so threads must not share
    one); a forked child opens fresh connections instead of using its parent's.

    Args:
        path: the database file; its folder must exist.
        busy_timeout_s: how long a writer waits for another's lock before failing.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._closed = False
        self.connection.execute("SELECT 1")  # fail here, not on first use, if it cannot open

    @property
    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        if self._closed:
            raise InvalidInputError(f"{self.path} is closed")
        if os.getpid() != self._pid:  # forked: the parent's connections are not ours to use
            with self._lock:
                self._pid, self._opened, self._local = os.getpid(), [], threading.local()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, busy_timeout_s=self.busy_timeout_s)
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    @contextlib.contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """:func:`atomic` on this thread's connection."""
        with atomic(self.connection) as conn:
            yield conn

    def migrate(self, migrations: Sequence[Migration]) -> list[str]:
        """:func:`migrate` this file."""
        return migrate(self.connection, migrations)

    def close(self) -> None:
        """Close every connection this process opened on the file; further use raises."""
        with self._lock:
            opened, self._opened, self._closed = self._opened, [], True
        for conn in opened:
            conn.close()

    def __enter__(self) -> SQLiteFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteFile({str(self.path)!r})"
