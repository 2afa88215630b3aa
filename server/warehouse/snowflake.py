"""``SnowflakeSink``: the warehouse tables in Snowflake, through snowflake-connector-python.

A write loads one batch in three statements on one session, then drops the staging table:

1. ``CREATE TEMPORARY TABLE <table>_stage_<random>`` in the sink's schema (each new session
   starts with ``USE SCHEMA database.schema``): the target's columns, JSON ones as ``VARCHAR``;
   temporary, so it lives only in this session even if the drop never runs.
2. ``INSERT INTO stage VALUES (?, ...)`` with ``executemany``: one array-bound request per
   :data:`MAX_BINDS_PER_INSERT` values. Every value is bound as text (numbers,
   ``true``/``false``, ISO 8601 timestamps with a UTC offset, JSON text) and Snowflake casts it
   to the staging column's type.
3. ``MERGE INTO target USING (SELECT ..., PARSE_JSON(j) AS j FROM stage) s ON <natural key>
   WHEN MATCHED THEN UPDATE ... WHEN NOT MATCHED THEN INSERT ...``: JSON columns become
   ``VARIANT`` here, since Snowflake accepts no function call in an ``INSERT ... VALUES``.

Tables are created with ``CREATE TABLE IF NOT EXISTS``; a table created by an older version that
lacks columns added since (one ``INFORMATION_SCHEMA.COLUMNS`` query tells) gets them with
``ALTER TABLE ... ADD COLUMN IF NOT EXISTS``, NULL in the rows already there. Missing natural-key
columns are not added: the ``MERGE`` then fails with a SQL error, as for any other drift.

The batch is deduplicated on the natural key before loading (last row wins): a ``MERGE`` whose
source holds a key twice is nondeterministic in Snowflake. Tables are created without
``PRIMARY KEY`` constraints, which Snowflake would not enforce anyway: idempotency comes from the
``MERGE``, so a batch loaded twice leaves one row per key.

Failures that may pass (connection refused, timeouts, HTTP 5xx, an expired session, any
``OperationalError``) are retried ``retries`` times with exponential backoff and full jitter; the
connection is dropped after each and reopened on the next attempt or call. Then the sink raises
:class:`~server.errors.WarehouseUnavailable`. SQL errors (``ProgrammingError`` and its kin) are
bugs and propagate at once. Connection parameters, the password and key included, are never
logged or shown in ``repr``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import snowflake.connector
from snowflake.connector import errors as sf_errors

from curator.errors import InvalidInputError
from server.errors import WarehouseUnavailable
from server.warehouse.base import MetadataSink
from server.warehouse.tables import Column, Row, Table

__all__ = ["MAX_BINDS_PER_INSERT", "SnowflakeSink", "is_transient"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_SQL_TYPES = {
    "text": "VARCHAR",
    "integer": "NUMBER(38,0)",
    "real": "FLOAT",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP_TZ",
    "json": "VARIANT",
}
# values bound per INSERT request: below the connector's CLIENT_STAGE_ARRAY_BINDING_THRESHOLD
# (65,280 by default), above which it would first upload the binds to a stage (CREATE STAGE)
MAX_BINDS_PER_INSERT = 60_000
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,254}")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# errors that say nothing about the SQL: the session or the network, so worth a new session
_PERMANENT = (
    sf_errors.ProgrammingError,
    sf_errors.IntegrityError,
    sf_errors.DataError,
    sf_errors.NotSupportedError,
    sf_errors.InterfaceError,
)
_SESSION_GONE = {390104, 390112, 390114}


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` may pass on a new session: network, timeouts, 5xx, session expired."""
    if isinstance(exc, _PERMANENT):
        return getattr(exc, "errno", None) in _SESSION_GONE
    return isinstance(exc, (sf_errors.Error, OSError))


def _bind(column: Column, value: Any) -> tuple[str, str | None]:
    """A value bound as text; Snowflake casts it to the staging column's type."""
    if value is None:
        return ("TEXT", None)
    if column.type == "boolean":
        return ("TEXT", "true" if value else "false")
    if column.type == "real":
        return ("TEXT", repr(value))
    if column.type == "timestamp":
        return ("TEXT", value.isoformat(timespec="microseconds"))
    if column.type == "json":
        return ("TEXT", json.dumps(value, allow_nan=False))
    return ("TEXT", str(value))


