"""The warehouse tables as data: one table per event kind, columns, types and natural keys.

Every sink (:class:`~server.warehouse.sqlite.SqliteSink`,
:class:`~server.warehouse.snowflake.SnowflakeSink`) creates these tables and maps the portable
column types to its own:

============= ============================================ ================ ===============
type          Python value                                 SQLite           Snowflake
============= ============================================ ================ ===============
``text``      ``str``                                      ``TEXT``         ``VARCHAR``
``integer``   ``int`` (numpy integers too), 64-bit signed  ``INTEGER``      ``NUMBER(38,0)``
``real``      ``float`` (or any real number), finite       ``REAL``         ``FLOAT``
``boolean``   ``bool``                                     ``INTEGER`` 0/1  ``BOOLEAN``
``timestamp`` timezone-aware ``datetime``, stored in UTC   ``TEXT`` ISO8601 ``TIMESTAMP_TZ``
``json``      anything :func:`json.dumps` takes, finite    ``TEXT``         ``VARIANT``
============= ============================================ ================ ===============

A row is a plain ``dict`` of column name to value. :func:`validate_rows` checks rows once at the
sink boundary and returns them normalised: every column present (a missing non-key column is
``None``, stored as SQL NULL), numbers as ``int``/``float``, timestamps converted to UTC, JSON
values as :func:`json.loads` would give them back. A re-written natural key replaces the whole
row, so a column left out of the new row becomes NULL.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from curator.errors import InvalidInputError

__all__ = [
    "COLUMN_TYPES",
    "DEDUP_DECISIONS",
    "DEVICE_HEARTBEATS",
    "FRAMES",
    "LABELS",
    "MODEL_VERSIONS",
    "TABLES",
    "TRAINING_RUNS",
    "Column",
    "ColumnType",
    "Row",
    "Table",
    "decode_row",
    "encode_row",
    "get_table",
    "last_per_key",
    "validate_rows",
]

ColumnType = Literal["text", "integer", "real", "boolean", "timestamp", "json"]
COLUMN_TYPES: tuple[ColumnType, ...] = ("text", "integer", "real", "boolean", "timestamp", "json")
Row = dict[str, Any]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class Column:
    """One column: its name, portable type, and what values it allows.

    Attributes:
        name: a lowercase SQL identifier.
        type: one of :data:`COLUMN_TYPES`.
        required: ``None`` is refused (key columns are always required).
        choices: the only values allowed, for enumerations such as ``frames.status``.
        doc: one line for docs/warehouse.md.
    """

    name: str
    type: ColumnType
    required: bool = False
    choices: tuple[str, ...] | None = None
    doc: str = ""


@dataclass(frozen=True)
class Table:
    """One warehouse table: its columns in order and the natural key that makes a row unique."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    doc: str = ""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def non_key_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.name not in self.key)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _c(name: str, type_: ColumnType, doc: str, **kw: Any) -> Column:
    return Column(name, type_, doc=doc, **kw)


FRAMES = Table(
    "frames",
    (
        _c("frame_id", "text", "sha256 of the encoded image bytes (one row per upload of it)"),
        _c("device_id", "text", "the device that uploaded it"),
        _c("device_seq", "integer", "the device's sequence number of the upload"),
        _c("captured_at", "timestamp", "when the device captured it (UTC)"),
        _c("received_at", "timestamp", "when the server received it (UTC)"),
        _c("model_version", "text", "the model that scored it on the device"),
        _c(
            "status",
            "text",
            "what the server decided",
            required=True,
            choices=("accepted", "duplicate", "rejected"),
        ),
        _c("duplicate_of", "text", "the frame it duplicates, for status duplicate"),
        _c("similarity", "real", "cosine similarity to duplicate_of"),
        _c("dedup_threshold", "real", "the near-duplicate threshold in force"),
        _c("reason", "text", "why it was rejected, for status rejected"),
        _c("keep_reason", "text", "why the device kept it"),
        _c("scores", "json", "named scores at decision time on the device"),
        _c("quality", "json", "named image quality measures"),
        _c("predicted_class", "integer", "index of the predicted class, if the model has logits"),
        _c("width", "integer", "image width in pixels"),
        _c("height", "integer", "image height in pixels"),
        _c("image_bytes", "integer", "size of the encoded image"),
        _c("schema_version", "integer", "curator.wire schema version of the upload"),
    ),
    ("device_id", "device_seq"),
    "every upload the server answered and what it decided",
)

