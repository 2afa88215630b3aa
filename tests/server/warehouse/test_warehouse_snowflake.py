"""SnowflakeSink beyond the shared contract: outages, reconnects, retries, SQL and secrets."""

from __future__ import annotations

import logging
import random
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import snowflake.connector
from snowflake.connector import errors as sf_errors
from snowflake.connector.cursor import SnowflakeCursor

from curator.errors import InvalidInputError
from server.errors import WarehouseUnavailable
from server.warehouse.snowflake import SnowflakeSink, is_transient

DATABASE = "CURATOR_TEST"
Rows = Callable[..., list[dict[str, Any]]]


def unique_schema() -> str:
    return f"S_{uuid.uuid4().hex[:10].upper()}"


class Sleeps(list[float]):
    """An injected sleep that records the backoffs instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make(server: Any, schema: str, sleeps: Sleeps, **kw: Any) -> SnowflakeSink:
    return SnowflakeSink(
        server.connect_kwargs(), DATABASE, schema, sleep=sleeps, rng=random.Random(0), **kw
    )


@pytest.mark.integration
def test_a_stopped_server_gives_warehouse_unavailable_after_bounded_retries_then_reconnects(
    outage_fakesnow: Any, rows_of: Rows
) -> None:
    sleeps = Sleeps()
    sink = make(outage_fakesnow, "OUTAGE", sleeps, retries=2, base_delay=0.5, max_delay=0.8)
    sink.write("frames", rows_of("frames", 3))
    sink.close()  # so each attempt below is a login, refused at once (see the outbox's test)
    outage_fakesnow.stop()

    with pytest.raises(WarehouseUnavailable, match=r"after 3 attempt\(s\)"):
        sink.write("frames", rows_of("frames", 2, start=3))
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 0.8  # full jitter under the caps
    with pytest.raises(WarehouseUnavailable):
        sink.ping()
    assert len(sleeps) == 2  # ping does not back off

    outage_fakesnow.start()
    sink.ping()
    sink.write("frames", rows_of("frames", 2, start=3))
    assert sink.count("frames") == 5  # the rows from before the outage survived it
    sink.close()


@pytest.mark.integration
def test_a_session_lost_to_a_server_restart_is_replaced_on_the_next_attempt(
    outage_fakesnow: Any, rows_of: Rows
) -> None:
    sleeps = Sleeps()
    sink = make(outage_fakesnow, "RESTART", sleeps, retries=3)
    sink.write("labels", rows_of("labels", 2))
    outage_fakesnow.restart()  # the old session token is now unknown to the server
    sink.write("labels", rows_of("labels", 2, start=2))
    assert [r["label_id"] for r in sink.read("labels")] == [
        r["label_id"] for r in rows_of("labels", 4)
    ]
    assert len(sleeps) == 1  # one failed attempt on the dead session, then a new one
    sink.close()


class FakeSession:
    """A connection whose cursor's execute fails while ``dead`` (as a session lost server-side)."""

    def __init__(self, dead: bool) -> None:
        self.dead = dead
        self.executed: list[str] = []

    def cursor(self) -> FakeSession:
        return self

    def execute(self, sql: str, *args: Any) -> None:
        if self.dead and not sql.startswith("USE SCHEMA"):
            raise sf_errors.HttpError(msg="401 Unauthorized", errno=290401)
        self.executed.append(sql)

    def close(self) -> None:
        pass


def test_ping_replaces_a_dead_session_at_once_and_never_backs_off() -> None:
    first, second = FakeSession(dead=False), FakeSession(dead=False)
    opens: list[Any] = [first, second, sf_errors.OperationalError(msg="refused", errno=250001)]

    def connect() -> Any:
        nxt = opens.pop(0)
        if isinstance(nxt, Exception):
            raise nxt
        return nxt

    sleeps = Sleeps()
    sink = SnowflakeSink(connect, DATABASE, "S", sleep=sleeps)
    sink.ping()
    first.dead = True  # the session expires server-side
    sink.ping()  # one failed attempt on it, then a new session answers
    assert first.executed == ["USE SCHEMA CURATOR_TEST.S", "SELECT 1"]
    assert second.executed == ["USE SCHEMA CURATOR_TEST.S", "SELECT 1"]
    second.dead = True
    with pytest.raises(WarehouseUnavailable, match="pinging"):
        sink.ping()  # dead session, then the service refuses a new one
    assert sleeps == [] and opens == []


