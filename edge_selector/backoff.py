"""How long the uploader waits: :class:`Backoff` after failures, :class:`BandwidthCap` per byte.

Both take their time sources from the caller (a clock, a sleep function, a random generator),
so tests drive them without sleeping.

- :class:`Backoff`: exponential backoff with full jitter. The ``n``-th consecutive failure
  waits a uniform random time in ``[0, min(cap, base * 2**n))``; a success resets ``n``.
  Full jitter spreads a fleet's retries after an outage instead of having every device
  return at the same moment.
- :class:`BandwidthCap`: a token bucket in bytes per second. The bucket holds at most
  ``burst_bytes`` (one second's worth by default) and starts full. A body of ``n`` bytes waits
  until the bucket holds ``min(n, burst_bytes)``, then takes ``n``: a body larger than the
  bucket is still sent (after waiting for a full bucket) and the bucket goes into debt, which
  the next body waits out, so the average rate holds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from curator.errors import InvalidInputError
from curator.selection.inputs import as_generator

__all__ = ["Backoff", "BandwidthCap"]


def _positive(value: float, name: str) -> float:
    """``value`` as a finite float > 0.

    Raises:
        InvalidInputError: not a real number, not finite or not positive.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{name} must be a positive number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _byte_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidInputError(f"n must be a non-negative number of bytes, got {n!r}")
    return n


class Backoff:
    """Exponential backoff with full jitter, capped, reset on success.

    Args:
        base_s: the first failure's ceiling, in seconds.
        cap_s: the largest ceiling (and so the longest wait), in seconds.
        rng: numpy Generator, int seed or None; draws the jitter.

    Raises:
        InvalidInputError: a non-positive ``base_s`` or ``cap_s``, ``cap_s < base_s``, or an
            ``rng`` that is not a Generator, int or None.
    """

    def __init__(self, base_s: float = 0.5, cap_s: float = 60.0, *, rng: Any = None) -> None:
        self.base_s = _positive(base_s, "base_s")
        self.cap_s = _positive(cap_s, "cap_s")
        if self.cap_s < self.base_s:
            raise InvalidInputError(f"cap_s ({cap_s}) must be at least base_s ({base_s})")
        self._rng = as_generator(rng)
        self.failures = 0
        """Consecutive failures since the last :meth:`reset`."""

    def ceiling(self) -> float:
        """The longest the next :meth:`next_delay` can return: ``min(cap, base * 2**failures)``."""
        if self.failures >= 64:  # 2**64 * base is past any cap; avoid float overflow
            return self.cap_s
        return min(self.cap_s, self.base_s * 2.0**self.failures)

    def next_delay(self) -> float:
        """Record a failure and return how long to wait before the next try, in seconds.

        Uniform in ``[0, ceiling)`` where the ceiling doubles with each consecutive failure up
        to ``cap_s``.
        """
        delay = float(self._rng.uniform(0.0, self.ceiling()))
        self.failures += 1
        return delay

    def reset(self) -> None:
        """A success: the next failure starts again from ``base_s``."""
        self.failures = 0

    def __repr__(self) -> str:
        return f"Backoff(base_s={self.base_s}, cap_s={self.cap_s}, failures={self.failures})"


class BandwidthCap:
    """A token bucket of bytes: how long to wait before sending ``n`` bytes.

    Args:
        bytes_per_s: the average rate allowed; None means unlimited (never waits).
        burst_bytes: the bucket's size; default one second's worth (``bytes_per_s``).
        clock: monotonic seconds; default :func:`time.monotonic`.
        sleep: waits a number of seconds; default :func:`time.sleep`. It may return early
            (e.g. an interruptible wait): the bytes are taken anyway and the debt is waited out
            by the next body.

    Raises:
        InvalidInputError: a non-positive or non-finite rate or burst.
    """

    def __init__(
        self,
        bytes_per_s: float | None,
        *,
        burst_bytes: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.bytes_per_s = None if bytes_per_s is None else _positive(bytes_per_s, "bytes_per_s")
        if burst_bytes is not None:
            burst: float | None = _positive(burst_bytes, "burst_bytes")
        else:
            burst = self.bytes_per_s
        self.burst_bytes = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst or 0.0
        self._at = clock()

    def delay(self, n: int) -> float:
        """Seconds to wait before ``n`` bytes may be sent (0 when they may go now); changes
        nothing.

        Raises:
            InvalidInputError: ``n`` is negative or not an integer.
        """
        n = _byte_count(n)
        if self.bytes_per_s is None or self.burst_bytes is None:
            return 0.0
        need = min(float(n), self.burst_bytes)
        return max(0.0, (need - self._refilled(self._clock())) / self.bytes_per_s)

    def acquire(self, n: int) -> float:
        """Wait as long as :meth:`delay` says, then take ``n`` bytes from the bucket.

        Returns:
            The seconds asked of ``sleep`` (0 when nothing was waited).

        Raises:
            InvalidInputError: ``n`` is negative or not an integer.
        """
        wait = self.delay(n)
        if self.bytes_per_s is None:
            return 0.0
        if wait > 0:
            self._sleep(wait)
        now = self._clock()
        self._tokens = self._refilled(now) - n
        self._at = now
        return wait

    def _refilled(self, now: float) -> float:
        """The tokens the bucket holds at ``now`` (negative while in debt)."""
        if self.bytes_per_s is None or self.burst_bytes is None:
            return math.inf
        elapsed = max(0.0, now - self._at)
        return min(self.burst_bytes, self._tokens + elapsed * self.bytes_per_s)

    def __repr__(self) -> str:
        return f"BandwidthCap(bytes_per_s={self.bytes_per_s}, burst_bytes={self.burst_bytes})"