DEDUP_DECISIONS = Table(
    "dedup_decisions",
    (
        _c("frame_id", "text", "the frame found to be a duplicate"),
        _c("device_id", "text", "the device that uploaded it"),
        _c("device_seq", "integer", "the device's sequence number of the upload"),
        _c("duplicate_of", "text", "the frame already in the catalog"),
        _c("similarity", "real", "1.0 for exact duplicates, the cosine for near ones"),
        _c("threshold", "real", "the threshold the similarity was compared with"),
        _c("model_version", "text", "the embedding space of the comparison"),
        _c("method", "text", "how it was found", required=True, choices=("exact", "near")),
        _c("decided_at", "timestamp", "when the server decided (UTC)"),
    ),
    ("device_id", "device_seq"),
    "one row per upload dropped as a duplicate, and why",
)

LABELS = Table(
    "labels",
    (
        _c("label_id", "text", "unique id of the label"),
        _c("frame_id", "text", "the labeled frame"),
        _c("class_name", "text", "the class the labeler chose"),
        _c("labeler", "text", "who labeled it"),
        _c("created_at", "timestamp", "when (UTC)"),
        _c("supersedes", "text", "the label_id this one corrects, if any"),
    ),
    ("label_id",),
    "labels from the labeling team; corrections supersede, nothing is overwritten",
)

TRAINING_RUNS = Table(
    "training_runs",
    (
        _c("run_id", "text", "unique id of the run"),
        _c("snapshot_key", "text", "the dataset snapshot it trained on"),
        _c("status", "text", "the job status"),
        _c("started_at", "timestamp", "UTC"),
        _c("finished_at", "timestamp", "UTC; NULL while running"),
        _c("metrics", "json", "evaluation metrics"),
        _c("model_version", "text", "the model version it produced, if any"),
    ),
    ("run_id",),
    "fine-tuning runs; a run's row is re-written as its status changes",
)

MODEL_VERSIONS = Table(
    "model_versions",
    (
        _c("model_version", "text", "the version name"),
        _c("sha256", "text", "sha256 of the ONNX file"),
        _c("parent_version", "text", "the version it was fine-tuned from"),
        _c("snapshot_key", "text", "the dataset snapshot it was trained on"),
        _c("metrics", "json", "held-out evaluation metrics"),
        _c("promoted", "boolean", "whether devices are offered it"),
        _c("created_at", "timestamp", "UTC"),
    ),
    ("model_version",),
    "the model registry",
)

DEVICE_HEARTBEATS = Table(
    "device_heartbeats",
    (
        _c("device_id", "text", "the device"),
        _c("sent_at", "timestamp", "the device's clock when it sent the heartbeat (UTC)"),
        _c("counters", "json", "the device's counters since started_at, by name"),
        _c("received_at", "timestamp", "the server's clock when it arrived (UTC)"),
        _c("started_at", "timestamp", "when the device's selector started; counters count from it"),
        _c("model_version", "text", "the model the device scores frames with (NULL before one)"),
        _c("software_version", "text", "the device's curator version"),
        _c("buffer_frames", "integer", "frames waiting in the device's buffer"),
        _c("buffer_bytes", "integer", "bytes the device's buffer takes on disk"),
        _c("buffer_max_bytes", "integer", "the device buffer's byte cap"),
        _c("last_device_seq", "integer", "the highest device_seq the device has given a frame"),
    ),
    ("device_id", "sent_at"),
    "device health over time: one row per heartbeat (counters since started_at)",
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (FRAMES, DEDUP_DECISIONS, LABELS, TRAINING_RUNS, MODEL_VERSIONS, DEVICE_HEARTBEATS)
}


def get_table(name: str) -> Table:
    """The table called ``name``.

    Raises:
        InvalidInputError: no such table; the message lists the valid names.
    """
    try:
        return TABLES[name]
    except (KeyError, TypeError):
        raise InvalidInputError(
            f"unknown warehouse table {name!r}; valid: {sorted(TABLES)}"
        ) from None


def _check_value(column: Column, value: Any, where: str) -> Any:
    """``value`` normalised for ``column``, or InvalidInputError naming the column.

    Values that are already normal (a ``str``, an ``int`` in range, a finite ``float``, a UTC
    ``datetime``, a flat dict of finite numbers) are returned as they are; only the others take
    the general path, so re-validating rows that came back from the outbox costs little.
    """
    if value is None:
        return None
    kind, t = column.type, type(value)
    if (
        (kind == "text" and t is str and (column.choices is None or value in column.choices))
        or (kind == "integer" and t is int and _INT64_MIN <= value <= _INT64_MAX)
        or (kind == "real" and t is float and math.isfinite(value))
        or (kind == "boolean" and t is bool)
        or (kind == "timestamp" and t is dt.datetime and value.tzinfo is dt.UTC)
    ):
        return value
    if kind == "json" and t is dict and _is_flat_numbers(value):
        return dict(value)
    return _normalise(column, value, where)


