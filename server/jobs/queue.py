"""Dispatch through huey: :class:`JobQueue` carries job ids, nothing else.

huey is only the doorbell. Its message holds a ``job_id``; the task body calls the handler the
worker bound (:func:`server.jobs.worker.run_job`), which reads the job's row and claims it. A
message lost with a killed worker costs nothing: the lease sweeper re-dispatches the job, and a
message for a job that is done or leased by a live worker is a no-op.

Storage: :class:`huey.SqliteHuey` on ``<data_dir>/jobs-queue.sqlite`` by default, or
:class:`huey.RedisHuey` when a Redis URL is configured (``jobs_redis_url``), for many workers on
many machines.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from huey import Huey, RedisHuey, SqliteHuey
from huey.api import Task

from curator.errors import InvalidInputError

__all__ = ["QUEUE_FILE_NAME", "TASK_NAME", "JobQueue", "make_huey"]

QUEUE_FILE_NAME = "jobs-queue.sqlite"
TASK_NAME = "curator.run_job"
_HUEY_NAME = "curator-jobs"


def make_huey(data_dir: str | os.PathLike[str], redis_url: str | None = None) -> Huey:
    """The huey instance of the job queue: Redis when ``redis_url`` is set, else SQLite.

    Results are not stored (the job rows hold them). The SQLite file is
    ``<data_dir>/jobs-queue.sqlite``; the folder is created if missing.

    Raises:
        InvalidInputError: ``redis_url`` is not a ``redis://``, ``rediss://`` or ``unix://`` URL.
    """
    if redis_url is not None:
        if not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise InvalidInputError(
                f"jobs_redis_url must start with redis://, rediss:// or unix://, got {redis_url!r}"
            )
        return RedisHuey(_HUEY_NAME, url=redis_url, results=False, read_timeout=1)
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(_HUEY_NAME, filename=os.fspath(root / QUEUE_FILE_NAME), results=False)


class JobQueue:
    """Job ids through huey.

    Producers (the server, the trigger) call :meth:`dispatch`; a worker :meth:`bind`\\ s the
    handler that runs a job and calls :meth:`run_next` in its loop.

    Args:
        huey: from :func:`make_huey` (or ``MemoryHuey`` in unit tests).
    """

    def __init__(self, huey: Huey) -> None:
        self.huey = huey
        self._handler: Callable[[str], object] | None = None
        self._task = huey.task(name=TASK_NAME, retries=0)(self._run)

    def _run(self, job_id: str) -> None:
        if self._handler is None:
            raise InvalidInputError("this JobQueue has no handler bound; call bind() in workers")
        self._handler(job_id)

    def bind(self, handler: Callable[[str], object]) -> None:
        """Make ``handler(job_id)`` the body of the queue's task in this process."""
        self._handler = handler

    def dispatch(self, job_id: str) -> None:
        """Enqueue a message carrying ``job_id``.

        Raises:
            InvalidInputError: ``job_id`` is not a non-empty string.
        """
        if not isinstance(job_id, str) or not job_id:
            raise InvalidInputError(f"job_id must be a non-empty string, got {job_id!r}")
        self._task(job_id)

    def pending(self) -> int:
        """How many messages wait in the queue."""
        return int(self.huey.pending_count())

    def run_next(self) -> bool:
        """Take one message and run it here; False when the queue was empty.

        With Redis this waits up to a second for a message. Errors of the handler propagate
        (huey has already removed the message; the job's row decides what happens next).
        """
        task: Task | None = self.huey.dequeue()
        if task is None:
            return False
        if task.name != TASK_NAME:
            raise InvalidInputError(f"unexpected task {task.name!r} in the job queue")
        self._run(*task.args, **task.kwargs)
        return True

    def close(self) -> None:
        """Release the storage's connections (SQLite file handles, Redis pool)."""
        storage = self.huey.storage
        close = getattr(storage, "close", None)
        if callable(close):
            close()
        pool = getattr(storage, "pool", None)
        if pool is not None:
            pool.disconnect()
