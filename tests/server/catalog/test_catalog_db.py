"""server.db on real SQLite files: settings, nested transactions, named migrations."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlite_utils

from curator.errors import InvalidInputError
from server.db import (
    MIGRATIONS_TABLE,
    Migration,
    SQLiteFile,
    applied_migrations,
    atomic,
    connect,
    migrate,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = connect(tmp_path / "db.sqlite")
    c.execute("CREATE TABLE t (x INTEGER)")
    yield c
    c.close()


def _xs(conn: sqlite3.Connection) -> list[int]:
    return [x for (x,) in conn.execute("SELECT x FROM t ORDER BY x")]


def test_connect_applies_the_durable_settings(tmp_path: Path) -> None:
    c = connect(tmp_path / "db.sqlite", busy_timeout_s=2.5)
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert c.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
    assert c.isolation_level is None and not c.in_transaction
    c.close()
    with pytest.raises(InvalidInputError, match="busy_timeout_s"):
        connect(tmp_path / "db.sqlite", busy_timeout_s=-1)


def test_atomic_commits_and_rolls_back(conn: sqlite3.Connection) -> None:
    with atomic(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), atomic(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("boom")
    assert _xs(conn) == [1]
    assert not conn.in_transaction


def test_a_failing_inner_block_rolls_back_only_itself(conn: sqlite3.Connection) -> None:
    with atomic(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(RuntimeError), atomic(conn):
            conn.execute("INSERT INTO t VALUES (2)")
            with atomic(conn):  # a committed savepoint inside the failing one goes too
                conn.execute("INSERT INTO t VALUES (3)")
            raise RuntimeError("inner")
        with atomic(conn):
            conn.execute("INSERT INTO t VALUES (4)")
        assert conn.in_transaction
    assert _xs(conn) == [1, 4]


def test_a_failing_outer_block_rolls_back_committed_inner_blocks(
    conn: sqlite3.Connection,
) -> None:
    with pytest.raises(RuntimeError), atomic(conn):
        with atomic(conn):
            conn.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("outer")
    assert _xs(conn) == []


def test_atomic_takes_the_write_lock_at_once(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    first, second = connect(path), connect(path, busy_timeout_s=0)
    with atomic(first):  # no write yet: BEGIN IMMEDIATE alone holds the lock
        with pytest.raises(sqlite3.OperationalError, match="locked"), atomic(second):
            pass
        assert second.execute("SELECT 1").fetchone() == (1,)  # readers go on (WAL)
    with atomic(second):
        pass
    first.close()
    second.close()


def _counting(log: list[str], name: str) -> Migration:
    def step(db: sqlite_utils.Database) -> None:
        log.append(name)
        db.table("log").insert({"name": name})

    return Migration(name, step)


def test_migrations_apply_once_in_order_and_record_themselves(tmp_path: Path) -> None:
    times = iter([datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)])
    c = connect(tmp_path / "db.sqlite")
    log: list[str] = []
    first = [_counting(log, "a.0001"), _counting(log, "a.0002")]
    assert migrate(c, first, clock=lambda: next(times)) == ["a.0001", "a.0002"]
    assert applied_migrations(c) == {
        "a.0001": datetime(2024, 1, 1, tzinfo=UTC),
        "a.0002": datetime(2024, 1, 2, tzinfo=UTC),
    }
    assert migrate(c, first) == []
    assert migrate(c, [*first, _counting(log, "a.0003")]) == ["a.0003"]
    assert log == ["a.0001", "a.0002", "a.0003"]
    assert [r[0] for r in c.execute("SELECT name FROM log ORDER BY rowid")] == log
    columns = [r[1] for r in c.execute(f"PRAGMA table_info({MIGRATIONS_TABLE})")]
    assert columns == ["name", "applied_at"]


def test_sql_migrations_run_statement_by_statement_in_the_transaction(tmp_path: Path) -> None:
    c = connect(tmp_path / "db.sqlite")
    sql = """
        CREATE TABLE a (x INTEGER, note TEXT DEFAULT 'semi;colon');
        -- a comment; with a semicolon
        CREATE TABLE audit (x INTEGER);
        CREATE TRIGGER a_audit AFTER INSERT ON a BEGIN INSERT INTO audit VALUES (new.x); END;
        INSERT INTO a (x) VALUES (7)
    """
    assert migrate(c, [Migration("s.0001", sql)]) == ["s.0001"]
    assert c.execute("SELECT note FROM a").fetchall() == [("semi;colon",)]
    assert c.execute("SELECT x FROM audit").fetchall() == [(7,)]


def test_a_failing_migration_leaves_no_trace_and_stops(tmp_path: Path) -> None:
    c = connect(tmp_path / "db.sqlite")
    log: list[str] = []

    def broken(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE half (x INTEGER)")
        raise RuntimeError("migration bug")

    steps = [_counting(log, "b.0001"), Migration("b.0002", broken), _counting(log, "b.0003")]
    with pytest.raises(RuntimeError, match="migration bug"):
        migrate(c, steps)
    assert list(applied_migrations(c)) == ["b.0001"]
    assert c.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    assert log == ["b.0001"]


def test_migration_lists_are_checked(tmp_path: Path) -> None:
    c = connect(tmp_path / "db.sqlite")
    with pytest.raises(InvalidInputError, match="unique"):
        migrate(c, [Migration("x", "SELECT 1"), Migration("x", "SELECT 2")])
    with pytest.raises(InvalidInputError, match="non-empty"):
        migrate(c, [Migration(" ", "SELECT 1")])
    with pytest.raises(InvalidInputError, match="SQL or a function"):
        migrate(c, [Migration("n", 42)])  # type: ignore[arg-type]

    def commits(db: sqlite_utils.Database) -> None:
        db.conn.execute("COMMIT")

    with pytest.raises(InvalidInputError, match="ended the transaction"):
        migrate(c, [Migration("c", commits)])
    assert applied_migrations(c) == {}


def test_migrating_inside_an_outer_transaction_rolls_back_with_it(tmp_path: Path) -> None:
    c = connect(tmp_path / "db.sqlite")
    with pytest.raises(RuntimeError), atomic(c):
        migrate(c, [Migration("o.0001", "CREATE TABLE o (x INTEGER)")])
        raise RuntimeError("startup failed")
    assert applied_migrations(c) == {}
    assert migrate(c, [Migration("o.0001", "CREATE TABLE o (x INTEGER)")]) == ["o.0001"]


_MIGRATE_SCRIPT = """
import sys, time
from pathlib import Path
from server.db import Migration, connect, migrate

