"""A background thread that snapshots the dedup indexes while the server runs.

Without it the indexes are saved only at a clean shutdown, so after a ``kill -9`` the next start
catches up from the catalog every frame accepted since the last clean stop. The
:class:`DedupSnapshotter` bounds that work: it saves the indexes once the snapshot on disk has
been behind them for ``interval_s`` seconds, or once ``every_frames`` vectors were accepted
since the last save, whichever comes first. A check finding nothing new saves nothing.

Saving holds each model version's dedup lock while that version's index is written (see
:meth:`server.dedup.FleetDedup.snapshot`), so uploads for that version wait meanwhile:
1-3 s for a million 128-d vectors on 2 cores. Unchanged indexes are not written again.

A failed save is logged (logger ``server.app.snapshotter``, fields ``reason``, ``error``,
``consecutive_failures``), counted, and retried after ``retry_s``; it never stops the thread or
the server. One snapshot runs at a time, the final one at shutdown included.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from curator.errors import InvalidInputError

__all__ = ["DedupSnapshotter", "Progress", "SnapshotterStats"]

log = logging.getLogger(__name__)

Progress = Mapping[str, tuple[int, int]]
"""model version -> ``(watermark, vectors)`` of its index."""

_MAX_RETRY_S = 30.0
_MAX_POLL_S = 1.0


@dataclass(frozen=True)
class SnapshotterStats:
    """A snapshot of a :class:`DedupSnapshotter`'s counters (for Prometheus and tests).

    ``age_s`` is how long the snapshot on disk has been behind the in-memory indexes (0 when it
    holds everything accepted); ``unsaved_vectors`` how many vectors a crash now would make the
    next start catch up from the catalog.
    """

    saved: int
    failures: int
    consecutive_failures: int
    last_error: str | None
    age_s: float
    unsaved_vectors: int


class DedupSnapshotter:
    """Calls ``snapshot`` in a daemon thread when the indexes have moved on enough.

    Args:
        snapshot: saves the indexes (``IngestService.snapshot``); raises on failure.
        progress: ``(watermark, vectors)`` of each version's index now, taking no index lock
            (from ``FleetDedup.stats``).
        saved: the same for the snapshot on disk at start (its manifest); empty when none.
        interval_s: save once the snapshot has been behind for this long (0: never for age).
        every_frames: save once this many vectors were accepted since the last save (0: never
            for count).
        poll_s: seconds between checks; default ``min(interval_s, 1)`` (1 when off).
        retry_s: seconds after a failure before the next try; default
            ``min(interval_s, 30)`` (30 when off).
        clock: monotonic seconds.

    Raises:
        InvalidInputError: a negative ``interval_s``/``every_frames`` or a non-positive
            ``poll_s``/``retry_s``.
    """

    def __init__(
        self,
        snapshot: Callable[[], Mapping[str, int]],
        progress: Callable[[], Progress],
        *,
        saved: Progress | None = None,
        interval_s: float = 300.0,
        every_frames: int = 100_000,
        poll_s: float | None = None,
        retry_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s < 0 or every_frames < 0:
            raise InvalidInputError(
                f"need interval_s >= 0 and every_frames >= 0, got interval_s={interval_s}, "
                f"every_frames={every_frames}"
            )
        self.interval_s, self.every_frames = float(interval_s), int(every_frames)
        self.poll_s = poll_s if poll_s is not None else _bounded(interval_s, _MAX_POLL_S)
        self.retry_s = retry_s if retry_s is not None else _bounded(interval_s, _MAX_RETRY_S)
        if self.poll_s <= 0 or self.retry_s <= 0:
            raise InvalidInputError(
                f"need poll_s > 0 and retry_s > 0, got {self.poll_s} and {self.retry_s}"
            )
        self._snapshot, self._progress, self._clock = snapshot, progress, clock
        self._saved: dict[str, tuple[int, int]] = dict(saved or {})
        self._current_at = clock()  # when the snapshot on disk was last known to be current
        self._retry_at = float("-inf")
        self._saved_count = self._failures = self._consecutive = 0
        self._last_error: str | None = None
        self._state_lock = threading.Lock()  # the fields above
        self._snapshot_lock = threading.Lock()  # one snapshot at a time
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        """Whether the thread has anything to do (an interval or a frame count is set)."""
        return self.interval_s > 0 or self.every_frames > 0

    def _behind(self, progress: Progress) -> tuple[bool, int]:
        """Whether the snapshot on disk is behind ``progress``, and by how many vectors."""
        with self._state_lock:
            saved = dict(self._saved)
        changed = any(saved.get(mv) != state for mv, state in progress.items())
        new = sum(
            max(0, vectors - saved.get(mv, (0, 0))[1]) for mv, (_, vectors) in progress.items()
        )
        return changed, new

    def due(self) -> str | None:
        """Why a snapshot is due now (``"frames"`` or ``"interval"``), or None."""
        now = self._clock()
        changed, new = self._behind(self._progress())
        with self._state_lock:
            if not changed:
                self._current_at = now
                return None
            if now < self._retry_at:
                return None
            if self.every_frames and new >= self.every_frames:
                return "frames"
            if self.interval_s and now - self._current_at >= self.interval_s:
                return "interval"
        return None

    def run_once(self) -> bool | None:
        """Check, and snapshot when due; returns whether it saved (None: nothing was due)."""
        try:
            reason = self.due()
        except Exception as exc:  # progress() failed: count it like a failed snapshot
            self._failed("check", exc)
            return False
        return None if reason is None else self.snapshot_now(reason)

    def snapshot_now(self, reason: str = "requested") -> bool:
        """Snapshot now (waiting for one in progress); returns whether it succeeded.

        Never raises: a failure is logged and counted.
        """
        with self._snapshot_lock:
            started = self._clock()
            try:
                progress = dict(self._progress())  # read first: frames added meanwhile stay new
                watermarks = self._snapshot()
            except Exception as exc:
                self._failed(reason, exc)
                return False
            with self._state_lock:
                self._saved = progress
                self._current_at = started
                self._saved_count += 1
                self._consecutive = 0
                self._retry_at = float("-inf")
            log.info(
                "dedup snapshot saved",
                extra={
                    "reason": reason,
                    "duration_s": round(self._clock() - started, 3),
                    "model_versions": len(watermarks),
                    "vectors": sum(v for _, v in progress.values()),
                },
            )
            return True

    def _failed(self, reason: str, exc: Exception) -> None:
        with self._state_lock:
            self._failures += 1
            self._consecutive += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._retry_at = self._clock() + self.retry_s
            consecutive = self._consecutive
        log.error(
            "dedup snapshot failed; the next start catches up from the catalog",
            exc_info=consecutive == 1,  # the traceback once per run of failures
            extra={
                "reason": reason,
                "error": f"{type(exc).__name__}: {exc}",
                "consecutive_failures": consecutive,
                "retry_in_s": self.retry_s,
            },
        )

    def stats(self) -> SnapshotterStats:
        """The counters now; reads the indexes' progress (no index lock)."""
        changed, new = self._behind(self._progress())
        now = self._clock()
        with self._state_lock:
            return SnapshotterStats(
                saved=self._saved_count,
                failures=self._failures,
                consecutive_failures=self._consecutive,
                last_error=self._last_error,
                age_s=max(0.0, now - self._current_at) if changed else 0.0,
                unsaved_vectors=new,
            )

    def _loop(self) -> None:
        while not self._stopping.wait(self.poll_s):
            self.run_once()

    def start(self) -> None:
        """Start the thread; a no-op when it runs already or nothing is enabled."""
        if not self.enabled or (self._thread is not None and self._thread.is_alive()):
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="dedup-snapshotter", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Stop the thread after its current snapshot; returns whether it stopped in time."""
        self._stopping.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self._thread = None
        return True


def _bounded(interval_s: float, cap: float) -> float:
    return min(interval_s, cap) if interval_s > 0 else cap
