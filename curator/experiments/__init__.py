"""Experiments researchers run against the library: pool-based active learning on
Fashion-MNIST (:func:`run_experiment`) and its learning curves (:mod:`curator.experiments.curves`).

Importing this package stays light; torch is imported when an experiment trains (extra ``train``).
"""

from curator.experiments.active_learning import (
    DEFAULT_STRATEGIES,
    ExperimentConfig,
    models_trained,
    run_experiment,
)
from curator.experiments.curves import aubc, labels_to_reach, plot_curves, summarise

__all__ = [
    "DEFAULT_STRATEGIES",
    "ExperimentConfig",
    "aubc",
    "labels_to_reach",
    "models_trained",
    "plot_curves",
    "run_experiment",
    "summarise",
]
