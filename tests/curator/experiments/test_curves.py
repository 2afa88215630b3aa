"""Learning-curve summaries: AUBC, labels to reach a target, and the default-vs-random report."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from curator.errors import InvalidInputError
from curator.experiments import aubc, labels_to_reach, summarise


def test_aubc_is_the_mean_height_of_the_curve_over_the_label_range() -> None:
    assert aubc([1000, 2000], [0.5, 0.7]) == pytest.approx(0.6)
    assert aubc([0, 1, 3], [0.0, 1.0, 1.0]) == pytest.approx((0.5 + 2.0) / 3)


@given(
    st.lists(st.floats(0, 1), min_size=2, max_size=12),
    st.floats(0, 1),
)
def test_aubc_of_a_constant_is_the_constant_and_lies_within_the_curve(
    ys: list[float], c: float
) -> None:
    xs = [1000 * (i + 1) for i in range(len(ys))]
    assert aubc(xs, [c] * len(xs)) == pytest.approx(c)
    assert min(ys) - 1e-12 <= aubc(xs, ys) <= max(ys) + 1e-12


@pytest.mark.parametrize(
    ("labels", "acc"),
    [([1000], [0.5]), ([1000, 1000], [0.5, 0.6]), ([2000, 1000], [0.5, 0.6]), ([1, 2], [0.5])],
)
def test_aubc_refuses_curves_it_cannot_integrate(labels: list[int], acc: list[float]) -> None:
    with pytest.raises(InvalidInputError):
        aubc(labels, acc)


def test_labels_to_reach_interpolates_between_rounds() -> None:
    labels, acc = [1000, 2000, 3000], [0.80, 0.84, 0.90]
    assert labels_to_reach(labels, acc, 0.75) == 1000
    assert labels_to_reach(labels, acc, 0.84) == 2000
    assert labels_to_reach(labels, acc, 0.87) == pytest.approx(2500)
    assert labels_to_reach(labels, acc, 0.95) is None


def test_summarise_compares_the_default_with_random_on_the_three_goals() -> None:
    labels = list(range(1000, 10001, 1000))
    random_curve = [0.70 + 0.01 * i for i in range(10)]  # 0.70 .. 0.79
    default_curve = [0.70 + 0.02 * i for i in range(10)]  # 0.70 .. 0.88
    runs = {
        "random": {"0": random_curve, "1": [a + 0.01 for a in random_curve]},
        "uncertainty_diversity": {"0": default_curve, "1": default_curve},
        "entropy": {"0": default_curve[:3]},  # an unfinished run is not summarised
    }
    out = summarise(labels, runs, {"0": 0.9, "1": 0.92})
    assert set(out["strategies"]) == {"random", "uncertainty_diversity"}
    rnd = out["strategies"]["random"]
    assert rnd["n_seeds"] == 2 and rnd["mean"][0] == pytest.approx(0.705)
    assert rnd["std"][0] == pytest.approx(0.005)
    assert out["ceiling"] == {"mean": 0.91, "std": 0.01, "n_seeds": 2}
    compare = out["default_vs_random"]
    assert compare["aubc_gain"] == pytest.approx(0.045 - 0.005, abs=1e-5)
    assert compare["at_labels"] == 5000
    assert compare["accuracy_gain_at_labels"] == pytest.approx(0.78 - 0.745, abs=1e-5)
    # random ends at 0.795; the default passes it between 5,000 (0.78) and 6,000 (0.80)
    assert compare["labels_to_reach_random_final"] == pytest.approx(5750, abs=0.1)
    assert compare["label_fraction_to_reach_random_final"] == pytest.approx(0.575)
    assert math.isclose(compare["random_final_accuracy"], 0.795)


def test_summarise_without_random_has_no_comparison() -> None:
    out = summarise([1, 2], {"entropy": {"0": [0.1, 0.2]}})
    assert out["default_vs_random"] is None and out["ceiling"] is None