def _decode(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if column.type == "timestamp":  # selected as epoch microseconds, see _select
        return _EPOCH + dt.timedelta(microseconds=int(value))
    if column.type == "json":
        return json.loads(value)
    if column.type == "integer":
        return int(value)
    if column.type == "real":
        return float(value)
    if column.type == "boolean":
        return bool(value)
    return str(value)


class SnowflakeSink(MetadataSink):
    """The warehouse tables in ``database.schema`` on Snowflake.

    Args:
        connect: either the keyword arguments of :func:`snowflake.connector.connect` (account,
            user, password or private_key, warehouse, role, timeouts ...; ``database``,
            ``schema`` and ``paramstyle="qmark"`` are filled in), or a callable returning an open
            connection made with ``paramstyle="qmark"``.
        database: the database holding the tables; it must exist.
        schema: the schema holding the tables; it must exist.
        retries: retries after the first attempt of one call, before WarehouseUnavailable.
        base_delay: the backoff before the first retry, in seconds; it doubles each retry.
        max_delay: the cap of one backoff, in seconds.
        sleep: called with each backoff; inject a no-op in tests.
        rng: draws the jitter.

    Raises:
        InvalidInputError: ``database`` or ``schema`` is not a plain identifier, ``retries`` is
            negative, or ``paramstyle`` is set to something other than ``"qmark"``.
    """

    def __init__(
        self,
        connect: Callable[[], Any] | Mapping[str, Any],
        database: str,
        schema: str,
        *,
        retries: int = 3,
        base_delay: float = 0.5,
        max_delay: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("database", database), ("schema", schema)):
            if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
                raise InvalidInputError(f"{name} must be a plain SQL identifier, got {value!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InvalidInputError(f"retries must be a non-negative int, got {retries!r}")
        if isinstance(connect, Mapping):
            kwargs = {"paramstyle": "qmark", **connect, "database": database, "schema": schema}
            if kwargs["paramstyle"] != "qmark":
                raise InvalidInputError(f"paramstyle must be 'qmark', got {kwargs['paramstyle']!r}")
            self._account = str(kwargs.get("account", "?"))
            self._connect: Callable[[], Any] = lambda: snowflake.connector.connect(**kwargs)
        else:
            self._account = "?"
            self._connect = connect
        self.database, self.schema = database.upper(), schema.upper()
        self.retries = retries
        self._base_delay, self._max_delay = base_delay, max_delay
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._conn: Any = None

    def __repr__(self) -> str:
        return f"SnowflakeSink(account={self._account!r}, {self.database}.{self.schema})"

    def _name(self, table: str) -> str:
        return f"{self.database}.{self.schema}.{table.upper()}"

    def _backoff(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(max_delay, base_delay * 2**retry)]."""
        return self._rng.uniform(0.0, min(self._max_delay, self._base_delay * 2.0**retry))

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _attempt(self, op: Callable[[Any], T]) -> T:
        if self._conn is None:
            conn = self._connect()
            try:
                # temporary staging tables are created unqualified, in the current schema
                conn.cursor().execute(f"USE SCHEMA {self.database}.{self.schema}")
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.close()
                raise
            self._conn = conn
        cur = self._conn.cursor()
        try:
            return op(cur)
        finally:
            with contextlib.suppress(Exception):
                cur.close()

    def _call(self, what: str, op: Callable[[Any], T], *, retries: int | None = None) -> T:
        """Run ``op(cursor)``, retrying transient failures on a fresh session."""
        retries = self.retries if retries is None else retries
        for attempt in range(retries + 1):
            try:
                return self._attempt(op)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self._drop_connection()
                reason = f"{type(exc).__name__} {getattr(exc, 'errno', '') or ''}".strip()
                if attempt == retries:
                    raise WarehouseUnavailable(
                        f"Snowflake {self.database}.{self.schema} unreachable while {what} "
                        f"after {attempt + 1} attempt(s): {reason}: {exc}"
                    ) from exc
                delay = self._backoff(attempt)
                log.warning(
                    "snowflake: %s failed (%s); retry %d/%d in %.2fs",
                    what,
                    reason,
                    attempt + 1,
                    retries,
                    delay,
                )
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _create_tables(self, tables: tuple[Table, ...]) -> None:
        def create(cur: Any) -> None:
            for t in tables:
                cols = ", ".join(f"{c.name} {_SQL_TYPES[c.type]}" for c in t.columns)
                cur.execute(f"CREATE TABLE IF NOT EXISTS {self._name(t.name)} ({cols})")
            cur.execute(
                f"SELECT table_name, column_name FROM {self.database}.INFORMATION_SCHEMA.COLUMNS"
                " WHERE table_schema = ?",
                (self.schema,),
            )
            have = {(str(t).upper(), str(c).upper()) for t, c in cur.fetchall()}
            for t in tables:
                for c in t.non_key_columns:
                    if (t.name.upper(), c.name.upper()) not in have:
                        cur.execute(
                            f"ALTER TABLE {self._name(t.name)} ADD COLUMN IF NOT EXISTS "
                            f"{c.name} {_SQL_TYPES[c.type]}"
                        )

        self._call("creating tables", create)

    def _merge_sql(self, table: Table, stage: str) -> str:
        source = ", ".join(
            f"PARSE_JSON({c.name}) AS {c.name}" if c.type == "json" else c.name
            for c in table.columns
        )
        on = " AND ".join(f"t.{k} = s.{k}" for k in table.key)
        updates = ", ".join(f"t.{c.name} = s.{c.name}" for c in table.non_key_columns)
        names = ", ".join(table.column_names)
        values = ", ".join(f"s.{n}" for n in table.column_names)
        matched = f"WHEN MATCHED THEN UPDATE SET {updates} " if updates else ""
        return (
            f"MERGE INTO {self._name(table.name)} t USING (SELECT {source} FROM {stage}) s "
            f"ON {on} {matched}WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
        )

    def _upsert(self, table: Table, rows: list[Row]) -> None:
        params = [[_bind(c, row[c.name]) for c in table.columns] for row in rows]
        stage_cols = ", ".join(
            f"{c.name} {'VARCHAR' if c.type == 'json' else _SQL_TYPES[c.type]}"
            for c in table.columns
        )
        marks = ", ".join("?" for _ in table.columns)

        def load(cur: Any) -> None:
            stage = f"{table.name}_stage_{uuid.uuid4().hex[:16]}".upper()
            cur.execute(f"CREATE TEMPORARY TABLE {stage} ({stage_cols})")
            try:
                insert = f"INSERT INTO {stage} ({', '.join(table.column_names)}) VALUES ({marks})"
                chunk = max(1, MAX_BINDS_PER_INSERT // len(table.columns))
                for start in range(0, len(params), chunk):
                    cur.executemany(insert, params[start : start + chunk])
                cur.execute(self._merge_sql(table, stage))
            finally:
                with contextlib.suppress(Exception):
                    cur.execute(f"DROP TABLE IF EXISTS {stage}")

        self._call(f"writing {len(rows)} row(s) to {table.name}", load)

    def _select(self, table: Table) -> list[Row]:
        # Timestamps are read as epoch microseconds: exact, and immune to the driver's and
        # session's timestamp formats (fakesnow also turns a NULL TIMESTAMP_TZ into 1970-01-01).
        exprs = ", ".join(
            f"DATE_PART(EPOCH_MICROSECOND, {c.name}) AS {c.name}"
            if c.type == "timestamp"
            else c.name
            for c in table.columns
        )
        sql = f"SELECT {exprs} FROM {self._name(table.name)} ORDER BY {', '.join(table.key)}"

        def select(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(sql)
            return list(cur.fetchall())

        rows = self._call(f"reading {table.name}", select)
        return [
            {c.name: _decode(c, v) for c, v in zip(table.columns, row, strict=True)} for row in rows
        ]

    def _count(self, table: Table) -> int:
        def count(cur: Any) -> int:
            cur.execute(f"SELECT COUNT(*) FROM {self._name(table.name)}")
            return int(cur.fetchone()[0])

        return self._call(f"counting {table.name}", count)

    def _ping(self) -> None:
        """No backoff, a health check must answer quickly: one attempt, plus one on a fresh
        session when an existing one failed (it may have expired while the service was fine)."""
        had_session = self._conn is not None
        try:
            self._call("pinging", lambda cur: cur.execute("SELECT 1"), retries=0)
        except WarehouseUnavailable:
            if not had_session:
                raise
            self._call("pinging", lambda cur: cur.execute("SELECT 1"), retries=0)

    def _close(self) -> None:
        self._drop_connection()
