"""The streaming selector: decide, then commit (mirrors curator/selection/stream.py)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curator.errors import InvalidInputError
from curator.selection import REASONS, StreamDecision, StreamSelector


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_decide_changes_nothing_and_repeats_itself() -> None:
    clock = FakeClock(10.0)
    selector = StreamSelector(0.2, window=20, max_per_hour=5, clock=clock)
    for value in np.random.default_rng(0).random(50):
        selector.commit(decision := selector.decide(value), kept=decision.keep)
    before = selector.to_dict()
    first = selector.decide(0.7)
    assert selector.decide(0.7) == first
    assert selector.to_dict() == before
    assert dataclasses.is_dataclass(first)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.keep = False  # type: ignore[misc]


@settings(max_examples=30)
@given(
    values=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=80),
    ratio=st.floats(0.05, 1.0),
    seed=st.integers(0, 1000),
)
def test_decide_is_pure_along_any_stream(values: list[float], ratio: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    selector = StreamSelector(ratio, window=16, max_per_hour=3, clock=FakeClock())
    for t, value in enumerate(values):
        before = selector.to_dict()
        decision = selector.decide(value, now=float(t))
        assert selector.decide(value, now=float(t)) == decision
        assert selector.to_dict() == before
        assert decision.reason in REASONS
        assert decision.keep == (decision.reason in ("above_threshold", "overdue"))
        selector.commit(decision, kept=decision.keep and bool(rng.random() < 0.8))


def test_a_failed_write_spends_no_credit() -> None:
    selector = StreamSelector(0.5, window=10)
    decision = selector.decide(1.0)
    assert decision.keep
    credit = selector.budget.credit
    selector.commit(decision, kept=False)
    assert selector.budget.credit == pytest.approx(min(credit + 0.5, selector.budget.capacity))
    assert selector.seen == 1
    kept = selector.decide(1.0)
    assert kept.keep
    selector.commit(kept, kept=True)
    assert selector.budget.credit == pytest.approx(kept.credit - 1.0)


def test_stale_and_contradictory_commits_are_refused() -> None:
    selector = StreamSelector(0.5, window=10)
    old = selector.decide(0.3)
    selector.commit(selector.decide(0.9), kept=True)
    with pytest.raises(InvalidInputError, match="stale decision"):
        selector.commit(old, kept=False)
    drop = StreamDecision(False, "below_threshold", 0.1, 0.5, 0.2, 0.0, selector.seen)
    with pytest.raises(InvalidInputError, match="kept=True"):
        selector.commit(drop, kept=True)


def test_hourly_cap_is_never_exceeded_with_a_fake_clock() -> None:
    clock = FakeClock()
    selector = StreamSelector(0.5, window=100, max_per_hour=40, clock=clock)
    kept_at, reasons = [], []
    for _ in range(3 * 3600 // 5):  # three hours, one frame every 5 s
        clock.now += 5.0
        decision = selector.decide(1.0)
        reasons.append(decision.reason)
        selector.commit(decision, kept=decision.keep)
        if decision.keep:
            kept_at.append(clock.now)
    times = np.array(kept_at)
    for t in times:
        assert ((times > t - 3600.0) & (times <= t)).sum() <= 40
    assert "hourly_cap" in reasons
    assert len(times) == 3 * 40  # the cap, not the 50% ratio (1,080 frames), is binding


def test_every_reason_occurs() -> None:
    clock = FakeClock()
    selector = StreamSelector(0.25, window=8, max_per_hour=12, clock=clock)
    phases = [np.linspace(0, 1, 40), np.linspace(1, 0, 40), np.ones(100)]
    seen: list[set[str]] = []
    for values in phases:
        clock.now += 7200.0  # a fresh hour for each phase
        reasons = set()
        for value in values:
            clock.now += 1.0
            decision = selector.decide(value)
            reasons.add(decision.reason)
            selector.commit(decision, kept=decision.keep)
        seen.append(reasons)
    assert {"above_threshold", "no_credit"} <= seen[0]
    assert {"below_threshold", "overdue"} <= seen[1]
    assert "hourly_cap" in seen[2]
    assert set().union(*seen) == set(REASONS)


def test_state_round_trips_and_continues_identically() -> None:
    clock = FakeClock()
    selector = StreamSelector(0.1, window=50, max_per_hour=30, clock=clock)
    values = np.random.default_rng(5).random(900)

    def feed(s: StreamSelector, part: np.ndarray, start: int) -> list[StreamDecision]:
        out = []
        for t, value in enumerate(part, start=start):
            decision = s.decide(value, now=float(t) * 3.0)
            s.commit(decision, kept=decision.keep)
            out.append(decision)
        return out

    feed(selector, values[:500], 0)
    saved = json.dumps(selector.state())
    restored = StreamSelector.from_dict(json.loads(saved), clock=clock)
    assert restored.to_dict() == selector.to_dict()
    assert feed(restored, values[500:], 500) == feed(selector, values[500:], 500)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"version": 99, "budget": {}, "cap": None},
        {"version": 1, "budget": {"keep_ratio": 0.1}, "cap": None},
        {"version": 1, "budget": StreamSelector(0.1).to_dict()["budget"], "cap": {"x": 1}},
        [],
    ],
)
def test_bad_saved_states_are_rejected(data: object) -> None:
    with pytest.raises(InvalidInputError):
        StreamSelector.from_dict(data)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [math.nan, -math.inf, "x"])
def test_nan_values_and_times_are_rejected(value: object) -> None:
    selector = StreamSelector(0.1)
    with pytest.raises(InvalidInputError, match="finite"):
        selector.decide(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="finite"):
        selector.decide(0.5, now=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs", [{"keep_ratio": 0}, {"keep_ratio": 1.01}, {"keep_ratio": 0.1, "window": 0}]
)
def test_bad_parameters_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError):
        StreamSelector(**kwargs)  # type: ignore[arg-type]


def test_keep_ratio_holds_through_the_selector() -> None:
    # 5,000 frames, window 200: the budget bound gives at most 2% relative error
    selector = StreamSelector(0.05, window=200)
    values = np.random.default_rng(2).random(5000)
    kept = 0
    for t, value in enumerate(values):
        decision = selector.decide(value, now=float(t))
        selector.commit(decision, kept=decision.keep)
        kept += decision.keep
    assert abs(kept / 5000 - 0.05) <= 0.1 * 0.05
