"""The authoritative job rows: :class:`JobStore` over the catalog's ``jobs`` table.

huey deletes a task before running it, so a worker killed mid-task loses the message. The truth
of a job therefore lives here: its status, attempts, the lease a worker holds on it and that
worker's heartbeat. huey only carries the ``job_id`` (:mod:`server.jobs.queue`).

Life of a job::

    queued --claim--> running --finish--> succeeded | failed
      ^                  |
      +------------------+  lease expired (requeue_expired); failed after max_attempts

Every transition is one ``BEGIN IMMEDIATE`` transaction, so two workers never both hold a job.
Times are ISO 8601 UTC text with microseconds, which sorts like time. The table comes with the
catalog's migrations: open a :class:`~server.catalog.Catalog` on the file first.
"""

from __future__ import annotations

import builtins
import json
import secrets
import sqlite3
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from curator.errors import InvalidInputError
from server.catalog.answers import iso
from server.db import SQLiteFile, atomic
from server.errors import NotFound
from server.jobs import rows
from server.jobs.rows import COLUMNS, DEFAULT_MAX_ATTEMPTS, JOB_KINDS, Job, JobStatus, job_from_row

if TYPE_CHECKING:
    from server.warehouse.outbox import Outbox

__all__ = ["DEFAULT_MAX_ATTEMPTS", "JOB_KINDS", "Job", "JobStatus", "JobStore"]


