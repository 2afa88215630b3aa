"""Streaming selection on the edge: decide about one frame, then commit what really happened.

:class:`StreamSelector` composes a :class:`~curator.selection.budget.KeepRatioBudget` with an
optional :class:`~curator.selection.budget.KeepRateCap`. :meth:`StreamSelector.decide` changes
nothing, so it can be called again with the same answer; :meth:`StreamSelector.commit` advances
the window, the credit and the cap only after the caller's buffer write succeeded (``kept=True``)
or the frame was dropped (``kept=False``, which spends no credit)::

    decision = selector.decide(value)
    kept = decision.keep and buffer.put(frame, why=decision.reason)
    selector.commit(decision, kept=kept)

The state (:meth:`StreamSelector.to_dict`) is plain JSON data, so the edge can persist it with
each buffer write and restore it after a restart with :meth:`StreamSelector.from_dict`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from curator.errors import InvalidInputError
from curator.selection.budget import KeepRateCap, KeepRatioBudget, check_value

__all__ = ["REASONS", "StreamDecision", "StreamSelector"]

REASONS = ("above_threshold", "overdue", "below_threshold", "no_credit", "hourly_cap")
"""Every ``StreamDecision.reason``; the first two keep the frame."""

_STATE_VERSION = 1


@dataclass(frozen=True)
class StreamDecision:
    """The verdict on one frame, and what it was based on (recorded as the reason for keeping).

    Attributes:
        keep: whether to keep the frame.
        reason: one of :data:`REASONS`; ``"hourly_cap"`` when the budget would have kept it but
            the rate cap was full.
        value: the frame's value.
        threshold: the budget's threshold at decision time (``-inf`` before any frame).
        credit: the budget's credit after earning this frame's share.
        now: the time the rate cap was checked at.
        seen: frames committed before this one; :meth:`StreamSelector.commit` refuses a
            decision made against another state.
    """

    keep: bool
    reason: str
    value: float
    threshold: float
    credit: float
    now: float
    seen: int


class StreamSelector:
    """Keep about ``keep_ratio`` of a stream of frame values, and at most ``max_per_hour``.

    Args:
        keep_ratio: target fraction of frames kept, in ``(0, 1]``.
        window: frames in the sliding window that sets the threshold.
        capacity: token-bucket size (see :class:`KeepRatioBudget`); None for the default.
        max_per_hour: hard cap on frames kept per ``period_s``; None for no cap.
        period_s: the cap's period in seconds.
        clock: returns the time in seconds; used when ``decide`` gets no ``now``.

    Raises:
        InvalidInputError: a parameter out of range.
    """

    def __init__(
        self,
        keep_ratio: float,
        *,
        window: int = 1000,
        capacity: float | None = None,
        max_per_hour: int | None = None,
        period_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = KeepRatioBudget(keep_ratio, window, capacity=capacity)
        self.cap = (
            None
            if max_per_hour is None
            else KeepRateCap(max_per_hour, period_s=period_s, clock=clock)
        )
        self.clock = clock

    @property
    def seen(self) -> int:
        """Frames committed so far."""
        return self.budget.seen

    def decide(self, value: float, now: float | None = None) -> StreamDecision:
        """Whether to keep a frame of this value; changes nothing.

        Args:
            value: the frame's value (higher is more worth keeping), finite.
            now: the time in seconds; ``clock()`` when None.

        Raises:
            InvalidInputError: ``value`` or ``now`` is NaN, inf or not a number.
        """
        value = check_value(value)
        t = float(self.clock()) if now is None else check_value(now)
        verdict = self.budget.query(value)
        keep, reason = verdict.keep, verdict.reason
        if keep and self.cap is not None and not self.cap.allows(t):
            keep, reason = False, "hourly_cap"
        return StreamDecision(
            keep=keep,
            reason=reason,
            value=value,
            threshold=verdict.threshold,
            credit=verdict.credit,
            now=t,
            seen=self.budget.seen,
        )

    def commit(self, decision: StreamDecision, kept: bool) -> None:
        """Advance the state once the frame was stored (``kept=True``) or dropped.

        Args:
            decision: the latest :meth:`decide` answer for this frame.
            kept: True only if the decision said keep and the buffer write succeeded.

        Raises:
            InvalidInputError: a decision made against another state (another frame was
                committed since), or ``kept=True`` for a decision that said drop.
        """
        if decision.seen != self.budget.seen:
            raise InvalidInputError(
                f"stale decision: made after {decision.seen} frames, the selector has seen "
                f"{self.budget.seen}; call decide() again"
            )
        if kept and not decision.keep:
            raise InvalidInputError(f"cannot commit kept=True: the decision was {decision.reason}")
        self.budget.update(decision.value, kept)
        if kept and self.cap is not None:
            self.cap.record(decision.now)

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-friendly data (the clock is not saved)."""
        return {
            "version": _STATE_VERSION,
            "budget": self.budget.to_dict(),
            "cap": None if self.cap is None else self.cap.to_dict(),
        }

    state = to_dict

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, clock: Callable[[], float] = time.monotonic
    ) -> StreamSelector:
        """Restore a selector saved by :meth:`to_dict`, reading time from ``clock``.

        Raises:
            InvalidInputError: not a saved state, another state version, or bad values.
        """
        if not isinstance(data, dict) or data.get("version") != _STATE_VERSION:
            got = data.get("version") if isinstance(data, dict) else type(data).__name__
            raise InvalidInputError(
                f"not a saved StreamSelector state of version {_STATE_VERSION}: got {got!r}"
            )
        selector = cls.__new__(cls)
        selector.budget = KeepRatioBudget.from_dict(data.get("budget", {}))
        cap = data.get("cap")
        selector.cap = None if cap is None else KeepRateCap.from_dict(cap, clock=clock)
        selector.clock = clock
        return selector
