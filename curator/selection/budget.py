"""Streaming budgets for the edge: a keep ratio held over a sliding window, and a hard rate cap.

Each budget has a pure query step and a separate update step, so a frame is only charged once
the caller has stored it (see :class:`curator.selection.stream.StreamSelector`).

**KeepRatioBudget.** A token bucket earns ``keep_ratio`` credit per frame, up to ``capacity``
(default ``max(2, keep_ratio * window / 4)``; at least 2 so that, once a credit is earned, the
budget can wait for a frame above the threshold before the frame becomes overdue). The threshold
is the ``1 - keep_ratio * max(1, credit)`` quantile of the values of the last ``window`` frames:
the ``(1 - keep_ratio)`` quantile while the budget is spent as it is earned, and lower the more
credit is left unspent, so that when the values drift down (a camera's novelty falls as its
recent set fills; a better model is less uncertain) the budget goes to the best frames of the
recent window instead of waiting until it overflows. A frame is kept when its value reaches the
threshold and the credit after earning is at least 1, or regardless of its value when the credit
has reached ``capacity`` (overdue: a strictly descending stream, whose every value is below the
whole window, still keeps its share). Each kept frame costs 1 credit.

The credit starts at 1, so the first good frame after a start can be kept. The bound: the credit
stays in ``[0, capacity]`` between frames and ``kept = credit_0 + keep_ratio * T - credit_T``, so
over any ``T`` frames whose keep decisions were all committed as kept::

    |kept - keep_ratio * T| <= capacity

whatever the values; the relative error is at most ``capacity / (keep_ratio * T)``, which is
``window / (4 T)`` for the default capacity when ``keep_ratio * window >= 8`` and
``2 / (keep_ratio * T)`` below that (e.g. window 1000, keep ratio 0.05: within 10% after 2,500
frames). A frame that should have been kept but was not (rate cap, failed write) loses the
credit above ``capacity``, so such frames only lower the kept count.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from curator.errors import InvalidInputError

__all__ = ["BudgetVerdict", "KeepRateCap", "KeepRatioBudget", "check_value"]


class BudgetVerdict(NamedTuple):
    """What :meth:`KeepRatioBudget.query` says about one value.

    Attributes:
        keep: whether the budget would keep it.
        reason: ``"above_threshold"``, ``"overdue"``, ``"below_threshold"`` or ``"no_credit"``.
        threshold: the threshold it was compared with (``-inf`` while the window is empty).
        credit: the credit after earning this frame's share, before spending.
    """

    keep: bool
    reason: str
    threshold: float
    credit: float


def check_value(value: Any) -> float:
    """A frame's value as a finite float. Raises: InvalidInputError (NaN, inf, not a number)."""
    if isinstance(value, bool):
        raise InvalidInputError(f"value must be a finite number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"value must be a finite number, got {value!r}") from exc
    if not math.isfinite(out):
        raise InvalidInputError(f"value must be a finite number, got {out}")
    return out


def _check_ratio(keep_ratio: Any) -> float:
    ok = isinstance(keep_ratio, (int, float)) and not isinstance(keep_ratio, bool)
    if not ok or not 0.0 < float(keep_ratio) <= 1.0:
        raise InvalidInputError(f"keep_ratio must be in (0, 1], got {keep_ratio!r}")
    return float(keep_ratio)


def _check_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class KeepRatioBudget:
    """Keep about ``keep_ratio`` of the frames, preferring the highest values of the window.

    Args:
        keep_ratio: the target fraction of frames kept, in ``(0, 1]``.
        window: how many recent values define the threshold, ``>= 1``.
        capacity: the token bucket's size, ``>= 1``; ``max(2, keep_ratio * window / 4)`` by
            default. Larger lets bursts of high values be kept, at a looser bound; 1 keeps
            every ``1 / keep_ratio``-th frame whatever its value.

    Raises:
        InvalidInputError: a parameter out of range.
    """

    def __init__(self, keep_ratio: float, window: int = 1000, *, capacity: float | None = None):
        self.keep_ratio = _check_ratio(keep_ratio)
        self.window = _check_int(window, "window")
        if capacity is None:
            capacity = max(2.0, self.keep_ratio * self.window / 4.0)
        if (
            isinstance(capacity, bool)
            or not isinstance(capacity, (int, float))
            or not (1.0 <= capacity < math.inf)
        ):
            raise InvalidInputError(f"capacity must be a finite number >= 1, got {capacity!r}")
        self.capacity = float(capacity)
        self.credit = 1.0
        self.seen = 0
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []

    @property
    def threshold(self) -> float:
        """The value the next frame must reach (see the module docstring); ``-inf`` while the
        window is empty."""
        return self._threshold(self.credit + self.keep_ratio)

    def _threshold(self, credit: float) -> float:
        """The ``1 - keep_ratio * max(1, credit)`` quantile of the window (``-inf`` when that
        share is everything or the window is empty)."""
        m = len(self._sorted)
        share = self.keep_ratio * max(1.0, credit)
        if m == 0 or share >= 1.0:
            return -math.inf
        return self._sorted[min(m - 1, int((1.0 - share) * m))]

    def query(self, value: float) -> BudgetVerdict:
        """Whether a frame of this value would be kept now; changes nothing.

        Raises:
            InvalidInputError: ``value`` is NaN, inf or not a number.
        """
        value = check_value(value)
        credit = self.credit + self.keep_ratio
        threshold = self._threshold(credit)
        if credit >= self.capacity:
            return BudgetVerdict(True, "overdue", threshold, credit)
        if value >= threshold:
            if credit >= 1.0:
                return BudgetVerdict(True, "above_threshold", threshold, credit)
            return BudgetVerdict(False, "no_credit", threshold, credit)
        return BudgetVerdict(False, "below_threshold", threshold, credit)

    def update(self, value: float, kept: bool) -> None:
        """Record a frame: its value enters the window, its credit is earned, spent if kept.

        Raises:
            InvalidInputError: ``value`` is not finite, or ``kept`` without a whole credit.
        """
        value = check_value(value)
        credit = self.credit + self.keep_ratio
        if kept:
            if credit < 1.0:
                raise InvalidInputError(f"cannot keep a frame with {credit:.3f} credit (< 1)")
            credit -= 1.0
        self.credit = min(credit, self.capacity)
        self.seen += 1
        self._recent.append(value)
        bisect.insort(self._sorted, value)
        if len(self._recent) > self.window:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON-friendly data; :meth:`from_dict` restores it."""
        return {
            "keep_ratio": self.keep_ratio,
            "window": self.window,
            "capacity": self.capacity,
            "credit": self.credit,
            "seen": self.seen,
            "recent": list(self._recent),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeepRatioBudget:
        """Restore a budget saved by :meth:`to_dict`.

        Raises:
            InvalidInputError: missing keys or values out of range.
        """
        try:
            budget = cls(data["keep_ratio"], data["window"], capacity=data["capacity"])
            credit, seen, recent = float(data["credit"]), data["seen"], data["recent"]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"not a saved KeepRatioBudget: {exc!r}") from exc
        if not 0.0 <= credit <= budget.capacity:
            raise InvalidInputError(f"saved credit {credit} outside [0, {budget.capacity}]")
        if isinstance(seen, bool) or not isinstance(seen, int) or seen < 0:
            raise InvalidInputError(f"saved seen must be an integer >= 0, got {seen!r}")
        if not isinstance(recent, list) or len(recent) > budget.window:
            raise InvalidInputError("saved recent values must be a list no longer than window")
        values = [check_value(v) for v in recent]
        budget.credit, budget.seen = credit, seen
        budget._recent = deque(values)
        budget._sorted = sorted(values)
        return budget


class KeepRateCap:
    """At most ``max_kept`` frames kept in any ``period_s`` seconds (an hourly cap by default).

    Timestamps come from ``clock`` unless passed as ``now``. A saved timestamp later than the
    clock's ``now`` (``time.monotonic`` restarts at boot) is not counted and is dropped at the
    next :meth:`record`; pass ``clock=time.time`` if the cap must hold across reboots.

    Args:
        max_kept: the most frames kept per period, ``>= 1``.
        period_s: the period in seconds, ``> 0``.
        clock: returns the current time in seconds.

    Raises:
        InvalidInputError: a parameter out of range.
    """

    def __init__(
        self,
        max_kept: int,
        *,
        period_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_kept = _check_int(max_kept, "max_kept")
        ok = isinstance(period_s, (int, float)) and not isinstance(period_s, bool)
        if not ok or not 0.0 < float(period_s) < math.inf:
            raise InvalidInputError(f"period_s must be a finite number > 0, got {period_s!r}")
        self.period_s = float(period_s)
        self.clock = clock
        self._kept_at: list[float] = []

    def _now(self, now: float | None) -> float:
        return float(self.clock()) if now is None else check_value(now)

    def kept_in_period(self, now: float | None = None) -> int:
        """Frames kept in ``(now - period_s, now]``; changes nothing."""
        t = self._now(now)
        ts = self._kept_at
        return bisect.bisect_right(ts, t) - bisect.bisect_right(ts, t - self.period_s)

    def allows(self, now: float | None = None) -> bool:
        """Whether one more frame may be kept at ``now``; changes nothing."""
        return self.kept_in_period(now) < self.max_kept

    def record(self, now: float | None = None) -> None:
        """Record a frame kept at ``now`` and forget what fell out of the period."""
        t = self._now(now)
        ts = self._kept_at
        lo = bisect.bisect_right(ts, t - self.period_s)
        hi = bisect.bisect_right(ts, t)
        self._kept_at = [*ts[lo:hi], t]

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-friendly data (the clock is not saved)."""
        return {"max_kept": self.max_kept, "period_s": self.period_s, "kept_at": self._kept_at[:]}

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, clock: Callable[[], float] = time.monotonic
    ) -> KeepRateCap:
        """Restore a cap saved by :meth:`to_dict`, reading time from ``clock``.

        Raises:
            InvalidInputError: missing keys or values out of range.
        """
        try:
            cap = cls(data["max_kept"], period_s=data["period_s"], clock=clock)
            kept_at = data["kept_at"]
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(f"not a saved KeepRateCap: {exc!r}") from exc
        if not isinstance(kept_at, list):
            raise InvalidInputError("saved kept_at must be a list of timestamps")
        cap._kept_at = sorted(check_value(t) for t in kept_at)
        return cap
