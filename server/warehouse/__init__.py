"""The warehouse log: every decision the server makes, recorded in one table per event kind.

- :mod:`server.warehouse.tables`: the tables as data (columns, portable types, natural keys) and
  row validation.
- :mod:`server.warehouse.base`: :class:`MetadataSink`, the interface every store implements.
- :mod:`server.warehouse.sqlite`: :class:`SqliteSink`, the embedded default (a local file).
- :mod:`server.warehouse.snowflake`: :class:`SnowflakeSink`, staging table + ``MERGE``.
- :mod:`server.warehouse.outbox`: :class:`Outbox` and :class:`OutboxDrainer`, so ingest never
  waits on the warehouse and nothing is lost while it is down.

``SnowflakeSink`` is imported on first use: snowflake-connector-python takes about a second to
import, which a process running on the local SQLite default need not pay.

See docs/warehouse.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.warehouse.base import MetadataSink
from server.warehouse.outbox import DrainerStats, Outbox, OutboxDrainer
from server.warehouse.sqlite import SqliteSink
from server.warehouse.tables import TABLES, Column, Row, Table, get_table, validate_rows

if TYPE_CHECKING:
    from server.warehouse.snowflake import SnowflakeSink

__all__ = [
    "TABLES",
    "Column",
    "DrainerStats",
    "MetadataSink",
    "Outbox",
    "OutboxDrainer",
    "Row",
    "SnowflakeSink",
    "SqliteSink",
    "Table",
    "get_table",
    "validate_rows",
]


def __getattr__(name: str) -> Any:
    if name == "SnowflakeSink":
        from server.warehouse.snowflake import SnowflakeSink

        return SnowflakeSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
