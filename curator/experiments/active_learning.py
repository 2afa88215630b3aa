"""Pool-based active learning on Fashion-MNIST with the project's model and training recipe.

:func:`run_experiment` replays what the label queue does, round after round, for each pool
strategy in :data:`curator.selection.STRATEGIES`:

1. start from the same random ``initial`` labels (drawn per seed, shared by every strategy);
2. train the project's network (:func:`~curator.training.backbones.build_embedder`, the same
   initial weights for every strategy of a seed) with the fine-tuning recipe
   (:func:`~curator.training.finetune.finetune`: Adam with a cosine-annealed step, cross-entropy,
   uint8 frames preprocessed as the edge does). With ``warm_start`` (the default, as the label
   queue's fine-tuning jobs do) each round continues from the previous round's weights;
   without it every round starts again from the initial weights;
3. measure accuracy on the whole Fashion-MNIST test set;
4. score a random subset of ``candidates`` unlabeled images (embeddings and logits from the
   trained network) and let the strategy choose the next ``step`` images to label, the labeled
   set passed as ``exclude`` (so k-center and typicality see what is covered);
5. repeat until ``final`` labels.

Every round trains on the same number of samples (``samples_per_round``, at least
``min_epochs`` passes): a small labeled set is seen many times, a large one fewer, and the cost
of a round does not grow with the labels. The ceiling is the same compute on every training
image: one model trained from the initial weights on as many samples as a whole run's rounds.

The result is a JSON-ready dict (see :func:`run_experiment`); :mod:`curator.experiments.curves`
summarises and plots it. Needs the ``train`` extra (torch).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from curator.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
from curator.errors import InvalidInputError
from curator.experiments.curves import summarise
from curator.inference.contract import ModelMetadata
from curator.inference.preprocess import preprocess_frames
from curator.selection import STRATEGIES, select
from curator.training.backbones import build_embedder
from curator.training.finetune import (
    classification_metrics,
    epochs_for_samples,
    finetune,
    outputs_of,
)

__all__ = ["DEFAULT_STRATEGIES", "ExperimentConfig", "models_trained", "run_experiment"]

DEFAULT_STRATEGIES = (
    "random",
    "entropy",
    "margin",
    "kcenter",
    "typicality",
    "uncertainty_diversity",
)
"""The strategies the benchmark compares (``uncertainty_diversity`` is the label queue's)."""

Progress = Callable[[str], None]
"""Called after every trained model with a one-line description of it."""

UInt8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class ExperimentConfig:
    """What an experiment runs; the benchmark's flags.

    Attributes:
        initial: labels before the first round.
        step: labels added per round.
        final: labels of the last round (inclusive).
        candidates: unlabeled images scored per round (a fresh random subset; 0: all of them).
        samples_per_round: training samples per model (epochs = this / labels, rounded up).
        min_epochs: at least this many passes over the labeled set.
        batch_size: training batch size.
        learning_rate: Adam's step size.
        arch: the network (see ``build_embedder``).
        embedding_dim: its embedding width.
        train_limit: use only the first this many training images as the pool (0: all 60,000).
        test_limit: score on only the first this many test images (0: all 10,000).
        ceiling: also train on the whole pool once per seed.
        warm_start: each round fine-tunes the previous round's model (False: from scratch).
    """

    initial: int = 1000
    step: int = 1000
    final: int = 10000
    candidates: int = 10000
    samples_per_round: int = 30000
    min_epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 3e-3
    arch: str = "tiny_cnn"
    embedding_dim: int = 64
    train_limit: int = 0
    test_limit: int = 0
    ceiling: bool = True
    warm_start: bool = True

    def __post_init__(self) -> None:
        for name in ("initial", "step", "final", "samples_per_round", "min_epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        for name in ("candidates", "train_limit", "test_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}")
        if self.final < self.initial:
            raise InvalidInputError(f"final ({self.final}) is below initial ({self.initial})")

    @property
    def label_counts(self) -> list[int]:
        """The labeled-set size of each round."""
        return list(range(self.initial, self.final + 1, self.step))

    def epochs_for(self, labels: int, samples: int | None = None) -> int:
        """Passes over ``labels`` images that make up ``samples`` training samples (default a
        round's), at least ``min_epochs``."""
        wanted = self.samples_per_round if samples is None else samples
        return epochs_for_samples(labels, samples=wanted, min_epochs=self.min_epochs)


@dataclass(frozen=True)
class _Data:
    train: UInt8
    train_labels: npt.NDArray[np.int64]
    test: UInt8
    test_labels: npt.NDArray[np.int64]
    metadata: ModelMetadata


def _load(config: ExperimentConfig) -> _Data:
    train, train_labels = load_fashion_mnist("train")
    test, test_labels = load_fashion_mnist("test")
    if config.train_limit:
        train, train_labels = train[: config.train_limit], train_labels[: config.train_limit]
    if config.test_limit:
        test, test_labels = test[: config.test_limit], test_labels[: config.test_limit]
    if config.final > len(train):
        raise InvalidInputError(f"final ({config.final}) exceeds the pool ({len(train)} images)")
    pixels = train.astype(np.float64) / 255.0
    metadata = ModelMetadata(
        model_version="al-benchmark",
        class_names=CLASS_NAMES,
        embedding_dim=config.embedding_dim,
        input_size=(train.shape[1], train.shape[2]),
        channels="gray",
        mean=(round(float(pixels.mean()), 4),),
        std=(round(float(pixels.std()), 4),),
    )
    return _Data(
        train=train[..., None],
        train_labels=train_labels.astype(np.int64),
        test=test[..., None],
        test_labels=test_labels.astype(np.int64),
        metadata=metadata,
    )


class _Round:
    """Trains one model on a labeled set and scores it (and the pool) with it."""

    def __init__(self, data: _Data, config: ExperimentConfig, seed: int) -> None:
        self.data, self.config, self.seed = data, config, seed
        self.test_inputs = preprocess_frames(data.test, data.metadata)

    def train(
        self, labeled: npt.NDArray[np.int64], parent: Any = None, samples: int | None = None
    ) -> Any:
        """A model trained on ``labeled``: a copy of ``parent`` fine-tuned, or a fresh network
        (the seed's initial weights) when ``parent`` is None."""
        if parent is not None:
            module = copy.deepcopy(parent)
        else:
            module = build_embedder(
                self.config.arch,
                embedding_dim=self.config.embedding_dim,
                num_classes=len(CLASS_NAMES),
                input_size=self.data.metadata.input_size,
                channels="gray",
                seed=self.seed,
            )
        finetune(
            module,
            self.data.train[labeled],
            self.data.train_labels[labeled],
            self.data.metadata,
            epochs=self.config.epochs_for(len(labeled), samples),
            batch_size=self.config.batch_size,
            learning_rate=self.config.learning_rate,
            seed=self.seed,
        )
        return module

    def accuracy(self, module: Any) -> float:
        _, logits = outputs_of(module, self.test_inputs)
        return classification_metrics(self.data.test_labels, logits, CLASS_NAMES).accuracy

    def choose(
        self,
        module: Any,
        strategy: str,
        labeled: npt.NDArray[np.int64],
        rng: np.random.Generator,
    ) -> npt.NDArray[np.int64]:
        """The next ``step`` pool indices ``strategy`` picks from a random candidate subset."""
        unlabeled = np.setdiff1d(np.arange(len(self.data.train)), labeled)
        n = self.config.candidates or len(unlabeled)
        candidates = np.sort(rng.choice(unlabeled, size=min(n, len(unlabeled)), replace=False))
        needs = STRATEGIES[strategy].requires
        if not needs:  # random: no model output to compute
            k = min(self.config.step, len(candidates))
            return candidates[rng.choice(len(candidates), size=k, replace=False)]
        covered = labeled if "embeddings" in needs else labeled[:0]
        pool = np.concatenate([candidates, covered])
        inputs = preprocess_frames(self.data.train[pool], self.data.metadata)
        embeddings, logits = outputs_of(module, inputs)
        picks = select(
            strategy,
            k=self.config.step,
            rng=rng,
            embeddings=embeddings,
            logits=logits,
            exclude=np.arange(len(candidates), len(pool)),
        )
        return pool[picks]


def models_trained(config: ExperimentConfig, strategies: int, seeds: int) -> int:
    """How many models :func:`run_experiment` trains (its ``progress`` calls)."""
    per_seed = 1 + strategies * (len(config.label_counts) - 1) + int(config.ceiling)
    return seeds * per_seed


def run_experiment(
    config: ExperimentConfig,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    seeds: Sequence[int] = (0, 1, 2),
    progress: Progress | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every strategy for every seed and summarise.

    Args:
        config: the :class:`ExperimentConfig`.
        strategies: names in :data:`curator.selection.STRATEGIES`.
        seeds: one run per seed and strategy; a seed fixes the initial labels, the initial
            weights, the shuffling and the candidate subsets.
        progress: called after each trained model (``models_trained`` gives the count).
        on_result: called with the partial result after each (seed, strategy) run, to save it.

    Returns:
        ``{"config", "seeds", "runs": {strategy: {seed: [acc per round]}}, "ceiling_runs",
        "strategies": summary per strategy (:func:`curator.experiments.curves.summarise`),
        "ceiling", "seconds"}``.

    Raises:
        ValueError: an unknown strategy (the message lists the valid ones).
        InvalidInputError: a bad configuration or seed.
        MissingDependencyError: the ``train`` extra is not installed.
    """
    for name in strategies:
        if name not in STRATEGIES:
            raise ValueError(f"unknown strategy {name!r}; valid: {', '.join(sorted(STRATEGIES))}")
    if not seeds:
        raise InvalidInputError("seeds must name at least one seed")
    started = time.perf_counter()
    data = _load(config)
    runs: dict[str, dict[str, list[float]]] = {name: {} for name in strategies}
    ceiling_runs: dict[str, float] = {}
    report = progress or (lambda _line: None)

    def result() -> dict[str, Any]:
        return {
            "config": asdict(config),
            "seeds": list(seeds),
            "runs": runs,
            "ceiling_runs": ceiling_runs,
            **summarise(config.label_counts, runs, ceiling_runs),
            "seconds": round(time.perf_counter() - started, 1),
        }

    for seed in seeds:
        trainer = _Round(data, config, seed)
        initial = np.sort(
            np.random.default_rng(seed).choice(len(data.train), config.initial, replace=False)
        )
        # the first model is the same for every strategy (same labels, weights and shuffling)
        first = trainer.train(initial)
        first_accuracy = trainer.accuracy(first)
        report(f"seed {seed} labels {config.initial} (every strategy): {first_accuracy:.4f}")
        for name in strategies:
            rng = np.random.default_rng([seed, 1])
            labeled, module, curve = initial, first, [first_accuracy]
            for count in config.label_counts[1:]:
                picks = trainer.choose(module, name, labeled, rng)
                labeled = np.sort(np.concatenate([labeled, picks]))
                module = trainer.train(labeled, module if config.warm_start else None)
                curve.append(trainer.accuracy(module))
                report(f"seed {seed} {name} labels {count}: accuracy {curve[-1]:.4f}")
            runs[name][str(seed)] = curve
            if on_result:
                on_result(result())
        if config.ceiling:
            run_samples = config.samples_per_round * len(config.label_counts)
            module = trainer.train(np.arange(len(data.train)), samples=run_samples)
            ceiling_runs[str(seed)] = trainer.accuracy(module)
            report(f"seed {seed} ceiling ({len(data.train)} labels): {ceiling_runs[str(seed)]:.4f}")
            if on_result:
                on_result(result())
    return result()