path, go = sys.argv[1], Path(sys.argv[2])
def slow(name):
    def step(db):
        db.execute("INSERT INTO applications (name) VALUES (?)", [name])
        time.sleep(0.2)  # hold the write lock while the other process tries
    return Migration(name, step)
conn = connect(path)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
applied = migrate(conn, [Migration("p.0000", "CREATE TABLE applications (name TEXT)"),
                         slow("p.0001"), slow("p.0002")])
print(",".join(applied), flush=True)
"""


@pytest.mark.integration
def test_two_processes_migrating_at_once_apply_each_migration_once(tmp_path: Path) -> None:
    path, go = tmp_path / "db.sqlite", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE_SCRIPT, str(path), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    go.touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    applied = [set(filter(None, out.strip().split(","))) for out, _ in outs]
    assert applied[0] | applied[1] == {"p.0000", "p.0001", "p.0002"}
    assert not applied[0] & applied[1]  # nothing applied by both
    c = connect(path)
    assert sorted(r[0] for r in c.execute("SELECT name FROM applications")) == [
        "p.0001",
        "p.0002",
    ]
    assert list(applied_migrations(c)) == ["p.0000", "p.0001", "p.0002"]


def test_sqlite_file_gives_each_thread_its_own_connection(tmp_path: Path) -> None:
    db = SQLiteFile(tmp_path / "db.sqlite")
    db.connection.execute("CREATE TABLE t (x INTEGER)")
    seen: list[sqlite3.Connection] = []
    entered, release = threading.Event(), threading.Event()

    def writer() -> None:
        seen.append(db.connection)
        with db.atomic() as c:
            c.execute("INSERT INTO t VALUES (1)")
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=writer)
    thread.start()
    assert entered.wait(5)
    # the other thread's open transaction is not ours: we see the committed state only
    assert not db.connection.in_transaction
    assert db.connection.execute("SELECT count(*) FROM t").fetchone() == (0,)
    release.set()
    thread.join()
    assert seen[0] is not db.connection
    assert db.connection.execute("SELECT count(*) FROM t").fetchone() == (1,)
    db.close()
    with pytest.raises(InvalidInputError, match="closed"):
        db.connection  # noqa: B018
    with pytest.raises(sqlite3.ProgrammingError):
        seen[0].execute("SELECT 1")


def test_a_busy_writer_waits_for_the_lock_instead_of_failing(tmp_path: Path) -> None:
    db = SQLiteFile(tmp_path / "db.sqlite", busy_timeout_s=10)
    db.connection.execute("CREATE TABLE t (x INTEGER)")
    holding = threading.Event()

    def hold() -> None:
        with db.atomic() as c:
            c.execute("INSERT INTO t VALUES (1)")
            holding.set()
            time.sleep(0.3)

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(5)
    with db.atomic() as c:
        c.execute("INSERT INTO t VALUES (2)")
    thread.join()
    assert _xs(db.connection) == [1, 2]
    db.close()
