"""Learning curves of pool strategies: area under the curve, labels to reach a target, plots.

Pure functions over the accuracy-per-round lists :func:`curator.experiments.run_experiment`
records (plotting needs matplotlib, from the ``notebooks`` extra).

- :func:`aubc`: the area under the accuracy-vs-labels curve (trapezoids) divided by the label
  range, so it is a mean accuracy over the budget, in [0, 1];
- :func:`labels_to_reach`: the fewest labels at which a curve reaches a target accuracy, linearly
  interpolated between rounds, ``None`` when it never does;
- :func:`summarise`: per strategy, the mean and standard deviation over seeds of each round, the
  AUBC, and how the default strategy compares with random.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from curator.errors import InvalidInputError

__all__ = ["aubc", "labels_to_reach", "plot_curves", "summarise"]

DEFAULT = "uncertainty_diversity"
BASELINE = "random"


def _curve(labels: Sequence[int], accuracy: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(labels, dtype=np.float64)
    y = np.asarray(accuracy, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2:
        raise InvalidInputError(
            f"labels and accuracy must be 1-D of the same length >= 2, got {x.shape} and {y.shape}"
        )
    if np.any(np.diff(x) <= 0):
        raise InvalidInputError(f"labels must increase, got {list(labels)}")
    return x, y


def aubc(labels: Sequence[int], accuracy: Sequence[float]) -> float:
    """Area under the accuracy-vs-labels curve over the label range, normalised by the range.

    Raises:
        InvalidInputError: fewer than two rounds, mismatched lengths or non-increasing labels.
    """
    x, y = _curve(labels, accuracy)
    area = float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))
    return area / float(x[-1] - x[0])


def labels_to_reach(
    labels: Sequence[int], accuracy: Sequence[float], target: float
) -> float | None:
    """The fewest labels at which the curve first reaches ``target`` (interpolated), or None."""
    x, y = _curve(labels, accuracy)
    hits = np.flatnonzero(y >= target)
    if len(hits) == 0:
        return None
    i = int(hits[0])
    if i == 0:
        return float(x[0])
    fraction = (target - y[i - 1]) / (y[i] - y[i - 1])
    return float(x[i - 1] + fraction * (x[i] - x[i - 1]))


def _at(labels: Sequence[int], mean: Sequence[float], count: int) -> float | None:
    return float(np.interp(count, labels, mean)) if labels[0] <= count <= labels[-1] else None


def summarise(
    labels: Sequence[int],
    runs: Mapping[str, Mapping[str, Sequence[float]]],
    ceiling_runs: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Mean/std per round, AUBC per strategy, the ceiling and the default-vs-random comparison.

    Args:
        labels: labeled-set size of each round.
        runs: strategy -> seed -> accuracy per round (complete runs only are summarised).
        ceiling_runs: seed -> accuracy with every label.

    Returns:
        ``{"strategies": {name: {"labels", "mean", "std", "aubc", "aubc_std", "n_seeds"}},
        "ceiling": {"mean", "std", "n_seeds"} or None, "default_vs_random": {...} or None}``.
    """
    labels = list(labels)
    strategies: dict[str, Any] = {}
    for name, by_seed in runs.items():
        curves = np.array([c for c in by_seed.values() if len(c) == len(labels)], np.float64)
        if len(curves) == 0 or len(labels) < 2:
            continue
        per_seed = [aubc(labels, c) for c in curves]
        strategies[name] = {
            "labels": labels,
            "mean": [round(float(v), 5) for v in curves.mean(axis=0)],
            "std": [round(float(v), 5) for v in curves.std(axis=0)],
            "aubc": round(float(np.mean(per_seed)), 5),
            "aubc_std": round(float(np.std(per_seed)), 5),
            "n_seeds": len(curves),
        }
    ceiling = None
    if ceiling_runs:
        values = np.array(list(ceiling_runs.values()), np.float64)
        ceiling = {
            "mean": round(float(values.mean()), 5),
            "std": round(float(values.std()), 5),
            "n_seeds": len(values),
        }
    return {
        "strategies": strategies,
        "ceiling": ceiling,
        "default_vs_random": _compare(labels, strategies),
    }


def _compare(labels: list[int], strategies: Mapping[str, Any]) -> dict[str, Any] | None:
    """How the default strategy fares against random on the issue's three measures."""
    if DEFAULT not in strategies or BASELINE not in strategies:
        return None
    ours, base = strategies[DEFAULT], strategies[BASELINE]
    midpoint = 5000 if labels[0] <= 5000 <= labels[-1] else labels[len(labels) // 2]
    ours_mid, base_mid = _at(labels, ours["mean"], midpoint), _at(labels, base["mean"], midpoint)
    reach = labels_to_reach(labels, ours["mean"], base["mean"][-1])
    return {
        "aubc_gain": round(ours["aubc"] - base["aubc"], 5),
        "at_labels": midpoint,
        "accuracy_gain_at_labels": (
            round(ours_mid - base_mid, 5) if ours_mid is not None and base_mid is not None else None
        ),
        "random_final_accuracy": base["mean"][-1],
        "labels_to_reach_random_final": None if reach is None else round(reach, 1),
        "label_fraction_to_reach_random_final": (
            None if reach is None else round(reach / labels[-1], 4)
        ),
    }


def plot_curves(
    result: Mapping[str, Any], path: str | os.PathLike[str] | None = None, ax: Any = None
) -> Any:
    """Plot mean accuracy vs labels per strategy (a band of one standard deviation) and the
    ceiling; save to ``path`` (PNG) when given. Returns the matplotlib axes.

    Raises:
        MissingDependencyError: matplotlib is not installed (extra ``notebooks``).
    """
    from curator._optional import require

    require("matplotlib", extra="notebooks")
    import matplotlib

    if ax is None and path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 5))
    for name, curve in result["strategies"].items():
        x, mean, std = (np.asarray(curve[k]) for k in ("labels", "mean", "std"))
        width = 2.5 if name == DEFAULT else 1.3
        ax.plot(
            x,
            mean,
            marker="o",
            markersize=3,
            linewidth=width,
            label=f"{name} (AUBC {curve['aubc']:.3f})",
        )
        ax.fill_between(x, mean - std, mean + std, alpha=0.15)
    if result.get("ceiling"):
        ax.axhline(
            result["ceiling"]["mean"],
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"all labels ({result['ceiling']['mean']:.3f})",
        )
    ax.set_xlabel("labeled images")
    ax.set_ylabel("test accuracy")
    ax.set_title("Pool-based active learning on Fashion-MNIST")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=120)
    return ax
