"""Keep-ratio budget and rate cap (mirrors curator/selection/budget.py).

The budget's bound: over any T frames, |kept - keep_ratio * T| <= capacity, with capacity =
max(2, keep_ratio * window / 4). With window 200 and T = 5000 frames the relative error is at
most max(2 / (keep_ratio * 5000), 200 / (4 * 5000)) = 2% for keep_ratio >= 0.02, well inside 10%.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curator.errors import InvalidInputError
from curator.selection import KeepRateCap, KeepRatioBudget

WINDOW = 200
FRAMES = 5000
RATIOS = [0.02, 0.05, 0.1, 0.25, 0.5]


def stream(kind: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "ascending":
        return np.linspace(0.0, 1.0, n)
    if kind == "descending":
        return np.linspace(1.0, 0.0, n)
    if kind == "constant":
        return np.full(n, 0.5)
    if kind == "bursts":  # blocks of high values, then low ones, each shorter than the window
        block = np.arange(n) // 150
        return np.where(block % 2 == 0, 0.9, 0.1) + 0.01 * rng.random(n)
    if kind == "long_bursts":  # blocks far longer than the window
        return np.where((np.arange(n) // 1000) % 2 == 0, 0.9, 0.1) + 0.01 * rng.random(n)
    return rng.random(n)


def run(budget: KeepRatioBudget, values: np.ndarray) -> tuple[int, list[str]]:
    kept, reasons = 0, []
    for value in values:
        verdict = budget.query(value)
        budget.update(value, verdict.keep)
        kept += verdict.keep
        reasons.append(verdict.reason)
    return kept, reasons


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize(
    "kind", ["ascending", "descending", "constant", "bursts", "long_bursts", "random"]
)
def test_keep_ratio_holds_on_adversarial_streams(ratio: float, kind: str) -> None:
    budget = KeepRatioBudget(ratio, WINDOW)
    kept, _ = run(budget, stream(kind, FRAMES))
    assert abs(kept - ratio * FRAMES) <= budget.capacity
    assert abs(kept / FRAMES - ratio) <= 0.1 * ratio


@settings(max_examples=60)
@given(
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=400),
    ratio=st.floats(0.01, 1.0),
    window=st.integers(1, 100),
    capacity=st.one_of(st.none(), st.floats(1.0, 20.0)),
)
def test_deviation_never_exceeds_the_capacity(
    values: list[float], ratio: float, window: int, capacity: float | None
) -> None:
    budget = KeepRatioBudget(ratio, window, capacity=capacity)
    kept = 0
    for t, value in enumerate(values, start=1):
        verdict = budget.query(value)
        budget.update(value, verdict.keep)
        kept += verdict.keep
        assert abs(kept - ratio * t) <= budget.capacity + 1e-9
        assert 0.0 <= budget.credit <= budget.capacity


def test_threshold_is_the_window_quantile_lowered_by_unspent_credit() -> None:
    rng = np.random.default_rng(1)
    budget = KeepRatioBudget(0.1, 50)
    values = rng.random(300)
    levels = []
    for t, value in enumerate(values):
        recent = np.sort(values[max(0, t - 50) : t])
        credit = budget.credit + 0.1  # what this frame earns counts
        level = 1.0 - 0.1 * max(1.0, credit)
        expected = recent[min(len(recent) - 1, int(level * len(recent)))] if t else -math.inf
        assert budget.threshold == expected
        verdict = budget.query(value)
        assert verdict.threshold == expected and verdict.credit == pytest.approx(credit)
        budget.update(value, verdict.keep)
        levels.append(level)
    assert min(levels) < 0.85 < 0.9 == pytest.approx(max(levels))  # both regimes occurred


def test_after_a_burst_of_high_values_the_budget_keeps_by_value_not_by_overflow() -> None:
    # a burst of high values (a camera's first frames, all novel), then a steady stream: the
    # burst holds the window's top 4% for 1,000 frames; the budget lowers its bar as credit
    # builds, so it keeps the best of what follows instead of every 25th frame when it overflows
    rng = np.random.default_rng(2)
    burst, steady = rng.uniform(0.9, 1.0, 60), rng.uniform(0.2, 0.6, 2000)
    values = np.concatenate([burst, steady])
    budget = KeepRatioBudget(0.04, 1000)
    reasons = []
    for value in values:
        verdict = budget.query(value)
        budget.update(value, verdict.keep)
        reasons.append(verdict.reason)
    after = np.array(reasons[len(burst) :])
    kept = np.isin(after, ["above_threshold", "overdue"])
    assert (after == "overdue").sum() < 0.1 * kept.sum()
    assert abs(kept.sum() - 0.04 * len(steady)) <= budget.capacity + 1
    assert steady[kept].mean() > 0.56  # the steady values average 0.4; their top 4% 0.59


def test_prefers_high_values_and_uses_overdue_on_a_descending_stream() -> None:
    values = stream("random", FRAMES)
    budget = KeepRatioBudget(0.1, WINDOW)
    kept_values = []
    for value in values:
        verdict = budget.query(value)
        budget.update(value, verdict.keep)
        if verdict.keep:
            kept_values.append(value)
    assert np.mean(kept_values) > 0.8  # random uniform values; the top 10% average 0.95
    _, reasons = run(KeepRatioBudget(0.1, WINDOW), stream("descending", FRAMES))
    assert "overdue" in reasons
    assert "above_threshold" not in reasons[WINDOW:]


def test_query_changes_nothing_and_update_refuses_a_keep_without_credit() -> None:
    budget = KeepRatioBudget(0.1, 10)
    budget.update(0.5, True)  # the initial credit of 1 pays for one keep
    before = budget.to_dict()
    assert budget.query(0.9) == budget.query(0.9)
    assert budget.to_dict() == before
    with pytest.raises(InvalidInputError, match="credit"):
        budget.update(0.9, True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep_ratio": 0.0}, "keep_ratio"),
        ({"keep_ratio": 1.5}, "keep_ratio"),
        ({"keep_ratio": math.nan}, "keep_ratio"),
        ({"keep_ratio": True}, "keep_ratio"),
        ({"keep_ratio": 0.1, "window": 0}, "window"),
        ({"keep_ratio": 0.1, "window": 2.0}, "window"),
        ({"keep_ratio": 0.1, "capacity": 0.5}, "capacity"),
        ({"keep_ratio": 0.1, "capacity": math.inf}, "capacity"),
    ],
)
def test_bad_parameters_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        KeepRatioBudget(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [math.nan, math.inf, "high", None, True])
def test_bad_values_are_rejected(value: object) -> None:
    budget = KeepRatioBudget(0.1)
    with pytest.raises(InvalidInputError, match="value"):
        budget.query(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="value"):
        budget.update(value, False)  # type: ignore[arg-type]


def test_budget_round_trips_through_json() -> None:
    values = stream("random", 700, seed=3)
    original = KeepRatioBudget(0.2, 100)
    run(original, values[:400])
    restored = KeepRatioBudget.from_dict(json.loads(json.dumps(original.to_dict())))
    assert restored.to_dict() == original.to_dict()
    _, reasons_a = run(original, values[400:])
    _, reasons_b = run(restored, values[400:])
    assert reasons_a == reasons_b


@pytest.mark.parametrize(
    "change",
    [
        {"credit": -1.0},
        {"credit": 1e9},
        {"seen": -1},
        {"recent": [0.1] * 101},
        {"recent": [math.nan]},
        {"keep_ratio": 2.0},
    ],
)
def test_bad_saved_budgets_are_rejected(change: dict[str, object]) -> None:
    data = {**KeepRatioBudget(0.2, 100).to_dict(), **change}
    with pytest.raises(InvalidInputError):
        KeepRatioBudget.from_dict(data)
    with pytest.raises(InvalidInputError, match="not a saved"):
        KeepRatioBudget.from_dict({"keep_ratio": 0.2})


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@settings(max_examples=40)
@given(
    gaps=st.lists(st.floats(0.0, 900.0), min_size=1, max_size=300),
    max_kept=st.integers(1, 20),
)
def test_rate_cap_is_never_exceeded(gaps: list[float], max_kept: int) -> None:
    clock = FakeClock()
    cap = KeepRateCap(max_kept, period_s=3600.0, clock=clock)
    kept_at = []
    for gap in gaps:
        clock.now += gap
        if cap.allows():
            cap.record()
            kept_at.append(clock.now)
    times = np.array(kept_at)
    for t in times:  # every window (t - 3600, t] ending at a kept frame
        assert ((times > t - 3600.0) & (times <= t)).sum() <= max_kept
    assert cap.kept_in_period() == ((times > clock.now - 3600.0) & (times <= clock.now)).sum()


def test_rate_cap_reopens_after_the_period_and_survives_a_reboot() -> None:
    clock = FakeClock(1000.0)
    cap = KeepRateCap(2, period_s=60.0, clock=clock)
    cap.record()
    cap.record(now=1010.0)
    assert not cap.allows(now=1030.0)
    assert cap.allows(now=1060.5)  # the first one is older than 60 s
    saved = json.loads(json.dumps(cap.to_dict()))
    # after a reboot time.monotonic starts near 0: the saved stamps lie in the future
    rebooted = KeepRateCap.from_dict(saved, clock=FakeClock(5.0))
    assert rebooted.kept_in_period() == 0
    rebooted.record()
    assert rebooted.to_dict()["kept_at"] == [5.0]
    same_clock = KeepRateCap.from_dict(saved, clock=clock)
    assert not same_clock.allows(now=1030.0)


@pytest.mark.parametrize(
    "kwargs", [{"max_kept": 0}, {"max_kept": 5, "period_s": 0.0}, {"max_kept": 1.5}]
)
def test_bad_cap_parameters_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError):
        KeepRateCap(**kwargs)  # type: ignore[arg-type]
