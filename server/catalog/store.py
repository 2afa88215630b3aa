"""The catalog service: :class:`Catalog`, every frame the server answered for, in SQLite."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from curator.errors import InvalidInputError
from server.catalog.answers import (
    iso,
    record_frames,
    select_frames,
    select_in,
    space_dim,
    stored_frame_ids,
    stored_uploads,
)
from server.catalog.rows import FrameRow, IndexedEmbedding, check_device_id
from server.catalog.schema import CATALOG_MIGRATIONS
from server.db import SQLiteFile, atomic

__all__ = ["Catalog", "DeviceRow"]
_CHUNK = 500


@dataclass(frozen=True)
class DeviceRow:
    """What the catalog knows about a device."""

    device_id: str
    first_seen: datetime
    last_seen: datetime
    last_seq: int


class Catalog:
    """One row per frame the server answered for, with the rules that make uploads idempotent.

    ``record`` is the authority on answers: a re-sent upload gets its stored answer back, an
    image already in the catalog under another (device_id, device_seq) is an exact duplicate of
    itself, another image under a used (device_id, device_seq) is rejected, and rejected frames
    are returned, not stored. docs/server-storage.md states the rules.

    Args:
        db: a database file path (the catalog opens and closes it) or a :class:`SQLiteFile`
            shared with other stores (the caller closes it). Migrations run on open.
    """

    def __init__(self, db: str | os.PathLike[str] | SQLiteFile) -> None:
        self._owns_db = not isinstance(db, SQLiteFile)
        self.db: SQLiteFile = SQLiteFile(db) if not isinstance(db, SQLiteFile) else db
        self.db.migrate(CATALOG_MIGRATIONS)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """A transaction on this thread's connection, yielded so that other tables of the same
        file (the warehouse outbox) are written in it. The catalog's own writes on this thread
        join it as savepoints; pass ``conn=`` to make that explicit."""
        with self.db.atomic() as conn:
            yield conn

    def record(
        self, rows: Iterable[FrameRow], *, conn: sqlite3.Connection | None = None
    ) -> list[FrameRow]:
        """Store the answers for an upload's frames, all or nothing, and return the final ones.

        For each row, in order (later rows see earlier ones):

        - ``rejected``: returned as is, not stored.
        - its (device_id, device_seq) was answered before for the same frame: the stored
          answer, unchanged (a re-sent upload).
        - its (device_id, device_seq) was answered before for another frame: rejected,
          ``device_seq_reused``; nothing stored.
        - its frame_id is in the catalog under another upload: the upload is recorded and the
          answer is ``duplicate`` of that frame_id, similarity 1.0, ``exact``.
        - its embedding's dimension differs from its model version's: rejected,
          ``embedding_dim_mismatch``; nothing stored.
        - otherwise the row is stored and returned with its new ``ingest_seq``.

        Args:
            rows: the decided rows, e.g. :meth:`FrameRow.from_record`; ``ingest_seq`` ignored.
            conn: a connection in an open transaction (from :meth:`atomic`) to join; the
                records then commit or roll back with it.

        Returns:
            One answer per row, in order.

        Raises:
            InvalidInputError: a row is not a :class:`FrameRow`, or a stored duplicate names a
                ``duplicate_of`` frame that is not in the catalog (the batch is rolled back).
        """
        with atomic(conn or self.db.connection) as c:
            return record_frames(c, rows)

    def get(self, frame_id: str) -> FrameRow | None:
        """The stored row of ``frame_id`` (as first uploaded), or None."""
        return self.get_many([frame_id]).get(frame_id)

    def get_many(self, frame_ids: Iterable[str]) -> dict[str, FrameRow]:
        """frame_id -> stored row, for the ids that are in the catalog."""
        ids = list(dict.fromkeys(frame_ids))
        found: dict[str, FrameRow] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            where = f"f.frame_id IN ({', '.join('?' * len(chunk))})"
            found.update((r.frame_id, r) for r in select_frames(self.db.connection, where, chunk))
        return found

    def known(self, frame_ids: Iterable[str]) -> set[str]:
        """The ids among ``frame_ids`` that the catalog holds (a frame, once stored, stays)."""
        return stored_frame_ids(self.db.connection, frame_ids)

    def uploads(self, device_id: str, seqs: Iterable[int]) -> dict[int, str]:
        """device_seq -> frame_id of ``device_id``'s uploads among ``seqs`` that the catalog
        answered before (accepted or duplicate; rejected uploads are not stored)."""
        return stored_uploads(self.db.connection, device_id, seqs)

    def accepted_since(
        self, model_version: str, after_seq: int = 0, limit: int | None = None
    ) -> Iterator[IndexedEmbedding]:
        """Accepted frames with an embedding from ``model_version``, by increasing ingest_seq.

        Reads in pages (no long-lived read transaction), so a rebuild of a large index does not
        hold back the write-ahead log. The arrays are bit-identical to what was uploaded.

        Args:
            model_version: the embedding space; other versions' vectors never appear.
            after_seq: only frames with ``ingest_seq > after_seq`` (catch-up after a restart).
            limit: at most this many, or all.

        Yields:
            ``(ingest_seq, frame_id, embedding)`` with ``embedding`` a ``(D,)`` float32 array.
        """
        if limit is not None and limit < 0:
            raise InvalidInputError(f"limit must be >= 0 or None, got {limit}")
        remaining = limit
        last = after_seq
        while remaining is None or remaining > 0:
            page = 1000 if remaining is None else min(1000, remaining)
            rows = self.db.connection.execute(
                "SELECT e.ingest_seq, f.frame_id, e.embedding FROM embeddings e"
                " JOIN frames f ON f.ingest_seq = e.ingest_seq"
                " WHERE e.model_version = ? AND e.ingest_seq > ? AND f.status = 'accepted'"
                " ORDER BY e.ingest_seq LIMIT ?",
                (model_version, last, page),
            ).fetchall()
            for seq, frame_id, blob in rows:
                vector = np.frombuffer(blob, dtype="<f4").astype(np.float32, copy=False)
                yield IndexedEmbedding(seq, frame_id, vector)
            if len(rows) < page:
                return
            last = rows[-1][0]
            if remaining is not None:
                remaining -= len(rows)

    def embedding_dim(self, model_version: str) -> int | None:
        """The embedding dimension of ``model_version``'s space, or None before its first
        vector (pass it to :func:`curator.wire.frame_problems` as ``expected_dim``)."""
        return space_dim(self.db.connection, model_version)

    def max_seq(self) -> int:
        """The highest ingest_seq stored, 0 for an empty catalog."""
        value = self.db.connection.execute("SELECT max(ingest_seq) FROM frames").fetchone()[0]
        return int(value or 0)

    def counts(self) -> dict[str, int]:
        """How many stored uploads got each answer: ``{"accepted": n, "duplicate": m}``.

        Rejected frames are not stored, so they are not counted here (the warehouse has them).
        """
        counts = {"accepted": 0, "duplicate": 0}
        rows = self.db.connection.execute(
            "SELECT CASE WHEN f.device_id = u.device_id AND f.device_seq = u.device_seq"
            " THEN f.status ELSE 'duplicate' END AS answer, count(*)"
            " FROM uploads u JOIN frames f ON f.frame_id = u.frame_id GROUP BY answer"
        )
        counts.update({status: int(n) for status, n in rows})
        return counts

    def frame_id_for_seq(self, seqs: Iterable[int]) -> dict[int, str]:
        """ingest_seq -> frame_id for the seqs that exist (e.g. the ids a vector search found)."""
        sql = "SELECT ingest_seq, frame_id FROM frames WHERE ingest_seq IN ({})"
        return dict(select_in(self.db.connection, sql, (int(s) for s in seqs)))

    def touch_device(
        self,
        device_id: str,
        seq: int | None,
        now: datetime,
        *,
        conn: sqlite3.Connection | None = None,
    ) -> None:
        """Note that ``device_id`` was heard from at ``now``, having sent up to ``seq``.

        ``last_seen`` and ``last_seq`` only move forward; ``first_seen`` only backward.

        Raises:
            InvalidInputError: a malformed device id, a negative seq or a naive ``now``.
        """
        check_device_id(device_id)
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
            raise InvalidInputError(f"seq must be a non-negative int or None, got {seq!r}")
        at = iso(now, "now")
        with atomic(conn or self.db.connection) as c:
            c.execute(
                "INSERT INTO devices (device_id, first_seen, last_seen, last_seq)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET"
                " first_seen = min(first_seen, excluded.first_seen),"
                " last_seen = max(last_seen, excluded.last_seen),"
                " last_seq = max(last_seq, excluded.last_seq)",
                (device_id, at, at, seq or 0),
            )

    def device(self, device_id: str) -> DeviceRow | None:
        """What is known about ``device_id``, or None if it was never touched."""
        row = self.db.connection.execute(
            "SELECT device_id, first_seen, last_seen, last_seq FROM devices WHERE device_id = ?",
            (device_id,),
        ).fetchone()
        if row is None:
            return None
        return DeviceRow(
            row[0], datetime.fromisoformat(row[1]), datetime.fromisoformat(row[2]), row[3]
        )

    def close(self) -> None:
        """Close the database if the catalog opened it."""
        if self._owns_db:
            self.db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({str(self.db.path)!r})"

    # -- record(), one row at a time --------------------------------------------------------
