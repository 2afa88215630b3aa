"""The lease sweeper: jobs whose worker stopped heartbeating go back to the queue.

:func:`requeue_expired` is one sweep; :class:`LeaseSweeper` runs it in a daemon thread every
``interval_s`` (:func:`sweep_interval` of the lease by default). Every worker runs one, and so
does the server (``curator-server serve``), so a job whose only worker died is re-dispatched
even when no worker is running yet: the next worker to start finds the message waiting.
Several sweepers at once are safe: the store's transaction decides, and a duplicate message is a
no-op.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from curator.errors import InvalidInputError
from server.jobs.queue import JobQueue
from server.jobs.rows import Job
from server.jobs.store import JobStore

__all__ = ["LeaseSweeper", "requeue_expired", "sweep_interval"]

log = logging.getLogger(__name__)


def sweep_interval(lease_s: float) -> float:
    """Seconds between sweeps for a lease of ``lease_s``: a quarter of it, within [0.1, 30]."""
    return min(max(lease_s / 4, 0.1), 30.0)


def requeue_expired(store: JobStore, queue: JobQueue, now: datetime | None = None) -> list[Job]:
    """The lease sweeper: requeue running jobs whose lease expired (or fail them after
    ``max_attempts``) and dispatch them through huey again, with never-dispatched queued jobs.

    Run by every worker and periodically by the server (:class:`LeaseSweeper`).

    Returns:
        The jobs dispatched.
    """
    dispatch, failed = store.expire_leases(now=now)
    for job in failed:
        log.error("job %s failed: %s", job.job_id, (job.result or {}).get("error"))
    for job in dispatch:
        queue.dispatch(job.job_id)
        store.mark_dispatched(job.job_id, now=now)
        log.info("job %s re-dispatched (attempts so far %d)", job.job_id, job.attempts)
    return dispatch


class LeaseSweeper:
    """Calls :func:`requeue_expired` every ``interval_s`` in a daemon thread until :meth:`stop`.

    A failed sweep (a locked file, Redis away) is logged and tried again at the next interval.

    Args:
        store: the job rows.
        queue: where requeued jobs are dispatched.
        interval_s: seconds between sweeps (> 0).

    Raises:
        InvalidInputError: ``interval_s`` is not > 0.
    """

    def __init__(self, store: JobStore, queue: JobQueue, *, interval_s: float) -> None:
        if (
            isinstance(interval_s, bool)
            or not isinstance(interval_s, int | float)
            or (not interval_s > 0)
        ):
            raise InvalidInputError(f"interval_s must be a number > 0, got {interval_s!r}")
        self.store, self.queue, self.interval_s = store, queue, float(interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sweeps = 0

    def sweep(self) -> list[Job]:
        """One sweep now; errors are logged, never raised.

        Returns:
            The jobs dispatched (empty after an error).
        """
        try:
            dispatched = requeue_expired(self.store, self.queue)
        except Exception:
            log.exception("lease sweep failed")
            dispatched = []
        self.sweeps += 1
        return dispatched

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sweep()
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        """Start the thread (the first sweep runs at once).

        Raises:
            InvalidInputError: already started.
        """
        if self._thread is not None:
            raise InvalidInputError("this LeaseSweeper was started already")
        self._thread = threading.Thread(target=self._loop, name="lease-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the thread after the sweep in progress, if any.

        Returns:
            False when the thread was still sweeping after ``timeout`` seconds.
        """
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()