class JobStore:
    """Job rows in the catalog's file.

    Args:
        db: the catalog's :class:`~server.db.SQLiteFile` (migrated).
        clock: the current time (timezone-aware); every method also takes ``now`` to override it.
    """

    def __init__(self, db: SQLiteFile, *, clock: Callable[[], datetime] = rows.utc_now) -> None:
        self.db = db
        self._clock = clock

    def _now(self, now: datetime | None) -> str:
        return iso(self._clock() if now is None else now, "now")

    def create(
        self,
        snapshot_key: str,
        *,
        label_watermark: int,
        label_count: int,
        kind: str = "fine_tune",
        params: Mapping[str, Any] | None = None,
        requested_by: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        now: datetime | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> tuple[Job, bool]:
        """The job of ``snapshot_key``, created ``queued`` unless the snapshot has one already.

        Idempotent: a snapshot that already has a job returns that job as stored (whatever
        its status) with ``created=False``.

        Returns:
            ``(job, created)``.

        Raises:
            InvalidInputError: an unknown kind, an empty snapshot key, negative counts,
                ``max_attempts < 1`` or params that are not a JSON object.
        """
        params_json = rows.check_new_job(
            kind, snapshot_key, label_watermark, label_count, max_attempts, params
        )
        created_at = self._now(now)
        with atomic(conn or self.db.connection) as c:
            row = c.execute(
                f"SELECT {COLUMNS} FROM jobs WHERE snapshot_key = ?", (snapshot_key,)
            ).fetchone()
            if row is not None:
                return job_from_row(row), False
            job_id = f"job_{secrets.token_hex(8)}"
            c.execute(
                f"INSERT INTO jobs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?,"
                " NULL, NULL, NULL, ?, NULL, NULL, NULL, NULL, NULL)",
                (job_id, kind, snapshot_key, label_watermark, label_count, params_json,
                 requested_by, max_attempts, created_at),
            )  # fmt: skip
            return self._require(c, job_id), True

    def get(self, job_id: str) -> Job:
        """The job ``job_id``.

        Raises:
            NotFound: no such job.
        """
        return self._require(self.db.connection, job_id)

    def list(self, status: JobStatus | None = None, limit: int = 100) -> list[Job]:
        """Jobs, newest first, optionally of one status."""
        where, args = ("WHERE status = ?", (status,)) if status else ("", ())
        found = self.db.connection.execute(
            f"SELECT {COLUMNS} FROM jobs {where} ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (*args, limit),
        )
        return [job_from_row(r) for r in found]

    def latest(self, kind: str = "fine_tune") -> Job | None:
        """The job of ``kind`` created last, or None."""
        row = self.db.connection.execute(
            f"SELECT {COLUMNS} FROM jobs WHERE kind = ? ORDER BY created_at DESC, rowid DESC"
            " LIMIT 1",
            (kind,),
        ).fetchone()
        return None if row is None else job_from_row(row)

    def mark_dispatched(self, job_id: str, *, now: datetime | None = None) -> None:
        """Record that a huey message for ``job_id`` was enqueued now."""
        self.db.connection.execute(
            "UPDATE jobs SET dispatched_at = ? WHERE job_id = ?", (self._now(now), job_id)
        )

    def claim(
        self, job_id: str, owner: str, lease_s: float, *, now: datetime | None = None
    ) -> Job | None:
        """Take the lease on ``job_id`` for ``owner``, in one ``BEGIN IMMEDIATE`` transaction.

        A ``queued`` job, or a ``running`` one whose lease expired, becomes ``running`` under
        ``owner`` until ``now + lease_s`` and its ``attempts`` grows by one. A job that is done
        or leased by a live worker is left alone (None). A job with an expired lease that has
        used all its attempts becomes ``failed`` (None).

        Returns:
            The claimed job, or None when there is nothing to run.

        Raises:
            NotFound: no such job.
            InvalidInputError: ``lease_s`` is not > 0 or ``owner`` is empty.
        """
        lease = rows.check_lease(lease_s)
        if not isinstance(owner, str) or not owner:
            raise InvalidInputError(f"owner must be a non-empty string, got {owner!r}")
        moment = self._clock() if now is None else now
        at = iso(moment, "now")
        with atomic(self.db.connection) as c:
            job = self._require(c, job_id)
            if job.done:
                return None
            expires = job.lease_expires_at
            if job.status == "running" and expires is not None and expires > moment:
                return None
            if job.attempts >= job.max_attempts:
                self._fail_exhausted(c, job, at)
                return None
            c.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = ?,"
                " lease_expires_at = ?, heartbeat_at = ?, started_at = ? WHERE job_id = ?",
                (owner, iso(moment + lease), at, at, job_id),
            )
            return self._require(c, job_id)

    def heartbeat(
        self, job_id: str, owner: str, lease_s: float, *, now: datetime | None = None
    ) -> bool:
        """Extend ``owner``'s lease on ``job_id`` to ``now + lease_s``.

        Returns:
            False when ``owner`` no longer holds the job (its lease expired and another worker
            took it, or it finished): the caller should stop and discard its work.
        """
        lease = rows.check_lease(lease_s)
        moment = self._clock() if now is None else now
        cursor = self.db.connection.execute(
            "UPDATE jobs SET heartbeat_at = ?, lease_expires_at = ?"
            " WHERE job_id = ? AND status = 'running' AND lease_owner = ?",
            (iso(moment, "now"), iso(moment + lease), job_id, owner),
        )
        return cursor.rowcount == 1

    def finish(
        self,
        job_id: str,
        owner: str,
        *,
        result: Mapping[str, Any],
        succeeded: bool,
        now: datetime | None = None,
        outbox: Outbox | None = None,
    ) -> bool:
        """Record the outcome of ``owner``'s run: ``succeeded`` or ``failed`` with ``result``.

        With ``outbox`` (on the catalog's file), the run's warehouse row ``training_runs`` is
        enqueued in the same transaction.

        Returns:
            False when ``owner`` no longer holds the job (nothing written).
        """
        status = "succeeded" if succeeded else "failed"
        with atomic(self.db.connection) as c:
            cursor = c.execute(
                "UPDATE jobs SET status = ?, result = ?, finished_at = ?, lease_owner = NULL,"
                " lease_expires_at = NULL WHERE job_id = ? AND status = 'running'"
                " AND lease_owner = ?",
                (status, json.dumps(dict(result), sort_keys=True), self._now(now), job_id, owner),
            )
            if cursor.rowcount != 1:
                return False
            if outbox is not None:
                outbox.enqueue(
                    rows.TRAINING_RUNS_TABLE,
                    [rows.training_run_row(self._require(c, job_id))],
                    conn=c,
                )
        return True

    def expire_leases(
        self, *, now: datetime | None = None
    ) -> tuple[builtins.list[Job], builtins.list[Job]]:
        """Put running jobs whose lease expired back to ``queued``, or ``failed`` once they have
        used ``max_attempts``; also list queued jobs never dispatched. One transaction.

        Returns:
            ``(to_dispatch, failed)``: the jobs to send through huey again (requeued ones and
            queued ones without a ``dispatched_at``), and the jobs given up.
        """
        at = self._now(now)
        with atomic(self.db.connection) as c:
            expired = [
                job_from_row(r)
                for r in c.execute(
                    f"SELECT {COLUMNS} FROM jobs WHERE status = 'running'"
                    " AND lease_expires_at <= ? ORDER BY created_at",
                    (at,),
                )
            ]
            failed: builtins.list[Job] = []
            for job in expired:
                if job.attempts >= job.max_attempts:
                    failed.append(self._fail_exhausted(c, job, at))
                else:
                    c.execute(
                        "UPDATE jobs SET status = 'queued', lease_owner = NULL,"
                        " lease_expires_at = NULL WHERE job_id = ?",
                        (job.job_id,),
                    )
            dispatch = [
                job_from_row(r)
                for r in c.execute(
                    f"SELECT {COLUMNS} FROM jobs WHERE status = 'queued'"
                    " AND (dispatched_at IS NULL OR job_id IN"
                    f" ({', '.join('?' * len(expired))})) ORDER BY created_at",
                    [j.job_id for j in expired],
                )
            ]
        return dispatch, failed

    def retry(self, job_id: str, *, now: datetime | None = None) -> Job:
        """Give a failed job a fresh set of attempts (``queued``, attempts 0); others unchanged.

        Raises:
            NotFound: no such job.
        """
        with atomic(self.db.connection) as c:
            job = self._require(c, job_id)
            if job.status != "failed":
                return job
            c.execute(
                "UPDATE jobs SET status = 'queued', attempts = 0, result = NULL,"
                " finished_at = NULL, dispatched_at = NULL WHERE job_id = ?",
                (job_id,),
            )
            return self._require(c, job_id)

    def _fail_exhausted(self, c: sqlite3.Connection, job: Job, at: str) -> Job:
        error = f"gave up after {job.attempts} attempts: the worker's lease expired each time"
        c.execute(
            "UPDATE jobs SET status = 'failed', lease_owner = NULL, lease_expires_at = NULL,"
            " finished_at = ?, result = ? WHERE job_id = ?",
            (at, json.dumps({"error": error}), job.job_id),
        )
        return self._require(c, job.job_id)

    @staticmethod
    def _require(c: sqlite3.Connection, job_id: str) -> Job:
        if not isinstance(job_id, str):
            raise InvalidInputError(f"job_id must be a str, got {job_id!r}")
        row = c.execute(f"SELECT {COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no job {job_id!r}")
        return job_from_row(row)
