"""The rules of :meth:`server.catalog.Catalog.record`, and frames rows to and from SQL.

The docstring of ``Catalog.record`` and docs/server-storage.md state the rules; this module
applies them one row at a time inside the caller's transaction.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from curator.errors import InvalidInputError
from server.catalog.rows import FrameRow

__all__ = [
    "iso",
    "record_frames",
    "select_frames",
    "select_in",
    "space_dim",
    "stored_frame_ids",
    "stored_uploads",
]

_COLUMNS = tuple(  # stored rows have no reason; the embedding has its own table
    f.name
    for f in dataclasses.fields(FrameRow)
    if f.name not in ("embedding", "ingest_seq", "reason")
)
_TIMES = ("captured_at", "received_at")
_CHUNK = 500  # ids per IN (...) list, well under SQLite's variable limit
_JSON = ("scores", "quality", "class_probabilities")
_SELECT = (
    "SELECT f.ingest_seq, "
    + ", ".join(f"f.{c}" for c in _COLUMNS)
    + ", e.embedding FROM frames f LEFT JOIN embeddings e"
    " ON e.model_version = f.model_version AND e.ingest_seq = f.ingest_seq"
)
_INSERT = f"INSERT INTO frames ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


def record_frames(c: sqlite3.Connection, rows: Iterable[FrameRow]) -> list[FrameRow]:
    """Apply ``record``'s rules to ``rows`` in order on ``c`` (in an open transaction).

    What the catalog already holds for the rows (their uploads, their frame ids) is read in
    bulk first; a row that meets none of it, nor an earlier row of this call, is inserted
    straight away, and only the others take the one-row-at-a-time path of the rules.
    """
    batch = list(rows)
    for row in batch:
        if not isinstance(row, FrameRow):
            raise InvalidInputError(f"expected FrameRow, got {type(row).__name__}")
    live = [r for r in batch if r.status != "rejected"]
    seen_uploads = _stored_upload_keys(c, live)
    seen_frames = stored_frame_ids(c, (r.frame_id for r in live))
    answers: list[FrameRow] = []
    dims: dict[str, int | None] = {}
    stored_duplicates: list[FrameRow] = []
    for row in batch:
        if row.status == "rejected":
            answers.append(row)
            continue
        key = (row.device_id, row.device_seq)
        if key in seen_uploads or row.frame_id in seen_frames:
            answer = _record_one(c, row, dims)
        else:
            answer = _insert_new(c, row, dims)
        seen_uploads.add(key)
        seen_frames.add(row.frame_id)
        if answer.ingest_seq is not None and answer.status == "duplicate":
            stored_duplicates.append(answer)
        answers.append(answer)
    _check_duplicate_targets(c, stored_duplicates)
    return answers


def select_frames(c: sqlite3.Connection, where: str, params: Sequence[Any]) -> list[FrameRow]:
    """The stored rows (with the upload's embedding) matching ``where`` on ``frames f``."""
    return [_from_sql(values) for values in c.execute(f"{_SELECT} WHERE {where}", params)]


def space_dim(c: sqlite3.Connection, model_version: str) -> int | None:
    """The embedding dimension of ``model_version``'s space, None before its first vector."""
    row = c.execute(
        "SELECT embedding_dim FROM embeddings WHERE model_version = ? LIMIT 1", (model_version,)
    ).fetchone()
    return None if row is None else int(row[0])


def iso(value: datetime, name: str = "time") -> str:
    """``value`` as ISO 8601 UTC text with microseconds (sorts like time).

    Raises:
        InvalidInputError: ``value`` is not a timezone-aware datetime.
    """
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInputError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _record_one(c: sqlite3.Connection, row: FrameRow, dims: dict[str, int | None]) -> FrameRow:
    if row.status == "rejected":
        return row
    upload = c.execute(
        "SELECT frame_id, batch_id, received_at FROM uploads"
        " WHERE device_id = ? AND device_seq = ?",
        (row.device_id, row.device_seq),
    ).fetchone()
    if upload is not None:
        if upload[0] != row.frame_id:
            return _rejected(
                row,
                f"device_seq_reused: device {row.device_id!r} already sent frame "
                f"{upload[0]} as device_seq {row.device_seq}",
            )
        stored = _stored(c, row.frame_id)
        if (stored.device_id, stored.device_seq) == (row.device_id, row.device_seq):
            return stored
        return _exact_repeat(stored, row, upload[1], datetime.fromisoformat(upload[2]))
    known = c.execute("SELECT 1 FROM frames WHERE frame_id = ?", (row.frame_id,)).fetchone()
    if known is not None:
        _insert_upload(c, row)
        return _exact_repeat(_stored(c, row.frame_id), row, row.batch_id, row.received_at)
    return _insert_new(c, row, dims)


def _insert_new(c: sqlite3.Connection, row: FrameRow, dims: dict[str, int | None]) -> FrameRow:
    """Store a row whose upload and frame id the catalog does not hold yet (or reject its
    embedding's dimension); the stored row comes back with its ``ingest_seq``."""
    if row.embedding is not None and row.model_version is not None:
        if row.model_version not in dims:
            dims[row.model_version] = space_dim(c, row.model_version)
        expected = dims[row.model_version]
        if expected is not None and row.embedding_dim != expected:
            return _rejected(
                row,
                f"embedding_dim_mismatch: embedding has dimension {row.embedding_dim}, "
                f"model {row.model_version!r} makes {expected}",
            )
        dims[row.model_version] = row.embedding_dim
    seq = int(c.execute(_INSERT, _to_sql(row)).lastrowid or 0)  # INTEGER PRIMARY KEY: >= 1
    if row.embedding is not None:
        c.execute(
            "INSERT INTO embeddings (model_version, ingest_seq, embedding, embedding_dim)"
            " VALUES (?, ?, ?, ?)",
            (row.model_version, seq, row.embedding, row.embedding_dim),
        )
    _insert_upload(c, row)
    return row.with_ingest_seq(seq)


def _stored(c: sqlite3.Connection, frame_id: str) -> FrameRow:
    return _from_sql(c.execute(_SELECT + " WHERE f.frame_id = ?", (frame_id,)).fetchone())


def _check_duplicate_targets(c: sqlite3.Connection, rows: Sequence[FrameRow]) -> None:
    for row in rows:
        if row.duplicate_of == row.frame_id:
            raise InvalidInputError(
                f"frame {row.frame_id} is new to the catalog, so it cannot duplicate itself"
            )
    present = stored_frame_ids(c, (str(row.duplicate_of) for row in rows))
    for row in rows:
        if row.duplicate_of not in present:
            raise InvalidInputError(
                f"frame {row.frame_id} duplicates {row.duplicate_of}, which is not in the catalog"
            )


def select_in(
    c: sqlite3.Connection, sql: str, values: Iterable[Any], params: Sequence[Any] = ()
) -> Iterator[tuple[Any, ...]]:
    """The rows of ``sql`` (a query ending in ``IN ({})``) for every distinct value of
    ``values``, asked in chunks of ``_CHUNK`` so any number stays under SQLite's variable
    limit; ``params`` bind the placeholders before the list."""
    wanted = list(dict.fromkeys(values))
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        yield from c.execute(sql.format(", ".join("?" * len(chunk))), [*params, *chunk])


def stored_frame_ids(c: sqlite3.Connection, frame_ids: Iterable[str]) -> set[str]:
    """The ids among ``frame_ids`` that the frames table holds."""
    return {
        r[0] for r in select_in(c, "SELECT frame_id FROM frames WHERE frame_id IN ({})", frame_ids)
    }


def stored_uploads(c: sqlite3.Connection, device_id: str, seqs: Iterable[int]) -> dict[int, str]:
    """device_seq -> frame_id of ``device_id``'s uploads among ``seqs`` that the catalog holds."""
    sql = "SELECT device_seq, frame_id FROM uploads WHERE device_id = ? AND device_seq IN ({})"
    return dict(select_in(c, sql, seqs, (device_id,)))


def _stored_upload_keys(c: sqlite3.Connection, rows: Sequence[FrameRow]) -> set[tuple[str, int]]:
    """The (device_id, device_seq) pairs among ``rows`` that the uploads table holds."""
    by_device: dict[str, list[int]] = {}
    for row in rows:
        by_device.setdefault(row.device_id, []).append(row.device_seq)
    return {
        (device_id, seq)
        for device_id, seqs in by_device.items()
        for seq in stored_uploads(c, device_id, seqs)
    }


def _insert_upload(c: sqlite3.Connection, row: FrameRow) -> None:
    c.execute(
        "INSERT INTO uploads (device_id, device_seq, frame_id, batch_id, received_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (row.device_id, row.device_seq, row.frame_id, row.batch_id, iso(row.received_at)),
    )


def _rejected(row: FrameRow, reason: str) -> FrameRow:
    return FrameRow(
        frame_id=row.frame_id,
        device_id=row.device_id,
        device_seq=row.device_seq,
        status="rejected",
        received_at=row.received_at,
        batch_id=row.batch_id,
        reason=reason,
        schema_version=row.schema_version,
    )


def _exact_repeat(
    stored: FrameRow, upload: FrameRow, batch_id: str | None, received_at: datetime
) -> FrameRow:
    """The answer for another upload of a stored image, identical bytes.

    It duplicates the accepted frame the image resolves to: the stored frame itself, or, when
    that was a near duplicate, the accepted frame it duplicates, at the same similarity (the
    bytes and so the embedding are the same). Every duplicate answer thus names an accepted
    frame.
    """
    accepted = stored.status == "accepted"
    return FrameRow(
        frame_id=stored.frame_id,
        device_id=upload.device_id,
        device_seq=upload.device_seq,
        status="duplicate",
        received_at=received_at,
        batch_id=batch_id,
        duplicate_of=stored.frame_id if accepted else stored.duplicate_of,
        similarity=1.0 if accepted else stored.similarity,
        dedup_method="exact",
        image_format=stored.image_format,
        width=stored.width,
        height=stored.height,
        image_bytes=stored.image_bytes,
        schema_version=upload.schema_version,
    )


def _to_sql(row: FrameRow) -> list[Any]:
    values: list[Any] = []
    for name in _COLUMNS:
        value = getattr(row, name)
        if name in _TIMES and value is not None:
            value = iso(value, name)
        elif name in _JSON and value is not None:
            value = json.dumps(list(value) if name == "class_probabilities" else dict(value))
        values.append(value)
    return values


def _from_sql(values: Sequence[Any]) -> FrameRow:
    fields: dict[str, Any] = dict(zip(_COLUMNS, values[1:-1], strict=True))
    for name in _TIMES:
        if fields[name] is not None:
            fields[name] = datetime.fromisoformat(fields[name])
    fields["scores"] = json.loads(fields["scores"])
    fields["quality"] = json.loads(fields["quality"])
    probs = fields["class_probabilities"]
    fields["class_probabilities"] = None if probs is None else tuple(json.loads(probs))
    return FrameRow(**fields, embedding=values[-1], ingest_seq=values[0])