def _is_flat_numbers(value: dict[Any, Any]) -> bool:
    """Whether ``value`` maps str to finite floats or 64-bit ints (scores, quality measures):
    JSON gives such a dict back equal to itself."""
    return all(
        type(k) is str
        and (
            (type(v) is int and _INT64_MIN <= v <= _INT64_MAX)
            or (type(v) is float and math.isfinite(v))
        )
        for k, v in value.items()
    )


def _normalise(column: Column, value: Any, where: str) -> Any:
    """The general path of :func:`_check_value`: convert or refuse ``value``."""
    bad = f"{where}: column {column.name!r} ({column.type})"
    kind = column.type
    if kind == "text":
        if not isinstance(value, str):
            raise InvalidInputError(f"{bad} must be a str, got {type(value).__name__}")
        if column.choices is not None and value not in column.choices:
            raise InvalidInputError(f"{bad} must be one of {list(column.choices)}, got {value!r}")
        return value
    if kind == "integer":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise InvalidInputError(f"{bad} must be an int, got {type(value).__name__}")
        if not _INT64_MIN <= int(value) <= _INT64_MAX:
            raise InvalidInputError(f"{bad} must fit in 64 bits, got {int(value)}")
        return int(value)
    if kind == "real":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise InvalidInputError(f"{bad} must be a real number, got {type(value).__name__}")
        if not math.isfinite(float(value)):
            raise InvalidInputError(f"{bad} must be finite, got {value!r}")
        return float(value)
    if kind == "boolean":
        if not isinstance(value, (bool, np.bool_)):
            raise InvalidInputError(f"{bad} must be a bool, got {type(value).__name__}")
        return bool(value)
    if kind == "timestamp":
        if not isinstance(value, dt.datetime):
            raise InvalidInputError(f"{bad} must be a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidInputError(f"{bad} must be timezone-aware, got naive {value.isoformat()}")
        return value.astimezone(dt.UTC)
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{bad} must be finite JSON-serialisable data: {exc}") from None


def validate_rows(table: Table | str, rows: Iterable[Mapping[str, Any]]) -> list[Row]:
    """Check ``rows`` against ``table`` and return them normalised (see the module docstring).

    Args:
        table: a :class:`Table` or a table name.
        rows: mappings of column name to value.

    Returns:
        One dict per row with every column of the table, in the table's column order.

    Raises:
        InvalidInputError: an unknown table; a row that is not a mapping; unknown columns, missing
            key or required columns (named in the message); a value of the wrong type, a naive
            datetime, a non-finite number, a value outside a column's choices.
    """
    spec = table if isinstance(table, Table) else get_table(table)
    if isinstance(rows, Mapping):
        raise InvalidInputError(f"{spec.name}: rows must be a list of dicts, got one dict")
    names = set(spec.column_names)
    required = [c.name for c in spec.columns if c.required or c.name in spec.key]
    out: list[Row] = []
    for i, row in enumerate(rows):
        where = f"{spec.name} row {i}"
        if not isinstance(row, Mapping):
            raise InvalidInputError(f"{where} must be a dict, got {type(row).__name__}")
        unknown = sorted(str(k) for k in row if k not in names)
        if unknown:
            raise InvalidInputError(
                f"{where}: unknown column(s) {unknown}; valid: {list(spec.column_names)}"
            )
        missing = [n for n in required if row.get(n) is None]
        if missing:
            raise InvalidInputError(f"{where}: missing key or required column(s) {missing}")
        out.append({c.name: _check_value(c, row.get(c.name), where) for c in spec.columns})
    return out


def last_per_key(table: Table, rows: Iterable[Row]) -> list[Row]:
    """Keep one row per natural key, the last one given, in the order keys first appeared.

    A batch written to a sink behaves like writing its rows one after another.
    """
    by_key: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        by_key[tuple(row[k] for k in table.key)] = row
    return list(by_key.values())


def encode_row(table: Table, row: Row) -> dict[str, Any]:
    """A validated row as JSON-ready data (timestamps as ISO 8601 strings in UTC)."""
    return {
        c.name: (
            row[c.name].isoformat()
            if c.type == "timestamp" and row[c.name] is not None
            else row[c.name]
        )
        for c in table.columns
    }


def decode_row(table: Table, data: Mapping[str, Any]) -> Row:
    """The inverse of :func:`encode_row`."""
    return {
        c.name: (
            dt.datetime.fromisoformat(data[c.name])
            if c.type == "timestamp" and data.get(c.name) is not None
            else data.get(c.name)
        )
        for c in table.columns
    }