def test_a_big_batch_is_inserted_in_chunks_and_merged_once(
    fakesnow_server: Any, rows_of: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("server.warehouse.snowflake.MAX_BINDS_PER_INSERT", 19 * 4)  # 4 frames
    sizes: list[int] = []
    executemany = SnowflakeCursor.executemany

    def spy(self: SnowflakeCursor, command: str, seqparams: Any, **kw: Any) -> Any:
        sizes.append(len(seqparams))
        return executemany(self, command, seqparams, **kw)

    monkeypatch.setattr(SnowflakeCursor, "executemany", spy)
    sink = make(fakesnow_server, unique_schema(), Sleeps())
    rows = rows_of("frames", 10)
    sink.write("frames", [*rows, rows[0]])
    assert sizes == [4, 4, 2]  # deduplicated to 10 rows, then chunked
    assert [r["frame_id"] for r in sink.read("frames")] == [r["frame_id"] for r in rows]
    sink.close()


def test_a_sql_error_is_not_retried(fakesnow_server: Any, rows_of: Rows) -> None:
    kwargs = {**fakesnow_server.connect_kwargs(), "database": DATABASE, "schema": "DRIFTED"}
    with snowflake.connector.connect(**kwargs) as conn:
        # missing columns are added on first use; a missing key column is drift it cannot fix
        conn.cursor().execute(f"CREATE TABLE {DATABASE}.DRIFTED.LABELS (frame_id VARCHAR)")
    sleeps = Sleeps()
    sink = make(fakesnow_server, "DRIFTED", sleeps, retries=3)
    with pytest.raises(sf_errors.ProgrammingError):
        sink.write("labels", rows_of("labels", 1))
    assert sleeps == []
    sink.close()


def test_an_empty_write_does_not_connect() -> None:
    def refuse() -> Any:
        raise AssertionError("connected")

    sink = SnowflakeSink(refuse, DATABASE, "S")
    sink.write("frames", [])


def test_a_callable_connect_is_used_once_per_session(fakesnow_server: Any, rows_of: Rows) -> None:
    opened: list[Any] = []
    kwargs = {
        **fakesnow_server.connect_kwargs(),
        "database": DATABASE,
        "schema": "VIA_CALLABLE",
        "paramstyle": "qmark",
    }

    def connect() -> Any:
        opened.append(snowflake.connector.connect(**kwargs))
        return opened[-1]

    sink = SnowflakeSink(connect, DATABASE, "VIA_CALLABLE", sleep=Sleeps())
    sink.write("model_versions", rows_of("model_versions", 2))
    assert sink.count("model_versions") == 2
    assert len(opened) == 1  # one session for every call
    sink.close()
    assert sink.read("model_versions") == sorted(
        sink.read("model_versions"), key=lambda r: r["model_version"]
    )
    assert len(opened) == 2
    sink.close()


def test_failures_never_log_or_show_the_password(
    unstarted_fakesnow: Any, rows_of: Rows, caplog: pytest.LogCaptureFixture
) -> None:
    secret = unstarted_fakesnow.connect_kwargs()["password"]
    sink = make(unstarted_fakesnow, "SECRETS", Sleeps(), retries=1)
    with caplog.at_level(logging.DEBUG, logger="server"), pytest.raises(WarehouseUnavailable) as e:
        sink.write("labels", rows_of("labels", 1))
    assert "retry 1/1" in caplog.text
    assert secret not in caplog.text and secret not in str(e.value)
    assert secret not in repr(sink) and "fakesnow" in repr(sink)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"database": "DB; DROP TABLE X"}, "database"),
        ({"schema": "a.b"}, "schema"),
        ({"retries": -1}, "retries"),
        ({"connect": {"account": "a", "paramstyle": "pyformat"}}, "qmark"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    args = {"connect": {"account": "a"}, "database": "DB", "schema": "S"} | kwargs
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        SnowflakeSink(**args)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (sf_errors.OperationalError(msg="refused", errno=250003), True),
        (sf_errors.DatabaseError(msg="connection closed", errno=250002), True),
        (sf_errors.HttpError(msg="401", errno=290401), True),
        (sf_errors.ServiceUnavailableError(), True),
        (ConnectionRefusedError(), True),
        (sf_errors.ProgrammingError(msg="SQL compilation error", errno=1003), False),
        (sf_errors.ProgrammingError(msg="session gone", errno=390104), True),
        (sf_errors.DataError(msg="bad number"), False),
        (sf_errors.InterfaceError(msg="bad bind"), False),
        (ValueError("bug"), False),
    ],
)
def test_which_errors_are_transient(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient
